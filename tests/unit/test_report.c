/* test_report.c — status text and JSON from a queue and a cache. */
#include <jansson.h>
#include <sodium.h>

#include "report.h"
#include "unit.h"

static char dir[] = "/tmp/chute-test-report-XXXXXX";

static void test_text_and_json(void)
{
    char p[128];
    queue *q; cache *c;
    snprintf(p, sizeof p, "%s/r.db", dir);
    CHECK_EQ_INT(queue_open(p, &q), CHUTE_OK);
    CHECK_EQ_INT(cache_open(p, &c), CHUTE_OK);
    queue_item it;
    memset(&it, 0, sizeof it);
    queue_new_id(it.id);
    strcpy(it.peer, "home"); strcpy(it.path, "a/b.txt");
    it.size = 5; it.blob_size = 200; it.meta_len = 1;
    CHECK_EQ_INT(queue_insert(q, &it, NULL, NULL), CHUTE_OK);
    queue_item got;
    queue_claim_next(q, 0, &got);
    queue_set_progress(q, it.id, 84);
    char *t = NULL;
    CHECK_EQ_INT(report_text(q, c, NULL, &t), CHUTE_OK);
    CHECK(t && strstr(t, "outgoing: 1\n") && strstr(t, "stored: 0\n"));
    CHECK(t && strstr(t, "home/a/b.txt\tuploading 42%"));
    CHECK(t && strstr(t, "relay: unknown"));
    CHECK(t && strstr(t, "quarantined: 0\n") && !strstr(t, "\nquarantined:\n"));
    free(t);
    CHECK_EQ_INT(cache_quarantine(c, "home", "item-1", "payload does not authenticate"), CHUTE_OK);
    CHECK_EQ_INT(cache_quarantine(c, "home", "item-1", "another reason"), CHUTE_OK);
    CHECK_EQ_INT(report_text(q, c, NULL, &t), CHUTE_OK);
    CHECK(t && strstr(t, "quarantined: 1\n"));
    CHECK(t && strstr(t, "home\titem-1\tpayload does not authenticate"));
    CHECK(t && !strstr(t, "another reason"));
    free(t);
    CHECK_EQ_INT(report_json(q, c, "unknown", &t), CHUTE_OK);
    json_t *j = t ? json_loads(t, 0, NULL) : NULL;
    CHECK(j != NULL);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "outgoing")), 1);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "quarantined")), 1);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "quarantine")), 1);
    json_t *pend = json_object_get(j, "pending");
    CHECK_EQ_INT(json_array_size(pend), 1);
    CHECK(strcmp(json_string_value(json_object_get(json_array_get(pend, 0), "state")),
                 "uploading 42%") == 0);
    json_decref(j);
    free(t);
    /* a request under way: the bytes sent show, the durable ones stay */
    CHECK_EQ_INT(queue_set_sent(q, it.id, 150), CHUTE_OK);
    CHECK_EQ_INT(report_json(q, c, "unknown", &t), CHUTE_OK);
    j = t ? json_loads(t, 0, NULL) : NULL;
    json_t *one = json_array_get(json_object_get(j, "pending"), 0);
    CHECK(one && strcmp(json_string_value(json_object_get(one, "state")), "uploading 75%") == 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(one, "uploaded")), 84);
    CHECK_EQ_INT(json_integer_value(json_object_get(one, "sent")), 150);
    json_decref(j);
    free(t);
    /* acknowledged: both are the relay's offset again */
    CHECK_EQ_INT(queue_set_progress(q, it.id, 120), CHUTE_OK);
    CHECK_EQ_INT(queue_get(q, it.id, &got), CHUTE_OK);
    CHECK(got.progress == 120 && got.sent == 120);
    /* a file sent while written: its own section, with what is on the relay */
    queue_item g;
    memset(&g, 0, sizeof g);
    queue_new_id(g.id);
    strcpy(g.peer, "home"); strcpy(g.path, "rec.wav");
    g.growing = true;
    queue_age age;
    memset(&age, 0, sizeof age);
    age.header_len = 3;
    CHECK_EQ_INT(queue_insert(q, &g, &age, NULL), CHUTE_OK);
    CHECK_EQ_INT(report_text(q, c, NULL, &t), CHUTE_OK);
    CHECK(t && strstr(t, "outgoing: 1\n"));                      /* not counted yet */
    CHECK(t && strstr(t, "\nwriting:\nhome/rec.wav\tsending while written\t0 bytes on relay\n"));
    free(t);
    CHECK_EQ_INT(report_json(q, c, "unknown", &t), CHUTE_OK);
    j = t ? json_loads(t, 0, NULL) : NULL;
    json_t *wr = j ? json_object_get(j, "writing") : NULL;
    CHECK_EQ_INT(json_array_size(wr), 1);
    CHECK(wr && strcmp(json_string_value(json_object_get(json_array_get(wr, 0), "path")),
                       "rec.wav") == 0);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "pending")), 1);
    json_decref(j);
    free(t);
    char buf[32];
    got.state = QUEUE_UPLOADED;
    CHECK(strcmp(report_state_text(&got, buf, sizeof buf), "on relay") == 0);
    queue_close(q);
    cache_close(c);
}

int main(void)
{
    if (sodium_init() < 0 || !mkdtemp(dir)) return 1;
    RUN(test_text_and_json);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    return unit_done();
}
