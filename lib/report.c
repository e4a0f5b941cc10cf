/* report.c — see report.h. */
#include "report.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How far an upload has got: what it has sent, the request under way
 * included, not only what the relay has acknowledged. */
static unsigned percent(const queue_item *it)
{
    if (it->blob_size == 0) return 0;
    uint64_t done = it->sent > it->progress ? it->sent : it->progress;
    uint64_t p = done >= it->blob_size ? 100 : done * 100 / it->blob_size;
    return (unsigned)p;
}

const char *report_state_text(const queue_item *it, char *buf, size_t cap)
{
    switch (it->state) {
    case QUEUE_UPLOADING:
        snprintf(buf, cap, "uploading %u%%", percent(it));
        return buf;
    case QUEUE_UPLOADED: return "on relay";
    default: return queue_state_name(it->state);
    }
}

typedef struct {
    FILE *f;          /* text */
    json_t *arr;      /* json */
    int err;
} walk;

static int text_item(const queue_item *it, void *arg)
{
    walk *w = arg;
    char buf[32];
    fprintf(w->f, "%s/%s\t%s\t%llu bytes", it->peer, it->path,
            report_state_text(it, buf, sizeof buf), (unsigned long long)it->size);
    if (it->attempts) fprintf(w->f, "\tattempts %u", it->attempts);
    if (it->last_error[0]) fprintf(w->f, "\tlast error: %s", it->last_error);
    fputc('\n', w->f);
    return 0;
}

/* A file still being written, already going: its bytes so far on the relay. */
static int text_growing(const queue_item *it, void *arg)
{
    walk *w = arg;
    fprintf(w->f, "%s/%s\tsending while written\t%llu bytes on relay", it->peer, it->path,
            (unsigned long long)it->progress);
    if (it->last_error[0]) fprintf(w->f, "\tlast error: %s", it->last_error);
    fputc('\n', w->f);
    return 0;
}

static int count_item(const queue_item *it, void *arg)
{
    (void)it;
    ++*(unsigned long long *)arg;
    return 0;
}

static int text_quarantined(const char *peer, const char *item, const char *reason,
                            int64_t at, void *arg)
{
    walk *w = arg;
    fprintf(w->f, "%s\t%s\t%s\tat %lld\n", peer, item, reason, (long long)at);
    return 0;
}

static int json_quarantined(const char *peer, const char *item, const char *reason,
                            int64_t at, void *arg)
{
    walk *w = arg;
    json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "peer", peer, "item", item,
                          "reason", reason, "at", (json_int_t)at);
    if (!o || json_array_append_new(w->arr, o) != 0) { w->err = 1; return 1; }
    return 0;
}

static chute_status gather(queue *q, cache *c, queue_counts_t *qc, cache_counts_t *cc)
{
    chute_status st = queue_counts(q, qc);
    *cc = (cache_counts_t){0};
    if (!st && c) st = cache_counts(c, cc);
    return st;
}

chute_status report_text(queue *q, cache *c, const char *relay, char **out)
{
    if (!q || !out) return CHUTE_ERR_ARG;
    queue_counts_t qc;
    cache_counts_t cc;
    chute_status st = gather(q, c, &qc, &cc);
    if (st) return st;
    char *text = NULL;
    size_t len = 0;
    walk w = {.f = open_memstream(&text, &len)};
    if (!w.f) return CHUTE_ERR_NOMEM;
    fprintf(w.f, "outgoing: %llu\non relay: %llu\nincoming: %llu\nstored: %llu\n"
                 "quarantined: %llu\nrelay: %s\n",
            (unsigned long long)(qc.queued + qc.uploading),
            (unsigned long long)qc.uploaded, (unsigned long long)cc.incoming,
            (unsigned long long)cc.stored, (unsigned long long)cc.quarantined,
            relay ? relay : "unknown");
    if (qc.queued + qc.uploading + qc.uploaded) fputs("\npending:\n", w.f);
    st = queue_each_active(q, text_item, &w);
    unsigned long long growing = 0;
    if (!st) st = queue_each_growing(q, count_item, &growing);
    if (!st && growing) {
        fputs("\nwriting:\n", w.f);
        st = queue_each_growing(q, text_growing, &w);
    }
    if (!st && cc.quarantined) {
        fputs("\nquarantined:\n", w.f);
        st = cache_quarantine_each(c, text_quarantined, &w);
    }
    if (fclose(w.f) != 0 && !st) st = CHUTE_ERR_NOMEM;
    if (st) { free(text); return st; }
    *out = text;
    return CHUTE_OK;
}

static int json_growing(const queue_item *it, void *arg)
{
    walk *w = arg;
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:s}", "id", it->id, "peer", it->peer,
                          "path", it->path, "uploaded", (json_int_t)it->progress,
                          "last_error", it->last_error);
    if (!o || json_array_append_new(w->arr, o) != 0) { w->err = 1; return 1; }
    return 0;
}

static int json_item(const queue_item *it, void *arg)
{
    walk *w = arg;
    char buf[32];
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:I, s:s}",
        "id", it->id, "peer", it->peer, "path", it->path,
        "state", report_state_text(it, buf, sizeof buf),
        "size", (json_int_t)it->size, "blob_size", (json_int_t)it->blob_size,
        "uploaded", (json_int_t)it->progress,
        "sent", (json_int_t)(it->sent > it->progress ? it->sent : it->progress),
        "percent", (int)percent(it),
        "attempts", (json_int_t)it->attempts, "last_error", it->last_error);
    if (!o || json_array_append_new(w->arr, o) != 0) { w->err = 1; return 1; }
    return 0;
}

chute_status report_json(queue *q, cache *c, const char *relay, char **out)
{
    if (!q || !out) return CHUTE_ERR_ARG;
    queue_counts_t qc;
    cache_counts_t cc;
    chute_status st = gather(q, c, &qc, &cc);
    if (st) return st;
    walk w = {.arr = json_array()};
    if (!w.arr) return CHUTE_ERR_NOMEM;
    st = queue_each_active(q, json_item, &w);
    if (!st && w.err) st = CHUTE_ERR_NOMEM;
    if (st) { json_decref(w.arr); return st; }
    walk wg = {.arr = json_array()};
    if (!wg.arr) { json_decref(w.arr); return CHUTE_ERR_NOMEM; }
    st = queue_each_growing(q, json_growing, &wg);
    if (!st && wg.err) st = CHUTE_ERR_NOMEM;
    if (st) { json_decref(w.arr); json_decref(wg.arr); return st; }
    walk wq = {.arr = json_array()};
    if (!wq.arr) { json_decref(w.arr); json_decref(wg.arr); return CHUTE_ERR_NOMEM; }
    if (c) st = cache_quarantine_each(c, json_quarantined, &wq);
    if (!st && wq.err) st = CHUTE_ERR_NOMEM;
    if (st) { json_decref(w.arr); json_decref(wg.arr); json_decref(wq.arr); return st; }
    json_t *root = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:o, s:o, s:o}",
        "outgoing", (json_int_t)(qc.queued + qc.uploading),
        "on_relay", (json_int_t)qc.uploaded, "delivered", (json_int_t)qc.delivered,
        "incoming", (json_int_t)cc.incoming, "stored", (json_int_t)cc.stored,
        "stored_bytes", (json_int_t)cc.stored_bytes,
        "quarantined", (json_int_t)cc.quarantined,
        "relay", relay ? relay : "unknown", "pending", w.arr, "writing", wg.arr,
        "quarantine", wq.arr);
    if (!root) return CHUTE_ERR_NOMEM;   /* "o" stole w.arr even on failure */
    char *s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    if (!s) return CHUTE_ERR_NOMEM;
    *out = s;
    return CHUTE_OK;
}
