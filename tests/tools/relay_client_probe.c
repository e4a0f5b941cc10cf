/* relay_client_probe.c — drive every call of lib/relay_client against a
 * real relay: relay_client_probe URL. Prints one line per step and exits 0
 * only if every step answered as PROTOCOL §6 says. Run by
 * tests/system/test_relay_client.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "relay_client.h"

static int failures;

#define EXPECT(what, cond) do { \
    if (cond) printf("ok   %s\n", what); \
    else { printf("FAIL %s (http %ld: %s)\n", what, relay_client_http_status(c), \
                  relay_client_error(c)); failures++; } \
    fflush(stdout); } while (0)

typedef struct {
    uint8_t buf[1 << 16];
    size_t len;
} sink_buf;

static int to_buf(void *ctx, const uint8_t *data, size_t len)
{
    sink_buf *s = ctx;
    if (s->len + len > sizeof s->buf)
        return 1;
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    return 0;
}

/* A body made on demand: byte i is a function of i, as age_source's are
 * of their offset. fail makes it refuse (a sealed copy that will not read). */
typedef struct {
    int fail;
    size_t calls;
} made_body;

static uint8_t made_byte(uint64_t i) { return (uint8_t)(i * 131 + (i >> 9)); }

static int make_body(void *ctx, uint64_t pos, uint8_t *buf, size_t len)
{
    made_body *m = ctx;
    m->calls++;
    if (m->fail) return -1;
    for (size_t i = 0; i < len; i++) buf[i] = made_byte(pos + i);
    return 0;
}

static void item_id(char out[33])
{
    uint8_t raw[24];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(out, 33, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static const relay_listed_item *find_listed(const relay_item_list *l, const char *item)
{
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->items[i].item, item) == 0) return &l->items[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2 || sodium_init() < 0) {
        fprintf(stderr, "usage: relay_client_probe URL\n");
        return 2;
    }
    relay_config cfg = { .base_url = argv[1], .timeout_ms = 10000 };
    relay_client *c;
    if (relay_client_new(&cfg, &c) != CHUTE_OK)
        return 1;

    EXPECT("health", relay_health(c) == CHUTE_OK);
    relay_inbox ib;
    EXPECT("inbox create", relay_inbox_create(c, &ib) == CHUTE_OK);
    relay_sender s;
    EXPECT("sender add", relay_sender_add(c, ib.inbox, ib.owner_token, &s) == CHUTE_OK);

    /* a 40000-byte body from a file, sent in two appends from offsets */
    char path[] = "/tmp/chute-probe-XXXXXX";
    int fd = mkstemp(path);
    static uint8_t body[40000];
    randombytes_buf(body, sizeof body);
    if (fd < 0 || write(fd, body, sizeof body) != (ssize_t)sizeof body)
        return 1;
    unlink(path);
    char item[33];
    item_id(item);
    relay_item_state is;
    EXPECT("item create", relay_item_create(c, ib.inbox, s.send_token, item, sizeof body,
                                            "bWV0YQ==", &is) == CHUTE_OK &&
           strcmp(is.state, "uploading") == 0 && is.offset == 0);
    EXPECT("item create again is a no-op",
           relay_item_create(c, ib.inbox, s.send_token, item, sizeof body, "bWV0YQ==", &is)
               == CHUTE_OK);
    EXPECT("item create with another size conflicts",
           relay_item_create(c, ib.inbox, s.send_token, item, 5, "bWV0YQ==", &is)
               == CHUTE_ERR_EXISTS);
    uint64_t off = 0, len = 0;
    EXPECT("append first part", relay_item_append_fd(c, ib.inbox, s.send_token, item, 0, fd,
                                                     0, 15000, &off) == CHUTE_OK && off == 15000);
    EXPECT("append at a wrong offset conflicts and says the offset",
           relay_item_append_fd(c, ib.inbox, s.send_token, item, 7, fd, 7, 10, &off)
               == CHUTE_ERR_EXISTS && off == 15000);
    EXPECT("offset", relay_item_offset(c, ib.inbox, s.send_token, item, &off, &len) == CHUTE_OK &&
           off == 15000 && len == sizeof body);
    EXPECT("append the rest", relay_item_append_fd(c, ib.inbox, s.send_token, item, 15000, fd,
                                                   15000, sizeof body - 15000, &off) == CHUTE_OK &&
           off == sizeof body);
    close(fd);
    EXPECT("status pending", relay_item_status(c, ib.inbox, s.send_token, item, &is) == CHUTE_OK &&
           strcmp(is.state, "pending") == 0);

    relay_item_list l;
    EXPECT("list", relay_items_list(c, ib.inbox, ib.owner_token, 0, 0, 0, &l) == CHUTE_OK &&
           l.count == 1 && strcmp(l.items[0].item, item) == 0 && l.items[0].size == sizeof body &&
           strcmp(l.items[0].meta_b64, "bWV0YQ==") == 0 && l.items[0].complete &&
           strcmp(l.items[0].sender, s.sender) == 0);
    uint64_t cursor = l.cursor;
    relay_item_list_free(&l);
    EXPECT("list after the cursor waits 1 s and is empty",
           relay_items_list(c, ib.inbox, ib.owner_token, cursor, 1, 0, &l) == CHUTE_OK &&
           l.count == 0);
    relay_item_list_free(&l);

    sink_buf *sb = calloc(1, sizeof *sb);
    EXPECT("download whole", sb && relay_item_download(c, ib.inbox, ib.owner_token, item, 0,
                                                       UINT64_MAX, to_buf, sb) == CHUTE_OK &&
           sb->len == sizeof body && memcmp(sb->buf, body, sizeof body) == 0);
    sb->len = 0;
    EXPECT("download a range", relay_item_download(c, ib.inbox, ib.owner_token, item, 100, 199,
                                                   to_buf, sb) == CHUTE_OK &&
           sb->len == 100 && memcmp(sb->buf, body + 100, 100) == 0);
    sb->len = 0;
    EXPECT("download from an offset to the end",
           relay_item_download(c, ib.inbox, ib.owner_token, item, 39990, UINT64_MAX, to_buf, sb)
               == CHUTE_OK && sb->len == 10);
    free(sb);
    EXPECT("download with the send token is not found",
           relay_item_download(c, ib.inbox, s.send_token, item, 0, UINT64_MAX, to_buf, NULL)
               == CHUTE_ERR_NOT_FOUND);
    EXPECT("ack", relay_item_ack(c, ib.inbox, ib.owner_token, item) == CHUTE_OK);
    EXPECT("status delivered", relay_item_status(c, ib.inbox, s.send_token, item, &is) == CHUTE_OK &&
           strcmp(is.state, "delivered") == 0);

    char item2[33];
    item_id(item2);
    EXPECT("create a second item", relay_item_create(c, ib.inbox, s.send_token, item2, 10,
                                                     "bWV0YQ==", &is) == CHUTE_OK);
    EXPECT("cancel it", relay_item_cancel(c, ib.inbox, s.send_token, item2) == CHUTE_OK);
    EXPECT("status cancelled", relay_item_status(c, ib.inbox, s.send_token, item2, &is) == CHUTE_OK &&
           strcmp(is.state, "cancelled") == 0);

    /* a body made by a callback, in two appends from offsets */
    char item4[33];
    item_id(item4);
    made_body mb = {0};
    EXPECT("create an item for a made body", relay_item_create(c, ib.inbox, s.send_token, item4,
                                                               60000, "bWV0YQ==", &is) == CHUTE_OK);
    EXPECT("append made bytes", relay_item_append_source(c, ib.inbox, s.send_token, item4, 0,
                                                         25000, make_body, &mb, &off) == CHUTE_OK &&
           off == 25000 && mb.calls > 0);
    EXPECT("append the rest, made from offset 25000",
           relay_item_append_source(c, ib.inbox, s.send_token, item4, 25000, 35000, make_body,
                                    &mb, &off) == CHUTE_OK && off == 60000);
    sink_buf *mbuf = calloc(1, sizeof *mbuf);
    int same = mbuf != NULL;
    EXPECT("the made body downloads as made",
           mbuf && relay_item_download(c, ib.inbox, ib.owner_token, item4, 0, UINT64_MAX,
                                       to_buf, mbuf) == CHUTE_OK && mbuf->len == 60000);
    for (size_t i = 0; same && i < 60000; i++) same = mbuf->buf[i] == made_byte(i);
    EXPECT("every made byte is where it belongs", same);
    free(mbuf);
    char item5[33];
    item_id(item5);
    made_body bad = {.fail = 1};
    EXPECT("create an item whose body will not read",
           relay_item_create(c, ib.inbox, s.send_token, item5, 1000, "bWV0YQ==", &is) == CHUTE_OK);
    EXPECT("a fill that fails is our I/O error, not the network's",
           relay_item_append_source(c, ib.inbox, s.send_token, item5, 0, 1000, make_body, &bad,
                                    &off) == CHUTE_ERR_IO);
    EXPECT("and the relay kept nothing of it",
           relay_item_offset(c, ib.inbox, s.send_token, item5, &off, &len) == CHUTE_OK && off == 0);

    /* an item of deferred length: created, appended, listed and declared */
    char item6[33];
    item_id(item6);
    made_body grown = {0};
    EXPECT("create of deferred length",
           relay_item_create_deferred(c, ib.inbox, s.send_token, item6, &is) == CHUTE_OK &&
           is.deferred && is.offset == 0 && is.size == 0 && strcmp(is.state, "uploading") == 0);
    EXPECT("append to it without a size",
           relay_item_append_source(c, ib.inbox, s.send_token, item6, 0, 20000, make_body,
                                    &grown, &off) == CHUTE_OK && off == 20000);
    EXPECT("its offset, and no length yet",
           relay_item_offset(c, ib.inbox, ib.owner_token, item6, &off, &len) == CHUTE_OK &&
           off == 20000 && len == RELAY_LENGTH_DEFERRED);
    EXPECT("its status says deferred",
           relay_item_status(c, ib.inbox, ib.owner_token, item6, &is) == CHUTE_OK &&
           is.deferred && is.offset == 20000);
    relay_item_list dl;
    const relay_listed_item *li = NULL;
    EXPECT("a partial listing shows it deferred, without size or meta",
           relay_items_list(c, ib.inbox, ib.owner_token, 0, 0, 1, &dl) == CHUTE_OK &&
           (li = find_listed(&dl, item6)) && li->deferred && !li->complete && !li->meta_b64 &&
           li->offset == 20000);
    relay_item_list_free(&dl);
    EXPECT("declared with its size and meta, then appended to the end",
           relay_item_create(c, ib.inbox, s.send_token, item6, 60000, "bWV0YQ==", &is)
               == CHUTE_OK && !is.deferred && is.size == 60000 && is.offset == 20000 &&
           relay_item_append_source(c, ib.inbox, s.send_token, item6, 20000, 40000, make_body,
                                    &grown, &off) == CHUTE_OK && off == 60000);
    EXPECT("and listed whole, with its meta",
           relay_items_list(c, ib.inbox, ib.owner_token, 0, 0, 0, &dl) == CHUTE_OK &&
           (li = find_listed(&dl, item6)) && !li->deferred && li->complete &&
           li->size == 60000 && li->meta_b64 && strcmp(li->meta_b64, "bWV0YQ==") == 0);
    relay_item_list_free(&dl);

    relay_inbox_info info;
    EXPECT("inbox get", relay_inbox_get(c, ib.inbox, ib.owner_token, &info) == CHUTE_OK &&
           info.senders == 1);
    EXPECT("sender revoke", relay_sender_revoke(c, ib.inbox, ib.owner_token, s.sender) == CHUTE_OK);
    char item3[33];
    item_id(item3);
    EXPECT("a revoked send token is not found",
           relay_item_create(c, ib.inbox, s.send_token, item3, 1, "bWV0YQ==", &is)
               == CHUTE_ERR_NOT_FOUND && strcmp(relay_client_error(c), "not found") == 0);

    /* pairing rendezvous */
    relay_pair_side inv, join, again;
    EXPECT("pair allocate", relay_pair_allocate(c, 60, &inv) == CHUTE_OK && inv.nameplate[0]);
    char state[RELAY_STATE_MAX];
    EXPECT("pair state waiting", relay_pair_state(c, &inv, state, NULL) == CHUTE_OK &&
           strcmp(state, "waiting") == 0);
    EXPECT("pair claim", relay_pair_claim(c, inv.nameplate, &join) == CHUTE_OK &&
           strcmp(join.session, inv.session) == 0);
    EXPECT("pair claim again is gone: claimed",
           relay_pair_claim(c, inv.nameplate, &again) == CHUTE_ERR_EXPIRED &&
           strcmp(relay_client_reason(c), "claimed") == 0);
    uint64_t seq;
    const uint8_t hello[] = { 1, 1 };
    EXPECT("pair send", relay_pair_send(c, &join, hello, sizeof hello, &seq) == CHUTE_OK);
    relay_pair_inbox m;
    EXPECT("pair receive", relay_pair_receive(c, &inv, 0, 5, &m) == CHUTE_OK && m.count == 1 &&
           m.messages[0].len == 2 && memcmp(m.messages[0].body, hello, 2) == 0);
    relay_pair_inbox_free(&m);
    EXPECT("pair close", relay_pair_close(c, &inv) == CHUTE_OK);
    EXPECT("receive after close is gone",
           relay_pair_receive(c, &join, 0, 0, &m) == CHUTE_ERR_EXPIRED);

    EXPECT("inbox delete", relay_inbox_delete(c, ib.inbox, ib.owner_token) == CHUTE_OK);
    EXPECT("deleted inbox is not found",
           relay_inbox_get(c, ib.inbox, ib.owner_token, &info) == CHUTE_ERR_NOT_FOUND);
    relay_client_free(c);
    printf("%d failed\n", failures);
    return failures ? 1 : 0;
}
