/* routes_pair.c — PROTOCOL §6.7 pairing rendezvous. The relay only passes
 * opaque messages between the two sides; it never sees the code's secret. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "routes.h"

/* Waiters are keyed by session and side: a message wakes only the side it
 * is for, so a side's own long-poll does not return empty when it sends. */
static void side_key(char key[WAITER_KEY_LEN], const char *session, int side)
{
    snprintf(key, WAITER_KEY_LEN, "p%s.%d", session, side);
}

static void wake_both(server *srv, const char *session)
{
    char key[WAITER_KEY_LEN];
    for (int side = 0; side < 2; side++) {
        side_key(key, session, side);
        waiters_wake(srv->waiters, key, WAKE_COMMIT);
    }
}

/* A claimed session lives at least this long past the claim (at most
 * max_pair_ttl): the code's ttl bounds the time to claim it, and the run
 * that follows has two people answer, each within 600 s (PROTOCOL §7.5). */
#define PAIR_RUN_S 1800

static const char *pair_state_name(pair_state st)
{
    return st == PAIR_WAITING ? "waiting" : st == PAIR_CLAIMED ? "claimed" : "closed";
}

static enum MHD_Result allocate(request *r)
{
    server *srv = r->srv;
    const relay_config *cfg = srv->cfg;
    if (!request_has_access(r))
        return reply_error(r, 401, "access token required");
    bool has_ttl;
    uint64_t ttl;
    if (relay_parse_pair_alloc((const uint8_t *)r->body, r->body_len, &has_ttl, &ttl) != CHUTE_OK)
        return reply_error(r, 400, "body must be {} or {\"ttl\": seconds}");
    uint64_t retry;
    if (!ratelimit_take(srv->ratelimit, request_client_addr(r), RL_PAIR_ALLOC,
                        cfg->pair_allocs_per_min, &retry))
        return reply_too_many(r, "pairing attempts", retry);
    if (!has_ttl)
        ttl = cfg->pair_ttl;
    if (ttl > cfg->max_pair_ttl)
        ttl = cfg->max_pair_ttl;
    char session[RELAY_ID_CHARS + 1], token[RELAY_TOKEN_CHARS + 1];
    char nameplate[RELAY_NAMEPLATE_MAX + 1];
    uint8_t hash[32];
    make_id(session);
    make_token(token, hash);
    int64_t now = (int64_t)time(NULL), expires = now + (int64_t)ttl;
    chute_status st = store_pair_create(srv->store, session, hash, now, expires, nameplate);
    if (st == CHUTE_ERR_LIMIT)
        return reply_error(r, 503, "no free nameplate");
    if (st != CHUTE_OK)
        return reply_error(r, 500, "cannot allocate a nameplate");
    /* ttl too: a client whose clock is not ours times the code from it. */
    return reply_json(r, 201, json_pack("{s:s,s:s,s:s,s:I,s:I}", "nameplate", nameplate,
                                        "session", session, "token", token,
                                        "expires", (json_int_t)expires,
                                        "ttl", (json_int_t)ttl));
}

static enum MHD_Result claim(request *r)
{
    server *srv = r->srv;
    if (relay_parse_empty_object((const uint8_t *)r->body, r->body_len) != CHUTE_OK)
        return reply_error(r, 400, "body must be empty or a JSON object");
    uint64_t retry;
    if (!ratelimit_take(srv->ratelimit, request_client_addr(r), RL_PAIR_CLAIM,
                        srv->cfg->pair_claims_per_min, &retry))
        return reply_too_many(r, "pairing attempts", retry);
    char session[RELAY_ID_CHARS + 1], token[RELAY_TOKEN_CHARS + 1];
    uint8_t hash[32];
    int64_t expires;
    make_token(token, hash);
    int64_t now = (int64_t)time(NULL);
    uint64_t run = srv->cfg->max_pair_ttl < PAIR_RUN_S ? srv->cfg->max_pair_ttl : PAIR_RUN_S;
    chute_status st = store_pair_claim(srv->store, r->route.a, hash, now, now + (int64_t)run,
                                       session, &expires);
    if (st == CHUTE_ERR_NOT_FOUND)
        return reply_error(r, 404, "not found");
    if (st == CHUTE_ERR_EXISTS)
        return reply_error_with(r, 410, "this code was already used",
                                json_pack("{s:s}", "reason", "claimed"));
    if (st == CHUTE_ERR_EXPIRED)
        return reply_error_with(r, 410, "this code has expired",
                                json_pack("{s:s}", "reason", "expired"));
    if (st == CHUTE_ERR_REFUSED)
        return reply_error_with(r, 410, "the inviting device cancelled this code",
                                json_pack("{s:s}", "reason", "closed"));
    if (st != CHUTE_OK)
        return reply_error(r, 500, "cannot claim the nameplate");
    /* The inviter may be long-polling for the claim. */
    wake_both(srv, session);
    return reply_json(r, 200, json_pack("{s:s,s:s,s:I,s:I}", "session", session, "token", token,
                                        "expires", (json_int_t)expires,
                                        "ttl", (json_int_t)(expires > now ? expires - now : 0)));
}

static enum MHD_Result gone(request *r, const char *reason)
{
    return reply_error_with(r, 410, strcmp(reason, "expired") == 0
                                        ? "the pairing session has expired"
                                        : "the pairing session is closed",
                            json_pack("{s:s}", "reason", reason));
}

/* state and expires: the session's as its token was checked. */
static enum MHD_Result send_message(request *r, int side, pair_state state, int64_t expires)
{
    server *srv = r->srv;
    uint8_t *body;
    size_t len;
    chute_status st = relay_parse_pair_message((const uint8_t *)r->body, r->body_len,
                                               srv->cfg->pair_max_message, &body, &len);
    if (st == CHUTE_ERR_LIMIT)
        return reply_error(r, 413, "message too large");
    if (st != CHUTE_OK)
        return reply_error(r, 400, "body must be {\"body\": \"<base64>\"}");
    uint64_t seq = 0;
    st = store_pair_send(srv->store, r->route.a, side, body, len, srv->cfg->pair_max_messages,
                         (int64_t)time(NULL), &seq);
    free(body);
    /* Why, as a receive says it: a client tells a code whose time ran out
     * from a session the other side closed. */
    if (st == CHUTE_ERR_EXPIRED && expires <= (int64_t)time(NULL))
        return gone(r, "expired");
    if (st == CHUTE_ERR_EXPIRED && state == PAIR_WAITING)
        return reply_error(r, 410, "the code has not been claimed yet");
    if (st == CHUTE_ERR_EXPIRED)
        return gone(r, "closed");
    if (st == CHUTE_ERR_LIMIT)
        return reply_error(r, 413, "too many messages in this session");
    if (st == CHUTE_ERR_NOT_FOUND)
        return reply_error(r, 404, "not found");
    if (st != CHUTE_OK)
        return reply_error(r, 500, "cannot store the message");
    char key[WAITER_KEY_LEN];
    side_key(key, r->route.a, 1 - side);
    waiters_wake(srv->waiters, key, WAKE_COMMIT);
    return reply_json(r, 201, json_pack("{s:I}", "seq", (json_int_t)seq));
}

static enum MHD_Result receive(request *r, int side)
{
    server *srv = r->srv;
    uint64_t after = 0, wait = 0;
    const char *a = request_arg(r, "after"), *w = request_arg(r, "wait");
    if ((a && relay_parse_u64(a, &after) != CHUTE_OK) ||
        (w && relay_parse_u64(w, &wait) != CHUTE_OK))
        return reply_error(r, 400, "after and wait must be non-negative integers");
    if (wait > srv->cfg->max_wait)
        wait = srv->cfg->max_wait;
    store_message *msgs = NULL;
    size_t n = 0;
    pair_state state = PAIR_CLOSED;
    int64_t expires = 0;
    char key[WAITER_KEY_LEN];
    side_key(key, r->route.a, side);
    bool lock = wait > 0 && !r->wait.suspended_once;
    if (lock)
        waiters_lock(srv->waiters);
    chute_status st = store_pair_receive(srv->store, r->route.a, side, after, &msgs, &n,
                                         &state, &expires);
    bool live = state != PAIR_CLOSED && expires > (int64_t)time(NULL);
    if (lock) {
        bool waiting = st == CHUTE_OK && n == 0 && live &&
                       waiters_suspend(srv->waiters, &r->wait, r->conn, key, false,
                                       (unsigned)wait * 1000);
        waiters_unlock(srv->waiters);
        if (waiting)
            return MHD_YES;
    }
    if (st == CHUTE_ERR_NOT_FOUND)
        return reply_error(r, 404, "not found");
    if (st != CHUTE_OK)
        return reply_error(r, 500, "cannot read messages");
    if (n == 0 && !live) {
        store_messages_free(msgs, n);
        /* A session whose time ran out is "expired" even if a side closed
         * it since (a run that failed on the expiry closes it). */
        return gone(r, expires <= (int64_t)time(NULL) ? "expired" : "closed");
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        char *b = base64_encode(msgs[i].body, msgs[i].len);
        json_t *e = b ? json_pack("{s:I,s:s}", "seq", (json_int_t)msgs[i].seq, "body", b) : NULL;
        free(b);
        if (!e || json_array_append_new(arr, e) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    store_messages_free(msgs, n);
    if (!arr)
        return reply_error(r, 500, "out of memory");
    return reply_json(r, 200, json_pack("{s:o,s:s}", "messages", arr, "state",
                                        live ? pair_state_name(state) : "closed"));
}

enum MHD_Result routes_pair(request *r)
{
    server *srv = r->srv;
    if (r->route.id == RELAY_R_PAIR)
        return allocate(r);
    if (r->route.id == RELAY_R_PAIR_CLAIM)
        return claim(r);
    uint8_t hash[32];
    int side = 0;
    pair_state state;
    int64_t expires;
    chute_status st = CHUTE_ERR_NOT_FOUND;
    if (request_token_hash(r, hash))
        st = store_pair_auth(srv->store, r->route.a, hash, &side, &state, &expires);
    if (st == CHUTE_ERR_NOT_FOUND)
        return reply_error(r, 404, "not found");
    if (st != CHUTE_OK)
        return reply_error(r, 500, "cannot check the token");
    bool expired = expires <= (int64_t)time(NULL);
    const char *m = r->method;
    if (r->route.id == RELAY_R_PAIR_SESSION && strcmp(m, "GET") == 0) {
        if (expired)
            return gone(r, "expired");
        return reply_json(r, 200, json_pack("{s:s,s:I}", "state", pair_state_name(state),
                                            "expires", (json_int_t)expires));
    }
    if (r->route.id == RELAY_R_PAIR_SESSION) {     /* DELETE */
        st = store_pair_close(srv->store, r->route.a);
        if (st != CHUTE_OK && st != CHUTE_ERR_NOT_FOUND)
            return reply_error(r, 500, "cannot close the session");
        wake_both(srv, r->route.a);
        return reply_empty(r, 204);
    }
    if (strcmp(m, "POST") == 0)
        return send_message(r, side, state, expires);
    return receive(r, side);
}
