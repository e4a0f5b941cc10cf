/* test_relay_wire.c — the relay's request parsers: units, ids, bodies,
 * Range and routing, including every refusal. */
#include <stdint.h>
#include <stdlib.h>

#include "relay_wire.h"
#include "unit.h"

#define B(s) (const uint8_t *)(s), strlen(s)

static void test_durations(void)
{
    uint64_t v;
    CHECK(relay_parse_duration("90", &v) == CHUTE_OK && v == 90);
    CHECK(relay_parse_duration("90s", &v) == CHUTE_OK && v == 90);
    CHECK(relay_parse_duration("15m", &v) == CHUTE_OK && v == 900);
    CHECK(relay_parse_duration("1h", &v) == CHUTE_OK && v == 3600);
    CHECK(relay_parse_duration("60d", &v) == CHUTE_OK && v == 60 * 86400);
    CHECK(relay_parse_duration("0", &v) == CHUTE_OK && v == 0);
    CHECK(relay_parse_duration("", &v) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_duration("h", &v) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_duration("1hh", &v) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_duration("1w", &v) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_duration("-1", &v) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_duration(" 1", &v) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_duration("99999999999999999999", &v) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_duration("999999999999999999d", &v) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_duration(NULL, &v) == CHUTE_ERR_MALFORMED);
}

static void test_sizes(void)
{
    uint64_t v;
    CHECK(relay_parse_size("4096", &v) == CHUTE_OK && v == 4096);
    CHECK(relay_parse_size("64K", &v) == CHUTE_OK && v == 65536);
    CHECK(relay_parse_size("10M", &v) == CHUTE_OK && v == 10u << 20);
    CHECK(relay_parse_size("64G", &v) == CHUTE_OK && v == 64ull << 30);
    CHECK(relay_parse_size("1T", &v) == CHUTE_OK && v == 1ull << 40);
    CHECK(relay_parse_size("64KiB", &v) == CHUTE_OK && v == 65536);
    CHECK(relay_parse_size("64KB", &v) == CHUTE_OK && v == 65536);
    CHECK(relay_parse_size("100B", &v) == CHUTE_OK && v == 100);
    CHECK(relay_parse_size("1X", &v) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_size("K", &v) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_size("1Ki", &v) == CHUTE_OK && v == 1024);
    CHECK(relay_parse_size("1iB", &v) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_size("99999999999T", &v) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_u64("18446744073709551615", &v) == CHUTE_OK && v == UINT64_MAX);
    CHECK(relay_parse_u64("18446744073709551616", &v) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_u64("+1", &v) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_u64("1 ", &v) == CHUTE_ERR_MALFORMED);
}

static void test_ids(void)
{
    CHECK(relay_valid_id("abcdefghijklmnopqrstuv", 22));
    CHECK(!relay_valid_id("abcdefghijklmnopqrstu", 21));
    CHECK(!relay_valid_id("abcdefghijklmnopqrst.v", 22));
    CHECK(relay_valid_item_id("0123456789abcdef", 16));
    CHECK(!relay_valid_item_id("0123456789abcde", 15));
    CHECK(!relay_valid_item_id("0123456789abcde/", 16));
    CHECK(relay_valid_nameplate("7", 1) && relay_valid_nameplate("123456", 6));
    CHECK(!relay_valid_nameplate("1234567", 7) && !relay_valid_nameplate("12a", 3));
    CHECK(!relay_valid_nameplate("", 0));
    const char *tok = "ww-kz9cEnTbjmsxbveSrHZPeV3v3X8HBaNal4MrDjvo";
    char hdr[80];
    snprintf(hdr, sizeof hdr, "Bearer %s", tok);
    CHECK(relay_bearer_token(hdr) && strcmp(relay_bearer_token(hdr), tok) == 0);
    snprintf(hdr, sizeof hdr, "bearer %s  ", tok);
    CHECK(relay_bearer_token(hdr) != NULL);
    CHECK(relay_bearer_token("Bearer short") == NULL);
    CHECK(relay_bearer_token("Basic abc") == NULL);
    CHECK(relay_bearer_token(NULL) == NULL);
}

static void test_item_create(void)
{
    relay_item_create c;
    CHECK(relay_parse_item_create(B("{\"size\":5,\"meta\":\"bWV0YQ==\"}"), 4096, &c) == CHUTE_OK);
    CHECK(c.size == 5 && c.meta_len == 4 && memcmp(c.meta, "meta", 4) == 0);
    relay_item_create_free(&c);
    CHECK(relay_parse_item_create(B("{\"size\":0,\"meta\":\"\"}"), 4096, &c) == CHUTE_OK);
    CHECK(c.size == 0 && c.meta_len == 0 && c.meta != NULL);
    relay_item_create_free(&c);
    CHECK(relay_parse_item_create(B("{\"size\":5,\"meta\":\"bWV0YQ\"}"), 4096, &c) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B("{\"size\":-1,\"meta\":\"\"}"), 4096, &c) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B("{\"size\":1.5,\"meta\":\"\"}"), 4096, &c) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B("{\"size\":\"1\",\"meta\":\"\"}"), 4096, &c) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B("{\"meta\":\"\"}"), 4096, &c) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B("{\"size\":1}"), 4096, &c) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B("[1]"), 4096, &c) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B("{\"size\":1,\"size\":2,\"meta\":\"\"}"), 4096, &c) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B("{\"size\":1,\"meta\":\"bWV0YQ==\"} x"), 4096, &c) == CHUTE_ERR_MALFORMED);
    /* 4 bytes decoded against a 3-byte limit */
    CHECK(relay_parse_item_create(B("{\"size\":1,\"meta\":\"bWV0YQ==\"}"), 3, &c) == CHUTE_ERR_LIMIT);
    CHECK(relay_parse_item_create(B("{\"size\":1,\"meta\":\"bWV0YQ==\"}"), 4, &c) == CHUTE_OK);
    relay_item_create_free(&c);
    CHECK(relay_parse_item_create(B("{\"size\":5,\"meta\":\"bWV0YQ==\"}"), 4096, &c) == CHUTE_OK);
    CHECK(!c.deferred);
    relay_item_create_free(&c);
}

static void test_deferred_create(void)
{
    relay_item_create c;
    CHECK(relay_parse_item_create(B("{\"deferred\":true}"), 4096, &c) == CHUTE_OK);
    CHECK(c.deferred && c.size == 0 && c.meta == NULL && c.meta_len == 0);
    relay_item_create_free(&c);
    CHECK(relay_parse_item_create(B(" { \"deferred\" : true } "), 4096, &c) == CHUTE_OK);
    CHECK(c.deferred);
    relay_item_create_free(&c);
    /* deferred:false is an ordinary create, and needs size and meta */
    CHECK(relay_parse_item_create(B("{\"deferred\":false,\"size\":5,\"meta\":\"bWV0YQ==\"}"),
                                  4096, &c) == CHUTE_OK);
    CHECK(!c.deferred && c.size == 5 && c.meta_len == 4);
    relay_item_create_free(&c);
    CHECK(relay_parse_item_create(B("{\"deferred\":false}"), 4096, &c) == CHUTE_ERR_MALFORMED);
    /* a deferred create carries neither size nor meta */
    CHECK(relay_parse_item_create(B("{\"deferred\":true,\"size\":1}"), 4096, &c) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B("{\"deferred\":true,\"meta\":\"\"}"), 4096, &c) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B("{\"deferred\":true,\"size\":1,\"meta\":\"\"}"), 4096, &c)
          == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B("{\"deferred\":true,\"size\":null}"), 4096, &c)
          == CHUTE_ERR_MALFORMED);
    /* only a JSON boolean */
    CHECK(relay_parse_item_create(B("{\"deferred\":\"yes\"}"), 4096, &c) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B("{\"deferred\":1}"), 4096, &c) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B("{\"deferred\":null}"), 4096, &c) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B("{\"deferred\":\"true\",\"size\":1,\"meta\":\"\"}"), 4096, &c)
          == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B("{\"deferred\":true,\"deferred\":true}"), 4096, &c)
          == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B("{}"), 4096, &c) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_item_create(B(""), 4096, &c) == CHUTE_ERR_MALFORMED);
}

static void test_pair_bodies(void)
{
    bool has;
    uint64_t ttl;
    CHECK(relay_parse_pair_alloc(B(""), &has, &ttl) == CHUTE_OK && !has);
    CHECK(relay_parse_pair_alloc(B("{}"), &has, &ttl) == CHUTE_OK && !has);
    CHECK(relay_parse_pair_alloc(B("{\"ttl\":600}"), &has, &ttl) == CHUTE_OK && has && ttl == 600);
    CHECK(relay_parse_pair_alloc(B("{\"ttl\":0}"), &has, &ttl) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_pair_alloc(B("{\"ttl\":\"x\"}"), &has, &ttl) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_pair_alloc(B("nope"), &has, &ttl) == CHUTE_ERR_MALFORMED);
    uint8_t *body;
    size_t len;
    CHECK(relay_parse_pair_message(B("{\"body\":\"aGk=\"}"), 4096, &body, &len) == CHUTE_OK);
    CHECK(len == 2 && memcmp(body, "hi", 2) == 0);
    free(body);
    CHECK(relay_parse_pair_message(B("{\"body\":\"aGk=\"}"), 1, &body, &len) == CHUTE_ERR_LIMIT);
    CHECK(relay_parse_pair_message(B("{\"body\":\"a*k=\"}"), 4096, &body, &len) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_pair_message(B("{}"), 4096, &body, &len) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_empty_object(B("  ")) == CHUTE_OK);
    CHECK(relay_parse_empty_object(B("{\"x\":1}")) == CHUTE_OK);
    CHECK(relay_parse_empty_object(B("1")) == CHUTE_ERR_MALFORMED);
}

static void test_range(void)
{
    uint64_t a, b;
    CHECK(relay_parse_range("bytes=0-1", 5, &a, &b) == CHUTE_OK && a == 0 && b == 1);
    CHECK(relay_parse_range("bytes=3-", 5, &a, &b) == CHUTE_OK && a == 3 && b == 4);
    CHECK(relay_parse_range("bytes=3-100", 5, &a, &b) == CHUTE_OK && a == 3 && b == 4);
    CHECK(relay_parse_range("bytes=-2", 5, &a, &b) == CHUTE_OK && a == 3 && b == 4);
    CHECK(relay_parse_range("bytes=-9", 5, &a, &b) == CHUTE_OK && a == 0 && b == 4);
    CHECK(relay_parse_range("bytes=5-", 5, &a, &b) == CHUTE_ERR_LIMIT);
    CHECK(relay_parse_range("bytes=-0", 5, &a, &b) == CHUTE_ERR_LIMIT);
    CHECK(relay_parse_range("bytes=0-", 0, &a, &b) == CHUTE_ERR_LIMIT);
    CHECK(relay_parse_range("bytes=2-1", 5, &a, &b) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_range("bytes=0-1,3-4", 5, &a, &b) == CHUTE_ERR_UNSUPPORTED);
    CHECK(relay_parse_range("items=0-1", 5, &a, &b) == CHUTE_ERR_MALFORMED);
    CHECK(relay_parse_range("bytes=x-1", 5, &a, &b) == CHUTE_ERR_MALFORMED);
}

static void test_routes(void)
{
    relay_route r;
    relay_match_route("/v1/health", &r);
    CHECK(r.id == RELAY_R_HEALTH);
    relay_match_route("/metrics", &r);
    CHECK(r.id == RELAY_R_METRICS);
    relay_match_route("/v1/inboxes", &r);
    CHECK(r.id == RELAY_R_INBOXES);
    relay_match_route("/v1/inboxes/abcdefghijklmnopqrstuv", &r);
    CHECK(r.id == RELAY_R_INBOX && strcmp(r.a, "abcdefghijklmnopqrstuv") == 0);
    relay_match_route("/v1/inboxes/abcdefghijklmnopqrstuv/senders/ABCDEFGHIJKLMNOPQRSTUV", &r);
    CHECK(r.id == RELAY_R_SENDER && strcmp(r.b, "ABCDEFGHIJKLMNOPQRSTUV") == 0);
    relay_match_route("/v1/inboxes/abcdefghijklmnopqrstuv/items/0123456789abcdef/data", &r);
    CHECK(r.id == RELAY_R_ITEM_DATA && strcmp(r.b, "0123456789abcdef") == 0);
    relay_match_route("/v1/inboxes/abcdefghijklmnopqrstuv/items/0123456789abcdef/status", &r);
    CHECK(r.id == RELAY_R_ITEM_STATUS);
    relay_match_route("/v1/inboxes/abcdefghijklmnopqrstuv/items", &r);
    CHECK(r.id == RELAY_R_ITEMS);
    relay_match_route("/v1/pair/123/claim", &r);
    CHECK(r.id == RELAY_R_PAIR_CLAIM && strcmp(r.a, "123") == 0);
    relay_match_route("/v1/pair/abcdefghijklmnopqrstuv/messages", &r);
    CHECK(r.id == RELAY_R_PAIR_MESSAGES);
    relay_match_route("/v1/pair", &r);
    CHECK(r.id == RELAY_R_PAIR);
    /* refusals: short ids, dots, trailing slashes, unknown parts */
    relay_match_route("/v1/inboxes/short", &r);
    CHECK(r.id == RELAY_R_NONE && r.a[0] == '\0');
    relay_match_route("/v1/inboxes/abcdefghijklmnopqrstuv/items/../x", &r);
    CHECK(r.id == RELAY_R_NONE);
    relay_match_route("/v1/health/", &r);
    CHECK(r.id == RELAY_R_NONE);
    relay_match_route("//v1/health", &r);
    CHECK(r.id == RELAY_R_NONE);
    relay_match_route("", &r);
    CHECK(r.id == RELAY_R_NONE);
    CHECK(relay_route_allows(RELAY_R_ITEM, "PATCH") && relay_route_allows(RELAY_R_ITEM, "PUT"));
    CHECK(!relay_route_allows(RELAY_R_ITEM, "POST") && !relay_route_allows(RELAY_R_ITEM, "PA"));
    CHECK(!relay_route_allows(RELAY_R_NONE, "GET"));
}

int main(void)
{
    RUN(test_durations);
    RUN(test_sizes);
    RUN(test_ids);
    RUN(test_item_create);
    RUN(test_deferred_create);
    RUN(test_pair_bodies);
    RUN(test_range);
    RUN(test_routes);
    return unit_done();
}
