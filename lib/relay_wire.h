/* relay_wire.h — pure parsers for what a relay client sends to chuted.
 *
 * Every function here takes untrusted bytes and either fills a struct or
 * returns a chute_status saying why not; none allocates unless it says so,
 * none touches the network or disk. They are fuzzed by
 * tests/fuzz/fuzz_relay_wire.c and unit-tested by tests/unit/test_relay_wire.c.
 * The wire format itself is docs/PROTOCOL.md §6. */
#ifndef CHUTE_RELAY_WIRE_H
#define CHUTE_RELAY_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Length of a relay-made id (16 bytes) and token (32 bytes), base64url. */
#define RELAY_ID_CHARS    22
#define RELAY_TOKEN_CHARS 43
#define RELAY_ITEM_ID_MIN 16
#define RELAY_ITEM_ID_MAX 64
#define RELAY_NAMEPLATE_MAX 6

/* --- units: durations and sizes of the command line and config file ----- */

/* "90", "90s", "15m", "1h", "60d" → seconds. CHUTE_ERR_MALFORMED otherwise
 * (also on overflow, an empty string or trailing junk). */
chute_status relay_parse_duration(const char *s, uint64_t *secs);
/* "4096", "64K", "10M", "64G", "1T" (binary multiples, optional trailing
 * "B" or "iB", e.g. "64KiB") → bytes. */
chute_status relay_parse_size(const char *s, uint64_t *bytes);
/* A plain decimal unsigned integer, no sign, no spaces, no overflow. */
chute_status relay_parse_u64(const char *s, uint64_t *out);

/* --- identifiers ---------------------------------------------------------- */

/* A relay-made id: exactly 22 characters of [A-Za-z0-9_-]. */
bool relay_valid_id(const char *s, size_t len);
/* A sender-chosen item id: 16–64 characters of [A-Za-z0-9_-]. */
bool relay_valid_item_id(const char *s, size_t len);
/* A nameplate: 1–6 decimal digits. */
bool relay_valid_nameplate(const char *s, size_t len);
/* A bearer token: exactly 43 characters of [A-Za-z0-9_-]. */
bool relay_valid_token(const char *s, size_t len);
/* "Bearer <token>" → pointer to the token inside `header`, or NULL. */
const char *relay_bearer_token(const char *header);

/* --- request bodies ------------------------------------------------------- */

/* PUT item: {"size": N, "meta": "<base64 with padding>"} (optionally with
 * "deferred": false), or {"deferred": true}: an item whose size and meta
 * are declared later by an ordinary create. */
typedef struct {
    bool deferred;      /* then size is 0 and meta NULL */
    uint64_t size;
    uint8_t *meta;      /* decoded; malloc'd, caller frees (never NULL on OK
                         * unless deferred) */
    size_t meta_len;
} relay_item_create;

/* CHUTE_ERR_MALFORMED for anything but the shapes above (also "deferred"
 * true together with size or meta, or not a boolean); CHUTE_ERR_LIMIT if
 * the decoded meta is longer than max_meta. */
chute_status relay_parse_item_create(const uint8_t *buf, size_t len,
                                     size_t max_meta, relay_item_create *out);
void relay_item_create_free(relay_item_create *c);

/* POST /v1/pair: empty, {} or {"ttl": S}. *has_ttl says whether S was given. */
chute_status relay_parse_pair_alloc(const uint8_t *buf, size_t len,
                                    bool *has_ttl, uint64_t *ttl);

/* POST messages: {"body": "<base64>"}; body malloc'd (caller frees, never
 * NULL on OK). CHUTE_ERR_LIMIT if longer than max_len decoded. */
chute_status relay_parse_pair_message(const uint8_t *buf, size_t len,
                                      size_t max_len, uint8_t **body,
                                      size_t *body_len);

/* A body that must be empty or a JSON object (whose fields are ignored). */
chute_status relay_parse_empty_object(const uint8_t *buf, size_t len);

/* --- headers -------------------------------------------------------------- */

/* Range header against a body of `size` bytes. CHUTE_OK with the inclusive
 * [*first, *last] of a satisfiable single range; CHUTE_ERR_LIMIT when the
 * range cannot be satisfied (→ 416); CHUTE_ERR_MALFORMED or
 * CHUTE_ERR_UNSUPPORTED (several ranges) when the header is to be ignored
 * (→ 200 with the whole body). */
chute_status relay_parse_range(const char *header, uint64_t size,
                               uint64_t *first, uint64_t *last);

/* --- routing -------------------------------------------------------------- */

typedef enum {
    RELAY_R_NONE = 0,       /* no such resource: 404 */
    RELAY_R_HEALTH,         /* /v1/health */
    RELAY_R_METRICS,        /* /metrics */
    RELAY_R_INBOXES,        /* /v1/inboxes */
    RELAY_R_INBOX,          /* /v1/inboxes/{inbox} */
    RELAY_R_SENDERS,        /* /v1/inboxes/{inbox}/senders */
    RELAY_R_SENDER,         /* /v1/inboxes/{inbox}/senders/{sender} */
    RELAY_R_ITEMS,          /* /v1/inboxes/{inbox}/items */
    RELAY_R_ITEM,           /* /v1/inboxes/{inbox}/items/{item} */
    RELAY_R_ITEM_STATUS,    /* /v1/inboxes/{inbox}/items/{item}/status */
    RELAY_R_ITEM_DATA,      /* /v1/inboxes/{inbox}/items/{item}/data */
    RELAY_R_PAIR,           /* /v1/pair */
    RELAY_R_PAIR_CLAIM,     /* /v1/pair/{nameplate}/claim */
    RELAY_R_PAIR_SESSION,   /* /v1/pair/{session} */
    RELAY_R_PAIR_MESSAGES,  /* /v1/pair/{session}/messages */
    RELAY_R_COUNT
} relay_route_id;

typedef struct {
    relay_route_id id;
    /* NUL-terminated copies of the path parameters, "" when absent. */
    char a[RELAY_ITEM_ID_MAX + 1];  /* inbox, nameplate or session */
    char b[RELAY_ITEM_ID_MAX + 1];  /* sender or item */
} relay_route;

/* Match a request path (no query string). Malformed parameters (wrong
 * alphabet or length) match nothing, so they get 404 like a missing id. */
void relay_match_route(const char *path, relay_route *out);

/* Methods a route accepts, as "GET, DELETE" for an Allow header. */
const char *relay_route_methods(relay_route_id id);
/* Whether `method` is one of relay_route_methods(id). */
bool relay_route_allows(relay_route_id id, const char *method);

#endif
