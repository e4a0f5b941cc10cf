/* routes_item.c — PROTOCOL §6.5 uploading and §6.6 receiving items.
 *
 * The upload path keeps "acknowledged means durable": a PATCH streams its
 * bytes to the item's part file as they arrive, and only after fdatasync is
 * the new offset committed and 204 sent. An interrupted PATCH commits the
 * prefix it managed to write. One PATCH per item at a time, and no declare
 * of a deferred item (its size and meta, given after its bytes began) while
 * one is in progress. */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "blobs.h"
#include "log.h"
#include "metrics.h"
#include "routes.h"
#include "syncer.h"

#define LIST_LIMIT 1000
/* A list answer's JSON stays within this (PROTOCOL §6.6): MHD holds an
 * answer whole while its client reads it, as slowly as it likes, and 1000
 * items of 4 KiB meta each made 5.6 MB. The store reads no more meta than
 * fits (base64 takes 4 bytes for 3). */
#define LIST_BYTES (256u << 10)
#define LIST_META (LIST_BYTES / 4 * 3)
/* What the answer's object, "items", "cursor" and its number take. */
#define LIST_ENVELOPE 64
/* A long PATCH makes its prefix durable this often, so a relay killed
 * mid-upload loses at most this much of it, and a receiver following the
 * upload (partial=1) gets it in steps of this size. */
#define CHECKPOINT_BYTES (16u << 20)

struct upload {
    blob_writer *w;
    char inbox[RELAY_ITEM_ID_MAX + 1];      /* route params share one size */
    char item[RELAY_ITEM_ID_MAX + 1];
    bool deferred;              /* the item's size is not declared yet */
    uint64_t limit;             /* its size, or while deferred max_item_size */
    uint64_t checkpoint;        /* offset last handed to the syncer */
    body_syncer *syncer;        /* makes the checkpoints, off this thread */
    store *store;
    uint64_t end;               /* where this PATCH's Content-Length ends */
    bool failed;                /* a write failed; the rest is discarded */
    bool disk_full;             /* ... because the data folder is full */
    /* Set by a checkpoint that found the item no longer uploading
     * (cancelled, acked, expired, its inbox deleted): the rest of the body
     * is discarded, not written into a file no quota counts any more. */
    atomic_bool retired;
    uint64_t reserved;          /* a deferred append's length: counted against the
                                   inbox's byte quota while it is in progress */
    struct upload *next;        /* in the busy list */
};

/* Items with a PATCH in progress: a second concurrent PATCH gets 409.
 * busy_mu is also held across the store's reads of an inbox's usage for
 * the byte quota (quota_left, quota_reserve): taken before the store's own
 * lock, never while it is held. */
static pthread_mutex_t busy_mu = PTHREAD_MUTEX_INITIALIZER;
static struct upload *busy;

static bool busy_take(struct upload *u)
{
    pthread_mutex_lock(&busy_mu);
    for (struct upload *b = busy; b; b = b->next)
        if (strcmp(b->inbox, u->inbox) == 0 && strcmp(b->item, u->item) == 0) {
            pthread_mutex_unlock(&busy_mu);
            return false;
        }
    u->next = busy;
    busy = u;
    pthread_mutex_unlock(&busy_mu);
    return true;
}

static void busy_release(struct upload *u)
{
    pthread_mutex_lock(&busy_mu);
    for (struct upload **p = &busy; *p; p = &(*p)->next)
        if (*p == u) {
            *p = u->next;
            break;
        }
    pthread_mutex_unlock(&busy_mu);
}

/* With busy_mu held: what the deferred appends in progress in inbox
 * (other than u) have reserved. */
static uint64_t reserved_in(const char *inbox, const struct upload *u)
{
    uint64_t sum = 0;
    for (struct upload *b = busy; b; b = b->next)
        if (b != u && strcmp(b->inbox, inbox) == 0)
            sum = b->reserved > UINT64_MAX - sum ? UINT64_MAX : sum + b->reserved;
    return sum;
}

/* With busy_mu held: the inbox's byte quota less what the deferred appends
 * in progress there have reserved, for a create or declare to check the
 * store's usage against. The caller keeps busy_mu until the store's check
 * is done: an append reserving in between would count the usage without
 * the new item, as the new item would not count its reservation. */
static uint64_t quota_left(const relay_config *cfg, const char *inbox)
{
    uint64_t in_flight = reserved_in(inbox, NULL);
    return cfg->inbox_quota_bytes > in_flight ? cfg->inbox_quota_bytes - in_flight : 0;
}

static void inbox_key(char key[WAITER_KEY_LEN], const char *inbox)
{
    snprintf(key, WAITER_KEY_LEN, "i%s", inbox);
}

static void slot_name(struct upload *u, const request *r)
{
    snprintf(u->inbox, sizeof u->inbox, "%s", r->route.a);
    snprintf(u->item, sizeof u->item, "%s", r->route.b);
}

/* Make a whole uploading body final and commit its item; wakes listers. */
static chute_status commit_whole(server *srv, const char *inbox, const char *item,
                                 uint64_t size)
{
    uint64_t seq, have;
    chute_status st = blob_finish(srv->blobs, inbox, item, size, &have);
    if (st == CHUTE_OK)
        st = store_item_commit(srv->store, inbox, item, &seq);
    if (st == CHUTE_OK) {
        char key[WAITER_KEY_LEN];
        inbox_key(key, inbox);
        waiters_wake(srv->waiters, key, WAKE_COMMIT);
        log_debug("item committed, seq %llu", (unsigned long long)seq);
    }
    return st;
}

/* --- who is asking ---------------------------------------------------------- */

typedef struct {
    store_role role;
    char sender[RELAY_ID_CHARS + 1];
} caller;

/* Fills c; false after answering 404/500. */
static bool authenticate(request *r, caller *c, enum MHD_Result *rc)
{
    uint8_t hash[32];
    c->role = ROLE_NONE;
    c->sender[0] = '\0';
    if (request_token_hash(r, hash) &&
        store_inbox_auth(r->srv->store, r->route.a, hash, &c->role, c->sender) != CHUTE_OK) {
        *rc = reply_error(r, 500, "cannot check the token");
        return false;
    }
    if (c->role == ROLE_NONE) {
        *rc = reply_error(r, 404, "not found");
        return false;
    }
    return true;
}

/* The item as this caller may see it (owner: all; sender: its own). */
static bool load_item(request *r, const caller *c, store_item *it, enum MHD_Result *rc)
{
    chute_status st = store_item_get(r->srv->store, r->route.a, r->route.b, it);
    if (st == CHUTE_OK && c->role == ROLE_SENDER && strcmp(it->sender, c->sender) != 0) {
        store_item_clear(it);
        st = CHUTE_ERR_NOT_FOUND;
    }
    if (st == CHUTE_ERR_NOT_FOUND)
        *rc = reply_error(r, 404, "not found");
    else if (st != CHUTE_OK)
        *rc = reply_error(r, 500, "cannot read the item");
    return st == CHUTE_OK;
}

/* {"item","size","offset","state"}; a deferred item has "deferred": true
 * and no size yet. */
static json_t *item_state_json(const store_item *it)
{
    if (it->deferred)
        return json_pack("{s:s,s:I,s:s,s:b}", "item", it->id, "offset",
                         (json_int_t)it->offset, "state", item_state_name(it->state),
                         "deferred", 1);
    return json_pack("{s:s,s:I,s:I,s:s}", "item", it->id, "size", (json_int_t)it->size,
                     "offset", (json_int_t)it->offset, "state", item_state_name(it->state));
}

static enum MHD_Result conflict_offset(request *r, const char *msg, const store_item *it);

/* --- create (PUT) ------------------------------------------------------------- */

static enum MHD_Result conflict_state(request *r, const char *msg, const store_item *it)
{
    json_t *extra = json_object();
    if (extra && it->id[0])
        json_object_set_new(extra, "state", json_string(item_state_name(it->state)));
    return reply_error_with(r, 409, msg, extra);
}

/* Whether a create of size and meta on this existing item declares them. */
static bool declarable(const store_item *it, const caller *c)
{
    return it->deferred && it->state == ITEM_UPLOADING && strcmp(it->sender, c->sender) == 0;
}

/* The answer to a refused declare. */
static enum MHD_Result declare_refused(request *r, chute_status st, const store_item *it)
{
    if (st == CHUTE_ERR_EXISTS && it->deferred && it->state == ITEM_UPLOADING)
        return conflict_offset(r, "the item already has more bytes than this size", it);
    if (st == CHUTE_ERR_EXISTS)
        return conflict_state(r, "another item has this id", it);
    if (st == CHUTE_ERR_LIMIT)
        return reply_error(r, 507, "inbox quota exceeded");
    if (st == CHUTE_ERR_NOT_FOUND)
        return reply_error(r, 404, "not found");
    return reply_error(r, 500, "cannot declare the item");
}

/* Commit a just declared item whose bytes are all there; *it becomes what
 * it is then (a tombstone if it was retired meanwhile: CHUTE_ERR_EXISTS). */
static chute_status commit_declared(request *r, store_item *it)
{
    chute_status st = commit_whole(r->srv, r->route.a, r->route.b, it->size);
    if (st == CHUTE_OK) {
        it->state = ITEM_PENDING;
    } else if (st == CHUTE_ERR_NOT_FOUND) {
        store_item_clear(it);
        if (store_item_get(r->srv->store, r->route.a, r->route.b, it) == CHUTE_OK)
            st = CHUTE_ERR_EXISTS;
    }
    return st;
}

/* A repeated create of an item whose bytes are all durable but which is
 * not committed (its commit failed, on a declare or the last append):
 * commit it now, so the sender's retry finishes it. A PATCH in progress
 * commits it at its end instead. *it becomes what it is then. */
static chute_status commit_repeated(request *r, store_item *it)
{
    if (it->state != ITEM_UPLOADING || it->deferred || it->offset != it->size)
        return CHUTE_OK;
    struct upload slot = { 0 };
    slot_name(&slot, r);
    if (!busy_take(&slot)) return CHUTE_OK;
    chute_status st = commit_declared(r, it);
    busy_release(&slot);
    return st;
}

/* PUT {"size","meta"} on the caller's deferred item: fix them, and commit
 * the item at once if all its bytes are there. *was is the item as the
 * create found it (and answers a 409 while a PATCH of it is in progress). */
static enum MHD_Result declare_item(request *r, const caller *c, const store_item_new *n,
                                    const store_item *was)
{
    struct upload slot = { 0 };
    slot_name(&slot, r);
    if (!busy_take(&slot))
        return conflict_offset(r, "an upload of this item is in progress", was);
    store_item it;
    bool declared = false;
    store_item_new d = *n;
    pthread_mutex_lock(&busy_mu);
    d.quota_bytes = quota_left(r->srv->cfg, r->route.a);
    chute_status st = store_item_declare(r->srv->store, r->route.a, r->route.b, c->sender,
                                         &d, &declared, &it);
    pthread_mutex_unlock(&busy_mu);
    if (st == CHUTE_OK && declared && it.offset == it.size)
        st = commit_declared(r, &it);
    busy_release(&slot);
    enum MHD_Result rc = st == CHUTE_OK ? reply_json(r, 200, item_state_json(&it))
                                        : declare_refused(r, st, &it);
    store_item_clear(&it);
    return rc;
}

static enum MHD_Result create_item(request *r, const caller *c)
{
    const relay_config *cfg = r->srv->cfg;
    if (c->role != ROLE_SENDER)
        return reply_error(r, 404, "not found");
    relay_item_create req;
    chute_status st = relay_parse_item_create((const uint8_t *)r->body, r->body_len,
                                              cfg->max_meta, &req);
    if (st == CHUTE_ERR_LIMIT)
        return reply_error(r, 413, "meta too large");
    if (st != CHUTE_OK)
        return reply_error(r, 400, "body must be {\"size\": N, \"meta\": \"<base64>\"}"
                                   " or {\"deferred\": true}");
    if (req.size > cfg->max_item_size) {
        relay_item_create_free(&req);
        return reply_error(r, 413, "item too large");
    }
    int64_t now = (int64_t)time(NULL);
    store_item_new n = {
        .deferred = req.deferred, .size = req.size, .meta = req.meta,
        .meta_len = req.meta_len, .now = now, .expires = now + (int64_t)cfg->item_ttl,
        .quota_items = cfg->inbox_quota_items,
    };
    store_item it;
    bool created = false;
    enum MHD_Result rc;
    /* The deferred appends in progress here hold part of the byte quota. */
    pthread_mutex_lock(&busy_mu);
    n.quota_bytes = quota_left(cfg, r->route.a);
    st = store_item_create(r->srv->store, r->route.a, r->route.b, c->sender, &n,
                           &created, &it);
    pthread_mutex_unlock(&busy_mu);
    if (st == CHUTE_OK && !created) {
        st = commit_repeated(r, &it);
        if (st != CHUTE_OK && st != CHUTE_ERR_EXISTS)
            st = CHUTE_ERR_IO;
    }
    if (st == CHUTE_OK && created) {
        char key[WAITER_KEY_LEN];
        inbox_key(key, r->route.a);
        waiters_wake(r->srv->waiters, key,
                     it.state == ITEM_PENDING ? WAKE_COMMIT : WAKE_CREATE);
    }
    if (st == CHUTE_ERR_EXISTS && !req.deferred && declarable(&it, c))
        rc = declare_item(r, c, &n, &it);
    else if (st == CHUTE_ERR_EXISTS)
        rc = conflict_state(r, "another item has this id", &it);
    else if (st == CHUTE_ERR_LIMIT)
        rc = reply_error(r, 507, "inbox quota exceeded");
    else if (st == CHUTE_ERR_IO)
        rc = reply_error(r, 500, "cannot commit the item");
    else if (st != CHUTE_OK)
        rc = reply_error(r, 500, "cannot create the item");
    else
        rc = reply_json(r, created ? 201 : 200, item_state_json(&it));
    store_item_clear(&it);
    relay_item_create_free(&req);
    return rc;
}

/* --- append (PATCH) ------------------------------------------------------------- */

static enum MHD_Result conflict_offset(request *r, const char *msg, const store_item *it)
{
    json_t *extra = json_pack("{s:I,s:s}", "offset",
                              (json_int_t)(it->state == ITEM_PENDING ? it->size : it->offset),
                              "state", item_state_name(it->state));
    return reply_error_with(r, 409, msg, extra);
}

/* An empty response with Upload-Offset: offset; NULL when out of memory. */
static struct MHD_Response *offset_response(uint64_t offset)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    char num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)offset);
    if (resp)
        MHD_add_response_header(resp, "Upload-Offset", num);
    return resp;
}

static enum MHD_Result reply_offset(request *r, unsigned status, uint64_t offset)
{
    struct MHD_Response *resp = offset_response(offset);
    return resp ? reply_response(r, status, resp) : MHD_NO;
}

/* HEAD: the durable offset (the size once complete; what it was for a
 * tombstone, as the status says) and the size, or Upload-Defer-Length
 * while the size is not declared. */
static enum MHD_Result reply_head(request *r, const store_item *it)
{
    struct MHD_Response *resp = offset_response(it->offset);
    if (!resp)
        return MHD_NO;
    if (it->deferred) {
        MHD_add_response_header(resp, "Upload-Defer-Length", "1");
    } else {
        char num[24];
        snprintf(num, sizeof num, "%llu", (unsigned long long)it->size);
        MHD_add_response_header(resp, "Upload-Length", num);
    }
    return reply_response(r, 200, resp);
}

/* Whether the inbox's byte quota has room for u's deferred append of len
 * bytes, counting the other deferred appends in progress there too (each
 * checked alone, concurrent ones could overshoot it together); if so, u
 * reserves len until it ends (busy_release). Conservative: what a long
 * append has made durable already counts twice until it ends.
 * The store's usage is read under busy_mu: an append commits its offset
 * before it gives back its reservation (under busy_mu), so one ending
 * meanwhile is seen by one of the two reads (read before busy_mu, by
 * neither); and a create checks under busy_mu too (quota_left). */
static bool quota_reserve(request *r, struct upload *u, uint64_t len, enum MHD_Result *rc)
{
    store_inbox_info info;
    uint64_t quota = r->srv->cfg->inbox_quota_bytes;
    pthread_mutex_lock(&busy_mu);
    if (store_inbox_info_get(r->srv->store, r->route.a, &info) != CHUTE_OK) {
        pthread_mutex_unlock(&busy_mu);
        *rc = reply_error(r, 500, "cannot read the inbox");
        return false;
    }
    uint64_t in_flight = reserved_in(u->inbox, u);
    uint64_t used = in_flight > UINT64_MAX - info.bytes ? UINT64_MAX : info.bytes + in_flight;
    bool room = used <= quota && len <= quota - used;
    if (room)
        u->reserved = len;
    pthread_mutex_unlock(&busy_mu);
    if (!room)
        *rc = reply_error(r, 507, "inbox quota exceeded");
    return room;
}

/* Whether len bytes at off may be appended to it; answers the PATCH
 * otherwise. */
static bool append_allowed(request *r, struct upload *u, const store_item *it, uint64_t off,
                           uint64_t len, enum MHD_Result *rc)
{
    if (it->state != ITEM_UPLOADING) {
        if (it->state == ITEM_PENDING && off == it->size && len == 0)
            *rc = reply_offset(r, 204, it->size);
        else
            *rc = conflict_offset(r, "the item is not uploading", it);
        return false;
    }
    if (off != it->offset) {
        *rc = conflict_offset(r, "Upload-Offset is not the durable offset", it);
        return false;
    }
    uint64_t limit = it->deferred ? r->srv->cfg->max_item_size : it->size;
    if (off > limit || len > limit - off) {
        *rc = reply_error(r, 413, it->deferred ? "the bytes go past max_item_size"
                                               : "the bytes go past the declared size");
        return false;
    }
    return !it->deferred || quota_reserve(r, u, len, rc);
}

/* A checkpoint, on the syncer's thread while this one goes on writing.
 * The bytes below offset were written before it was offered, so the
 * fdatasync covers them; only then is offset committed (the store locks
 * itself). */
static chute_status checkpoint(void *arg, uint64_t offset)
{
    struct upload *u = arg;
    chute_status st = blob_writer_sync(u->w);
    if (!st) st = store_item_set_offset(u->store, u->inbox, u->item, offset);
    if (st == CHUTE_ERR_NOT_FOUND) atomic_store(&u->retired, true);
    return st;
}

/* An empty PATCH at the end of an item whose bytes are all durable but
 * whose commit failed (after its body was made final, perhaps): commit it
 * now. Reopening the body to append nothing would find it gone. */
static enum MHD_Result commit_durable(request *r, struct upload *u, uint64_t size)
{
    chute_status st = commit_whole(r->srv, u->inbox, u->item, size);
    busy_release(u);
    free(u);
    if (st == CHUTE_OK)
        return reply_offset(r, 204, size);
    if (st == CHUTE_ERR_NOT_FOUND)      /* its sender was revoked meanwhile */
        return reply_error(r, 404, "not found");
    return reply_error(r, 500, "cannot commit the item");
}

/* A first append made its body file after it read its item: a cancel, an
 * ack, an expiry or the inbox's deletion in between removed a body not
 * there yet, and no row would own the one made now (nor count it against
 * a quota) until the orphan sweep. Each of them changes the row first and
 * removes the body after, so the item read again now that the file exists
 * tells: uploading, and any later retire removes the file itself; retired
 * or gone, the file goes here. false after answering (and ending u). */
static bool still_uploading(request *r, struct upload *u, enum MHD_Result *rc)
{
    store_item it;
    chute_status st = store_item_get(r->srv->store, u->inbox, u->item, &it);
    bool uploading = st == CHUTE_OK && it.state == ITEM_UPLOADING;
    if (!uploading) {
        blob_writer_close(u->w);
        if (st == CHUTE_ERR_NOT_FOUND || (st == CHUTE_OK && it.state > ITEM_PENDING))
            blob_remove(r->srv->blobs, u->inbox, u->item);
        if (st == CHUTE_OK)
            *rc = conflict_offset(r, "the item is no longer uploading", &it);
        else if (st == CHUTE_ERR_NOT_FOUND)
            *rc = reply_error(r, 404, "not found");
        else
            *rc = reply_error(r, 500, "cannot read the item");
        busy_release(u);
        free(u);
    }
    if (st == CHUTE_OK)
        store_item_clear(&it);
    return uploading;
}

enum MHD_Result routes_item_patch_begin(request *r)
{
    enum MHD_Result rc;
    caller c;
    if (!authenticate(r, &c, &rc))
        return rc;
    if (c.role != ROLE_SENDER)
        return reply_error(r, 404, "not found");
    store_item it;
    if (!load_item(r, &c, &it, &rc))
        return rc;
    store_item_clear(&it);          /* the meta is not needed here */

    const char *ct = request_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    const char *want = "application/offset+octet-stream";
    if (!ct || strncasecmp(ct, want, strlen(want)) != 0 ||
        (ct[strlen(want)] != '\0' && ct[strlen(want)] != ';'))
        return reply_error(r, 415, "Content-Type must be application/offset+octet-stream");
    /* A chunked body would be read past Content-Length, so past what the
     * quota and the size checks below were given. */
    if (request_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING))
        return reply_error(r, 400, "Transfer-Encoding is not accepted: send Content-Length");
    uint64_t len, off;
    const char *cl = request_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl)
        return reply_error(r, 411, "Content-Length required");
    if (relay_parse_u64(cl, &len) != CHUTE_OK)
        return reply_error(r, 400, "bad Content-Length");
    if (relay_parse_u64(request_header(r, "Upload-Offset"), &off) != CHUTE_OK)
        return reply_error(r, 400, "Upload-Offset required");

    struct upload *u = calloc(1, sizeof *u);
    if (!u)
        return reply_error(r, 500, "out of memory");
    slot_name(u, r);
    if (!busy_take(u)) {
        free(u);
        return conflict_offset(r, "another upload of this item is in progress", &it);
    }
    /* Read again under the slot: a declare may have changed it meanwhile. */
    bool ok = load_item(r, &c, &it, &rc);
    if (ok) {
        store_item_clear(&it);
        ok = append_allowed(r, u, &it, off, len, &rc);
    }
    if (ok && !it.deferred && len == 0 && off == it.size)
        return commit_durable(r, u, it.size);
    if (!ok) {
        busy_release(u);
        free(u);
        return rc;
    }
    u->deferred = it.deferred;
    u->limit = it.deferred ? r->srv->cfg->max_item_size : it.size;
    u->end = off + len;             /* append_allowed: at most limit */
    u->checkpoint = off;
    u->store = r->srv->store;
    if (blob_append_begin(r->srv->blobs, u->inbox, u->item, off, u->limit, &u->w) != CHUTE_OK) {
        busy_release(u);
        free(u);
        return reply_error(r, 500, "cannot open the item body");
    }
    if (off == 0 && !still_uploading(r, u, &rc))
        return rc;
    if (body_syncer_new(checkpoint, u, &u->syncer) != CHUTE_OK) {
        blob_writer_close(u->w);
        busy_release(u);
        free(u);
        return reply_error(r, 500, "out of memory");
    }
    r->upload = u;
    metrics_upload_started();
    return MHD_YES;
}

void routes_item_patch_data(request *r, const char *data, size_t len)
{
    struct upload *u = r->upload;
    if (u->failed || atomic_load(&u->retired))
        return;
    chute_status st = len > u->end - blob_writer_offset(u->w) ? CHUTE_ERR_ARG
                                                               : blob_write(u->w, data, len);
    if (st != CHUTE_OK) {
        u->failed = true;
        u->disk_full = st == CHUTE_ERR_LIMIT;
        return;
    }
    uint64_t off = blob_writer_offset(u->w);
    if (off - u->checkpoint >= CHECKPOINT_BYTES && off < u->limit &&
        body_syncer_offer(u->syncer, off))
        u->checkpoint = off;
}

/* Make what was written durable and committed; complete the item if it is
 * whole (a deferred one is completed by its declare). Ends the upload.
 * *offset is the committed offset. */
static chute_status settle_upload(request *r, uint64_t *offset)
{
    server *srv = r->srv;
    struct upload *u = r->upload;
    body_syncer_free(u->syncer);        /* the checkpoint in progress ends first */
    chute_status st = blob_writer_sync(u->w);
    *offset = blob_writer_offset(u->w);
    if (st == CHUTE_OK)
        st = store_item_set_offset(srv->store, u->inbox, u->item, *offset);
    if (st == CHUTE_OK && !u->deferred && *offset == u->limit)
        st = commit_whole(srv, u->inbox, u->item, u->limit);
    blob_writer_close(u->w);
    busy_release(u);
    free(u);
    r->upload = NULL;
    metrics_upload_ended();
    return st;
}

static enum MHD_Result finish_patch(request *r)
{
    bool failed = r->upload->failed, disk_full = r->upload->disk_full;
    uint64_t offset;
    chute_status st = settle_upload(r, &offset);
    /* Retired meanwhile: its offset or commit found it so, or its body went
     * with it under the commit's rename (TRUNCATED). */
    if (st == CHUTE_ERR_NOT_FOUND || st == CHUTE_ERR_TRUNCATED) {
        store_item it;
        if (store_item_get(r->srv->store, r->route.a, r->route.b, &it) != CHUTE_OK)
            return reply_error(r, 404, "not found");
        bool uploading = it.state == ITEM_UPLOADING;
        enum MHD_Result rc = MHD_NO;
        if (!uploading)
            rc = conflict_offset(r, "the item is no longer uploading", &it);
        store_item_clear(&it);
        if (!uploading)
            return rc;
        /* Still uploading, yet no longer ours to write: its sender was
         * revoked meanwhile, and a revoked token gets 404 everywhere. */
        if (st == CHUTE_ERR_NOT_FOUND)
            return reply_error(r, 404, "not found");
    }
    if (st != CHUTE_OK || failed) {
        json_t *extra = st == CHUTE_OK ? json_pack("{s:I}", "offset", (json_int_t)offset) : NULL;
        if (disk_full && st == CHUTE_OK)
            return reply_error_with(r, 507, "the relay's storage is full; resume later", extra);
        return reply_error_with(r, 500, "cannot store the bytes", extra);
    }
    return reply_offset(r, 204, offset);
}

void routes_item_patch_end(request *r)
{
    uint64_t offset;
    chute_status st = settle_upload(r, &offset);
    log_info("upload interrupted; durable offset %llu (%s)",
             (unsigned long long)offset, chute_strstatus(st));
}

/* --- receiving ---------------------------------------------------------------- */

static bool set_size_and_meta(json_t *e, const store_item *it)
{
    char *meta = base64_encode(it->meta ? it->meta : (const uint8_t *)"", it->meta_len);
    bool ok = meta && json_object_set_new(e, "size", json_integer((json_int_t)it->size)) == 0 &&
              json_object_set_new(e, "meta", json_string(meta)) == 0;
    free(meta);
    return ok;
}

/* What a partial listing adds: complete, the durable offset, deferred. */
static bool set_progress(json_t *e, const store_item *it)
{
    bool complete = it->state == ITEM_PENDING;
    uint64_t offset = complete ? it->size : it->offset;
    return json_object_set_new(e, "complete", json_boolean(complete)) == 0 &&
           json_object_set_new(e, "offset", json_integer((json_int_t)offset)) == 0 &&
           (!it->deferred || json_object_set_new(e, "deferred", json_true()) == 0);
}

/* One listed item. sender: which send token made it, so the owner picks the
 * peer (and its link key) without trying every key. A deferred item (listed
 * only with partial) has no size and no meta yet. */
static json_t *list_entry_json(const store_item *it, bool partial)
{
    json_t *e = json_pack("{s:s,s:I,s:I,s:s}", "item", it->id, "seq", (json_int_t)it->seq,
                          "created", (json_int_t)it->created, "sender", it->sender);
    if (e && ((!it->deferred && !set_size_and_meta(e, it)) ||
              (partial && !set_progress(e, it)))) {
        json_decref(e);
        return NULL;
    }
    return e;
}

static json_t *list_json(const store_item *items, size_t n, uint64_t after, bool partial)
{
    json_t *arr = json_array(), *o = json_object();
    uint64_t cursor = after;
    if (!arr || !o) {
        json_decref(arr);
        json_decref(o);
        return NULL;
    }
    size_t bytes = LIST_ENVELOPE;
    for (size_t i = 0; i < n; i++) {
        const store_item *it = &items[i];
        json_t *e = list_entry_json(it, partial);
        /* Its compact text and a comma. */
        size_t len = e ? json_dumpb(e, NULL, 0, JSON_COMPACT) : 0;
        if (len == 0) {
            json_decref(e);
            goto fail;
        }
        /* The first item goes in whatever its size, so the cursor moves. */
        if (i > 0 && bytes + len + 1 > LIST_BYTES) {
            json_decref(e);
            break;                  /* the next answer carries on from here */
        }
        if (json_array_append_new(arr, e) != 0)
            goto fail;
        bytes += len + 1;
        if (it->seq > cursor)
            cursor = it->seq;
    }
    json_object_set_new(o, "items", arr);
    json_object_set_new(o, "cursor", json_integer((json_int_t)cursor));
    return o;
fail:
    json_decref(arr);
    json_decref(o);
    return NULL;
}

static bool parse_flag(const char *v)
{
    return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
}

static enum MHD_Result list_items(request *r)
{
    server *srv = r->srv;
    uint64_t after = 0, wait = 0;
    const char *a = request_arg(r, "after"), *w = request_arg(r, "wait");
    if ((a && relay_parse_u64(a, &after) != CHUTE_OK) ||
        (w && relay_parse_u64(w, &wait) != CHUTE_OK) || after > INT64_MAX)
        return reply_error(r, 400, "after and wait must be non-negative integers");
    bool partial = parse_flag(request_arg(r, "partial"));
    if (wait > srv->cfg->max_wait)
        wait = srv->cfg->max_wait;
    store_item *items = NULL;
    size_t n = 0;
    chute_status st;
    char key[WAITER_KEY_LEN];
    inbox_key(key, r->route.a);
    if (wait > 0 && !r->wait.suspended_once) {
        /* Look and suspend under the registry lock (see waiters.h). */
        waiters_lock(srv->waiters);
        st = store_item_list(srv->store, r->route.a, after, partial, (int64_t)time(NULL),
                             LIST_LIMIT, LIST_META, &items, &n);
        if (st == CHUTE_OK && n == 0 &&
            waiters_suspend(srv->waiters, &r->wait, r->conn, key, partial,
                            (unsigned)wait * 1000)) {
            waiters_unlock(srv->waiters);
            store_items_free(items, n);
            return MHD_YES;
        }
        waiters_unlock(srv->waiters);
    } else {
        st = store_item_list(srv->store, r->route.a, after, partial, (int64_t)time(NULL),
                             LIST_LIMIT, LIST_META, &items, &n);
    }
    if (st != CHUTE_OK)
        return reply_error(r, 500, "cannot list the items");
    json_t *o = list_json(items, n, after, partial);
    store_items_free(items, n);
    return o ? reply_json(r, 200, o) : reply_error(r, 500, "out of memory");
}

/* MHD asks for the body in pieces of at most this (its connection
 * memory bounds it further). */
#define BODY_BLOCK (256u << 10)

static ssize_t send_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    ssize_t n = blob_reader_read(cls, pos, buf, max);
    /* A body shorter than its row says is damage: cut the response. */
    return n > 0 ? n : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void free_body(void *cls)
{
    blob_reader_free(cls);
}

static enum MHD_Result download(request *r, const store_item *it)
{
    if (it->state > ITEM_PENDING)
        return reply_error(r, 404, "not found");
    bool complete = it->state == ITEM_PENDING;
    uint64_t avail = complete ? it->size : it->offset;
    int fd = -1;
    if (avail > 0 && blob_open_read(r->srv->blobs, r->route.a, r->route.b, complete, &fd) != CHUTE_OK)
        return reply_error(r, 500, "cannot open the item body");
    if (avail > 0 && fd < 0)
        return reply_error(r, 500, "the item body is missing");
    uint64_t first = 0, last = avail ? avail - 1 : 0;
    unsigned status = 200;
    const char *range = request_header(r, MHD_HTTP_HEADER_RANGE);
    if (range) {
        chute_status st = relay_parse_range(range, avail, &first, &last);
        if (st == CHUTE_ERR_LIMIT) {
            if (fd >= 0)
                close(fd);
            char cr[48];
            snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)avail);
            json_t *o = json_pack("{s:s}", "error", "range not satisfiable");
            char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
            json_decref(o);
            struct MHD_Response *resp = text ? MHD_create_response_from_buffer(
                strlen(text), text, MHD_RESPMEM_MUST_FREE) : NULL;
            if (!resp) {
                free(text);
                return MHD_NO;
            }
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
            return reply_response(r, 416, resp);
        }
        if (st == CHUTE_OK)
            status = 206;
        else {
            first = 0;              /* an ignored Range: the whole body */
            last = avail ? avail - 1 : 0;
        }
    }
    uint64_t len = avail ? last - first + 1 : 0;
    struct MHD_Response *resp;
    if (len == 0) {
        if (fd >= 0)
            close(fd);
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    } else {
        /* Read and sent in order, dropping behind (blobs.h) rather than
         * sendfile, which would keep the whole body in the page cache. */
        blob_reader *br;
        if (blob_reader_new(fd, first, !complete, &br) != CHUTE_OK)
            return reply_error(r, 500, "out of memory");
        resp = MHD_create_response_from_callback(len, BODY_BLOCK, send_body, br, free_body);
        if (!resp)
            blob_reader_free(br);
    }
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    if (status == 206) {
        char cr[80];
        snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)first,
                 (unsigned long long)last, (unsigned long long)avail);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
    }
    return reply_response(r, status, resp);
}

/* DELETE: the owner acknowledges (or, with reject=1, refuses: the item
 * failed its checks), the sender cancels. */
static enum MHD_Result retire(request *r, const caller *c, const store_item *it)
{
    server *srv = r->srv;
    bool owner = c->role == ROLE_OWNER;
    item_state was = it->state;
    if (!owner && (was == ITEM_DELIVERED || was == ITEM_EXPIRED || was == ITEM_REJECTED)) {
        json_t *extra = json_pack("{s:s}", "state", item_state_name(was));
        return reply_error_with(r, 409, was == ITEM_DELIVERED ? "already delivered"
                                        : was == ITEM_EXPIRED ? "already expired"
                                                              : "rejected by the owner", extra);
    }
    item_state to = !owner ? ITEM_CANCELLED
                   : parse_flag(request_arg(r, "reject")) ? ITEM_REJECTED : ITEM_DELIVERED;
    int64_t tomb = (int64_t)time(NULL) + (int64_t)srv->cfg->tombstone_ttl;
    chute_status st = store_item_retire(srv->store, r->route.a, r->route.b, to, tomb, &was);
    if (st == CHUTE_ERR_NOT_FOUND)
        return reply_error(r, 404, "not found");
    if (st != CHUTE_OK)
        return reply_error(r, 500, "cannot update the item");
    if (!owner && was == ITEM_DELIVERED) {
        json_t *extra = json_pack("{s:s}", "state", "delivered");
        return reply_error_with(r, 409, "already delivered", extra);
    }
    if (was <= ITEM_PENDING)
        blob_remove(srv->blobs, r->route.a, r->route.b);
    return reply_empty(r, 204);
}

enum MHD_Result routes_item(request *r)
{
    enum MHD_Result rc;
    const char *m = r->method;
    if (r->route.id == RELAY_R_ITEM && strcmp(m, "PATCH") == 0 && r->upload)
        return finish_patch(r);
    caller c;
    if (!authenticate(r, &c, &rc))
        return rc;
    if (r->route.id == RELAY_R_ITEMS)
        return c.role == ROLE_OWNER ? list_items(r) : reply_error(r, 404, "not found");
    if (r->route.id == RELAY_R_ITEM && strcmp(m, "PUT") == 0)
        return create_item(r, &c);
    store_item it;
    if (!load_item(r, &c, &it, &rc))
        return rc;
    if (r->route.id == RELAY_R_ITEM_DATA) {
        rc = c.role == ROLE_OWNER ? download(r, &it) : reply_error(r, 404, "not found");
    } else if (r->route.id == RELAY_R_ITEM_STATUS) {
        rc = reply_json(r, 200, item_state_json(&it));
    } else if (strcmp(m, "HEAD") == 0) {
        rc = reply_head(r, &it);
    } else if (strcmp(m, "DELETE") == 0) {
        rc = retire(r, &c, &it);
    } else {
        rc = reply_error(r, 405, "method not allowed");
    }
    store_item_clear(&it);
    return rc;
}
