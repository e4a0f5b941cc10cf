/* routes_inbox.c — PROTOCOL §6.3 inboxes and §6.4 senders. */
#include <jansson.h>
#include <string.h>
#include <time.h>

#include "blobs.h"
#include "log.h"
#include "ratelimit.h"
#include "routes.h"

/* A device pairs with a few peers; the cap keeps an owner (or a stolen
 * owner token) from growing the table without end (PROTOCOL §6.4). */
#define MAX_SENDERS 1000

static enum MHD_Result create_inbox(request *r)
{
    if (!request_has_access(r))
        return reply_error(r, 401, "access token required");
    if (relay_parse_empty_object((const uint8_t *)r->body, r->body_len) != CHUTE_OK)
        return reply_error(r, 400, "body must be empty or a JSON object");
    /* Each inbox brings a quota of its own: without a limit, a loop of
     * creates would be one client's way around every quota. */
    uint64_t retry;
    if (!ratelimit_take(r->srv->ratelimit, request_client_addr(r), RL_INBOX_CREATE,
                        r->srv->cfg->inbox_creates_per_min, &retry))
        return reply_too_many(r, "inboxes created", retry);
    char id[RELAY_ID_CHARS + 1], token[RELAY_TOKEN_CHARS + 1];
    uint8_t hash[32];
    make_id(id);
    make_token(token, hash);
    chute_status st = store_inbox_create(r->srv->store, id, hash, (int64_t)time(NULL));
    if (st != CHUTE_OK)
        return reply_error(r, 500, "cannot create the inbox");
    return reply_json(r, 201, json_pack("{s:s,s:s}", "inbox", id, "owner_token", token));
}

static void remove_body(void *cls, const char *inbox, const char *item)
{
    blob_remove(cls, inbox, item);
}

/* The owner's requests on one inbox. */
static enum MHD_Result owner_request(request *r)
{
    server *srv = r->srv;
    const char *inbox = r->route.a;
    if (r->route.id == RELAY_R_INBOX && strcmp(r->method, "GET") == 0) {
        store_inbox_info info;
        chute_status st = store_inbox_info_get(srv->store, inbox, &info);
        if (st == CHUTE_ERR_NOT_FOUND)
            return reply_error(r, 404, "not found");
        if (st != CHUTE_OK)
            return reply_error(r, 500, "cannot read the inbox");
        return reply_json(r, 200, json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "inbox", inbox,
                                             "items", (json_int_t)info.items,
                                             "bytes", (json_int_t)info.bytes,
                                             "quota_items", (json_int_t)srv->cfg->inbox_quota_items,
                                             "quota_bytes", (json_int_t)srv->cfg->inbox_quota_bytes,
                                             "senders", (json_int_t)info.senders));
    }
    if (r->route.id == RELAY_R_INBOX) {        /* DELETE */
        chute_status st = store_inbox_delete(srv->store, inbox, remove_body, srv->blobs);
        if (st == CHUTE_ERR_NOT_FOUND)
            return reply_error(r, 404, "not found");
        if (st != CHUTE_OK)
            return reply_error(r, 500, "cannot delete the inbox");
        /* Long-polls on a deleted inbox answer now. */
        char key[WAITER_KEY_LEN];
        snprintf(key, sizeof key, "i%s", inbox);
        waiters_wake(srv->waiters, key, WAKE_COMMIT);
        return reply_empty(r, 204);
    }
    if (r->route.id == RELAY_R_SENDERS) {      /* POST */
        if (relay_parse_empty_object((const uint8_t *)r->body, r->body_len) != CHUTE_OK)
            return reply_error(r, 400, "body must be empty or a JSON object");
        char id[RELAY_ID_CHARS + 1], token[RELAY_TOKEN_CHARS + 1];
        uint8_t hash[32];
        make_id(id);
        make_token(token, hash);
        chute_status st = store_sender_create(srv->store, inbox, id, hash, (int64_t)time(NULL),
                                              MAX_SENDERS);
        if (st == CHUTE_ERR_LIMIT)
            return reply_error(r, 507, "too many senders on this inbox");
        if (st != CHUTE_OK)
            return reply_error(r, 500, "cannot add the sender");
        return reply_json(r, 201, json_pack("{s:s,s:s}", "sender", id, "send_token", token));
    }
    /* DELETE sender */
    chute_status st = store_sender_delete(srv->store, inbox, r->route.b);
    if (st == CHUTE_ERR_NOT_FOUND)
        return reply_error(r, 404, "not found");
    if (st != CHUTE_OK)
        return reply_error(r, 500, "cannot revoke the sender");
    return reply_empty(r, 204);
}

enum MHD_Result routes_inbox(request *r)
{
    if (r->route.id == RELAY_R_INBOXES)
        return create_inbox(r);
    uint8_t hash[32];
    store_role role = ROLE_NONE;
    char sender[RELAY_ID_CHARS + 1];
    if (request_token_hash(r, hash) &&
        store_inbox_auth(r->srv->store, r->route.a, hash, &role, sender) != CHUTE_OK)
        return reply_error(r, 500, "cannot check the token");
    /* A wrong token and a missing inbox answer the same. */
    if (role != ROLE_OWNER)
        return reply_error(r, 404, "not found");
    return owner_request(r);
}
