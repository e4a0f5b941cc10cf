/* relay_client.h — a libcurl client for the relay HTTP API (PROTOCOL §6).
 *
 * One relay_client wraps one curl easy handle and is used by one thread at
 * a time; threads that talk to the relay concurrently each make their own.
 * The functions are reentrant otherwise (no globals except curl's one-time
 * global init, done under pthread_once).
 *
 * Every call returns a chute_status:
 *   CHUTE_ERR_NETWORK    the relay could not be reached, the connection
 *                        broke, a timeout hit, or the relay answered 5xx
 *   CHUTE_ERR_NOT_FOUND  404 (a missing thing or a token that does not
 *                        open it: the relay does not say which)
 *   CHUTE_ERR_EXPIRED    410 (relay_client_reason() says "claimed",
 *                        "expired" or "closed" for a pairing claim)
 *   CHUTE_ERR_EXISTS     409 conflict
 *   CHUTE_ERR_LIMIT      413, 429, 507
 *   CHUTE_ERR_REFUSED    401 (private relay without the access token)
 *   CHUTE_ERR_PROTOCOL   any other unexpected status or an answer that does
 *                        not parse
 * and afterwards relay_client_http_status() and relay_client_error() tell
 * what the relay (or curl) said. Tokens are sent only in the Authorization
 * header and are never logged or kept in error text. */
#ifndef CHUTE_RELAY_CLIENT_H
#define CHUTE_RELAY_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "status.h"

/* Ids and tokens are short base64url strings (PROTOCOL §6.1); item ids up
 * to 64 characters; nameplates up to 6 digits. Sizes include the NUL. */
#define RELAY_ID_MAX        65
#define RELAY_TOKEN_MAX     65
#define RELAY_NAMEPLATE_BUF 17   /* a nameplate: up to 16 characters (PROTOCOL §4.1) and NUL */
#define RELAY_STATE_MAX     16
#define RELAY_ERROR_MAX     256
#define RELAY_URL_MAX       512

typedef struct relay_client relay_client;

typedef struct {
    const char *base_url;      /* "https://host:port", no trailing path */
    const char *cacert;        /* CA bundle file (CURLOPT_CAINFO) or NULL */
    const char *pin;           /* "sha256//<base64>" (CURLOPT_PINNEDPUBLICKEY) or NULL */
    const char *access_token;  /* private relay's Chute-Access-Token or NULL */
    long connect_timeout_ms;   /* 0: 10 s */
    long timeout_ms;           /* whole request, long-polls add their wait; 0: 30 s */
} relay_config;

chute_status relay_client_new(const relay_config *cfg, relay_client **out);
void relay_client_free(relay_client *c);

/* While *stop is non-zero every request of c gives up within about a
 * second (CHUTE_ERR_NETWORK), a long-poll or a download too, so a thread
 * that talks to the relay can be ended at unmount. NULL: never. */
void relay_client_set_stop(relay_client *c, const atomic_int *stop);

/* The whole-request timeout of c's later requests (a long-poll adds the
 * wait it asks for), as relay_config.timeout_ms; returns the one before,
 * so a caller that needs a shorter one for a while can put it back. */
long relay_client_set_timeout(relay_client *c, long timeout_ms);

/* What the last request got: the HTTP status (0 if none arrived), the
 * relay's "error" message or curl's description, and the "reason" field of
 * a 410 ("claimed", "expired", "closed") or "". Never NULL. */
long relay_client_http_status(const relay_client *c);
const char *relay_client_error(const relay_client *c);
const char *relay_client_reason(const relay_client *c);

/* ---- health and inboxes (§6.2–6.4) ---------------------------------- */

chute_status relay_health(relay_client *c);

typedef struct {
    char inbox[RELAY_ID_MAX];
    char owner_token[RELAY_TOKEN_MAX];
} relay_inbox;

typedef struct {
    long long items, bytes, quota_items, quota_bytes, senders;
} relay_inbox_info;

typedef struct {
    char sender[RELAY_ID_MAX];
    char send_token[RELAY_TOKEN_MAX];
} relay_sender;

chute_status relay_inbox_create(relay_client *c, relay_inbox *out);
chute_status relay_inbox_get(relay_client *c, const char *inbox,
                             const char *owner_token, relay_inbox_info *out);
chute_status relay_inbox_delete(relay_client *c, const char *inbox,
                                const char *owner_token);
chute_status relay_sender_add(relay_client *c, const char *inbox,
                              const char *owner_token, relay_sender *out);
chute_status relay_sender_revoke(relay_client *c, const char *inbox,
                                 const char *owner_token, const char *sender);

/* ---- items (§6.5–6.6) ------------------------------------------------ */

typedef struct {
    char item[RELAY_ID_MAX];
    char state[RELAY_STATE_MAX];  /* uploading|pending|delivered|expired|cancelled */
    uint64_t size, offset;        /* size 0 while deferred */
    bool deferred;                /* created without a size: not declared yet */
} relay_item_state;

/* PUT: create (or repeat the same create). meta_b64 is standard base64. */
chute_status relay_item_create(relay_client *c, const char *inbox,
                               const char *send_token, const char *item,
                               uint64_t size, const char *meta_b64,
                               relay_item_state *out);

/* PUT {"deferred":true}: create an item whose size and meta are declared
 * later (by relay_item_create with them, once the file is closed), so its
 * bytes can go while it is still being written (PROTOCOL §6.5). */
chute_status relay_item_create_deferred(relay_client *c, const char *inbox,
                                        const char *send_token, const char *item,
                                        relay_item_state *out);

/* PATCH: send len bytes read from fd at file_offset (pread, streamed, never
 * all in memory) as the bytes at upload offset `offset`. *new_offset gets
 * the relay's Upload-Offset. On CHUTE_ERR_EXISTS (409, offset mismatch)
 * *new_offset gets the relay's current offset if it said one. */
chute_status relay_item_append_fd(relay_client *c, const char *inbox,
                                  const char *send_token, const char *item,
                                  uint64_t offset, int fd, off_t file_offset,
                                  uint64_t len, uint64_t *new_offset);

/* Fills buf with the len bytes at upload offset pos; 0 or -1 (the request
 * is aborted and the call returns CHUTE_ERR_IO). Called from inside curl,
 * in order, with pieces of at most curl's upload buffer. */
typedef int (*relay_fill_fn)(void *ctx, uint64_t pos, uint8_t *buf, size_t len);

/* PATCH: send the len bytes at upload offset `offset` as fill makes them
 * (streamed: memory is one curl buffer, whatever len is). Answers as
 * relay_item_append_fd. */
chute_status relay_item_append_source(relay_client *c, const char *inbox,
                                      const char *send_token, const char *item,
                                      uint64_t offset, uint64_t len,
                                      relay_fill_fn fill, void *ctx,
                                      uint64_t *new_offset);

/* HEAD: durable offset and declared length (RELAY_LENGTH_DEFERRED for an
 * item whose length is not declared yet). */
#define RELAY_LENGTH_DEFERRED UINT64_MAX
chute_status relay_item_offset(relay_client *c, const char *inbox,
                               const char *token, const char *item,
                               uint64_t *offset, uint64_t *length);

chute_status relay_item_status(relay_client *c, const char *inbox,
                               const char *token, const char *item,
                               relay_item_state *out);

/* DELETE with the send token (cancel) or the owner token (ack): the same
 * request, two names so call sites say what they mean. */
chute_status relay_item_cancel(relay_client *c, const char *inbox,
                               const char *send_token, const char *item);
chute_status relay_item_ack(relay_client *c, const char *inbox,
                            const char *owner_token, const char *item);
/* The owner takes an item down as failing its checks (state "rejected",
 * so its sender learns it was not accepted); a relay that predates it
 * acknowledges it instead. */
chute_status relay_item_reject(relay_client *c, const char *inbox,
                               const char *owner_token, const char *item);

typedef struct {
    char item[RELAY_ID_MAX];
    uint64_t seq, size, offset;
    int complete;
    int deferred;                 /* size not declared yet: size 0, meta_b64 NULL */
    long long created;
    char sender[RELAY_ID_MAX];    /* the sender id whose send token made it */
    char *meta_b64;               /* owned by the list */
} relay_listed_item;

typedef struct {
    relay_listed_item *items;
    size_t count;
    uint64_t cursor;
} relay_item_list;

/* GET items?after=&wait=[&partial=1]; long-polls up to wait_s seconds. */
chute_status relay_items_list(relay_client *c, const char *inbox,
                              const char *owner_token, uint64_t after,
                              int wait_s, int partial, relay_item_list *out);
void relay_item_list_free(relay_item_list *l);

/* Called with each chunk of a download; a non-zero return stops it (the
 * call then returns CHUTE_ERR_IO unless the callback's own status was set
 * through *cb_status). */
typedef int (*relay_sink_fn)(void *ctx, const uint8_t *data, size_t len);

/* GET .../data with Range bytes=first-last (last UINT64_MAX: to the end;
 * first 0 and last UINT64_MAX: no Range header). Streams to sink. */
chute_status relay_item_download(relay_client *c, const char *inbox,
                                 const char *owner_token, const char *item,
                                 uint64_t first, uint64_t last,
                                 relay_sink_fn sink, void *ctx);

/* ---- pairing rendezvous (§6.7) --------------------------------------- */

typedef struct {
    char nameplate[RELAY_NAMEPLATE_BUF];   /* "" for the joining side */
    char session[RELAY_ID_MAX];
    char token[RELAY_TOKEN_MAX];
    long long expires;   /* on the relay's clock */
    long long ttl;       /* seconds it had left when the relay answered; -1: not said */
} relay_pair_side;

/* ttl_s 0: the relay's default. */
chute_status relay_pair_allocate(relay_client *c, long ttl_s,
                                 relay_pair_side *out);
chute_status relay_pair_claim(relay_client *c, const char *nameplate,
                              relay_pair_side *out);
chute_status relay_pair_state(relay_client *c, const relay_pair_side *side,
                              char state[RELAY_STATE_MAX], long long *expires);
chute_status relay_pair_send(relay_client *c, const relay_pair_side *side,
                             const uint8_t *body, size_t len, uint64_t *seq);

typedef struct {
    uint64_t seq;
    uint8_t *body;
    size_t len;
} relay_pair_message;

typedef struct {
    relay_pair_message *messages;
    size_t count;
    char state[RELAY_STATE_MAX];
} relay_pair_inbox;

chute_status relay_pair_receive(relay_client *c, const relay_pair_side *side,
                                uint64_t after, int wait_s,
                                relay_pair_inbox *out);
void relay_pair_inbox_free(relay_pair_inbox *m);
chute_status relay_pair_close(relay_client *c, const relay_pair_side *side);

#endif
