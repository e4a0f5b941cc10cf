/* store_items.c — inboxes, senders and items (see store.h). */
#include "store.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_db.h"

/* What an undelivered item counts against its inbox's byte quota: its
 * declared size, or while it is deferred its durable offset. */
#define QUOTA_BYTES "coalesce(sum(CASE WHEN deferred THEN off ELSE size END), 0)"

/* --- inboxes and senders ---------------------------------------------- */

static const char SQL_INBOX_INSERT[] =
    "INSERT INTO inboxes(id, owner_hash, created) VALUES (?1, ?2, ?3)";

chute_status store_inbox_create(store *s, const char *inbox,
                                const uint8_t owner_hash[STORE_HASH_LEN], int64_t now)
{
    db_lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = db_stmt(s, SQL_INBOX_INSERT);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        db_bind_text(q, 1, inbox);
        db_bind_blob(q, 2, owner_hash, STORE_HASH_LEN);
        sqlite3_bind_int64(q, 3, now);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_CONSTRAINT)
            st = CHUTE_ERR_EXISTS;
        else if (rc != SQLITE_DONE)
            st = db_err(s, "insert inbox");
        sqlite3_reset(q);
    }
    db_unlock(s);
    return st;
}

static const char SQL_INBOX_OWNER[] = "SELECT owner_hash FROM inboxes WHERE id = ?1";
/* By the index on (inbox, token_hash): the cost does not grow with the
 * senders, and a timing difference could tell at most how much of a
 * SHA-256 of an unknown token matched, which says nothing of the token. */
static const char SQL_INBOX_SENDER[] =
    "SELECT id FROM senders WHERE inbox = ?1 AND token_hash = ?2";

/* Inside the lock: the sender holding this token hash, if any. */
static chute_status find_sender(store *s, const char *inbox, const uint8_t hash[STORE_HASH_LEN],
                                store_role *role, char sender[RELAY_ID_CHARS + 1])
{
    sqlite3_stmt *q = db_stmt(s, SQL_INBOX_SENDER);
    if (!q)
        return CHUTE_ERR_DB;
    db_bind_text(q, 1, inbox);
    db_bind_blob(q, 2, hash, STORE_HASH_LEN);
    chute_status st = CHUTE_OK;
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *role = ROLE_SENDER;
        db_copy_text(sender, RELAY_ID_CHARS + 1, sqlite3_column_text(q, 0));
    } else if (rc != SQLITE_DONE) {
        st = db_err(s, "inbox sender");
    }
    sqlite3_reset(q);
    return st;
}

chute_status store_inbox_auth(store *s, const char *inbox,
                              const uint8_t hash[STORE_HASH_LEN], store_role *role,
                              char sender[RELAY_ID_CHARS + 1])
{
    *role = ROLE_NONE;
    sender[0] = '\0';
    db_lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = db_stmt(s, SQL_INBOX_OWNER);
    if (!q) {
        st = CHUTE_ERR_DB;
        goto out;
    }
    db_bind_text(q, 1, inbox);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW &&
        db_hash_eq(sqlite3_column_blob(q, 0), sqlite3_column_bytes(q, 0), hash))
        *role = ROLE_OWNER;
    else if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        st = db_err(s, "inbox owner");
    sqlite3_reset(q);
    /* No inbox: nobody holds anything (and it has no senders). */
    if (st == CHUTE_OK && rc == SQLITE_ROW && *role != ROLE_OWNER)
        st = find_sender(s, inbox, hash, role, sender);
out:
    db_unlock(s);
    return st;
}

static const char SQL_INBOX_INFO[] =
    "SELECT (SELECT count(*) FROM items WHERE inbox = ?1 AND state <= 1),"
    "       (SELECT " QUOTA_BYTES " FROM items WHERE inbox = ?1 AND state <= 1),"
    "       (SELECT count(*) FROM senders WHERE inbox = ?1),"
    "       EXISTS (SELECT 1 FROM inboxes WHERE id = ?1)";

chute_status store_inbox_info_get(store *s, const char *inbox, store_inbox_info *out)
{
    db_lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = db_stmt(s, SQL_INBOX_INFO);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        db_bind_text(q, 1, inbox);
        if (sqlite3_step(q) != SQLITE_ROW) {
            st = db_err(s, "inbox info");
        } else if (!sqlite3_column_int(q, 3)) {
            st = CHUTE_ERR_NOT_FOUND;
        } else {
            out->items = (uint64_t)sqlite3_column_int64(q, 0);
            out->bytes = (uint64_t)sqlite3_column_int64(q, 1);
            out->senders = (uint64_t)sqlite3_column_int64(q, 2);
        }
        sqlite3_reset(q);
    }
    db_unlock(s);
    return st;
}

static const char SQL_INBOX_ITEMS[] =
    "SELECT inbox, id FROM items WHERE inbox = ?1 AND state <= 1";
static const char SQL_INBOX_DEL_ITEMS[] = "DELETE FROM items WHERE inbox = ?1";
static const char SQL_INBOX_DEL_SENDERS[] = "DELETE FROM senders WHERE inbox = ?1";
static const char SQL_INBOX_DEL[] = "DELETE FROM inboxes WHERE id = ?1";

/* Run a one-text-parameter statement to completion. */
chute_status store_inbox_delete(store *s, const char *inbox, store_body_fn each,
                                void *cls)
{
    id_list l = { 0 };
    db_lock(s);
    chute_status st = db_begin(s);
    if (st == CHUTE_OK) {
        sqlite3_stmt *q = db_stmt(s, SQL_INBOX_ITEMS);
        if (!q) {
            st = CHUTE_ERR_DB;
        } else {
            db_bind_text(q, 1, inbox);
            int rc;
            while (st == CHUTE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW)
                st = id_list_add(&l, sqlite3_column_text(q, 0), sqlite3_column_text(q, 1));
            if (st == CHUTE_OK && rc != SQLITE_DONE)
                st = db_err(s, "inbox items");
            sqlite3_reset(q);
        }
        if (st == CHUTE_OK)
            st = db_run1(s, SQL_INBOX_DEL_ITEMS, inbox);
        if (st == CHUTE_OK)
            st = db_run1(s, SQL_INBOX_DEL_SENDERS, inbox);
        if (st == CHUTE_OK)
            st = db_run1(s, SQL_INBOX_DEL, inbox);
        if (st == CHUTE_OK && sqlite3_changes(s->db) == 0)
            st = CHUTE_ERR_NOT_FOUND;
        st = db_finish(s, st);
    }
    db_unlock(s);
    id_list_run(&l, st == CHUTE_OK, each, cls);
    return st;
}

/* Added only while the inbox has fewer than ?5 senders. */
static const char SQL_SENDER_INSERT[] =
    "INSERT INTO senders(id, inbox, token_hash, created) SELECT ?1, ?2, ?3, ?4"
    " WHERE (SELECT count(*) FROM senders WHERE inbox = ?2) < ?5";

chute_status store_sender_create(store *s, const char *inbox, const char *sender,
                                 const uint8_t hash[STORE_HASH_LEN], int64_t now,
                                 uint64_t max_senders)
{
    db_lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = db_stmt(s, SQL_SENDER_INSERT);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        db_bind_text(q, 1, sender);
        db_bind_text(q, 2, inbox);
        db_bind_blob(q, 3, hash, STORE_HASH_LEN);
        sqlite3_bind_int64(q, 4, now);
        sqlite3_bind_int64(q, 5, max_senders > INT64_MAX ? INT64_MAX : (int64_t)max_senders);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_CONSTRAINT)
            st = CHUTE_ERR_EXISTS;
        else if (rc != SQLITE_DONE)
            st = db_err(s, "insert sender");
        else if (sqlite3_changes(s->db) == 0)
            st = CHUTE_ERR_LIMIT;
        sqlite3_reset(q);
    }
    db_unlock(s);
    return st;
}

static const char SQL_SENDER_DEL[] = "DELETE FROM senders WHERE id = ?1 AND inbox = ?2";

chute_status store_sender_delete(store *s, const char *inbox, const char *sender)
{
    db_lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = db_stmt(s, SQL_SENDER_DEL);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        db_bind_text(q, 1, sender);
        db_bind_text(q, 2, inbox);
        if (sqlite3_step(q) != SQLITE_DONE)
            st = db_err(s, "delete sender");
        else if (sqlite3_changes(s->db) == 0)
            st = CHUTE_ERR_NOT_FOUND;
        sqlite3_reset(q);
    }
    db_unlock(s);
    return st;
}

/* --- items ---------------------------------------------------------------- */

#define ITEM_COLS "id, sender, state, size, off, seq, created, expires, meta, deferred"

static chute_status read_item(sqlite3_stmt *q, store_item *it)
{
    memset(it, 0, sizeof *it);
    db_copy_text(it->id, sizeof it->id, sqlite3_column_text(q, 0));
    db_copy_text(it->sender, sizeof it->sender, sqlite3_column_text(q, 1));
    it->state = (item_state)sqlite3_column_int(q, 2);
    it->size = (uint64_t)sqlite3_column_int64(q, 3);
    it->offset = (uint64_t)sqlite3_column_int64(q, 4);
    it->seq = (uint64_t)sqlite3_column_int64(q, 5);
    it->created = sqlite3_column_int64(q, 6);
    it->expires = sqlite3_column_int64(q, 7);
    if (sqlite3_column_type(q, 8) != SQLITE_NULL) {
        int n = sqlite3_column_bytes(q, 8);
        const void *b = sqlite3_column_blob(q, 8);
        it->meta = malloc(n > 0 ? (size_t)n : 1);
        if (!it->meta)
            return CHUTE_ERR_NOMEM;
        if (n > 0)
            memcpy(it->meta, b, (size_t)n);
        it->meta_len = (size_t)n;
    }
    it->deferred = sqlite3_column_int(q, 9) != 0;
    return CHUTE_OK;
}

void store_item_clear(store_item *it)
{
    if (!it)
        return;
    free(it->meta);
    it->meta = NULL;
    it->meta_len = 0;
}

void store_items_free(store_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_item_clear(&items[i]);
    free(items);
}

static const char SQL_ITEM_GET[] =
    "SELECT " ITEM_COLS " FROM items WHERE inbox = ?1 AND id = ?2";

static chute_status item_get_locked(store *s, const char *inbox, const char *item,
                                    store_item *out)
{
    sqlite3_stmt *q = db_stmt(s, SQL_ITEM_GET);
    if (!q)
        return CHUTE_ERR_DB;
    db_bind_text(q, 1, inbox);
    db_bind_text(q, 2, item);
    int rc = sqlite3_step(q);
    chute_status st;
    if (rc == SQLITE_ROW)
        st = read_item(q, out);
    else if (rc == SQLITE_DONE)
        st = CHUTE_ERR_NOT_FOUND;
    else
        st = db_err(s, "get item");
    sqlite3_reset(q);
    return st;
}

chute_status store_item_get(store *s, const char *inbox, const char *item,
                            store_item *out)
{
    memset(out, 0, sizeof *out);
    db_lock(s);
    chute_status st = item_get_locked(s, inbox, item, out);
    db_unlock(s);
    return st;
}

static const char SQL_QUOTA[] =
    "SELECT count(*), " QUOTA_BYTES " FROM items WHERE inbox = ?1 AND state <= 1";
static const char SQL_NEXT_SEQ[] =
    "UPDATE inboxes SET next_seq = next_seq + 1 WHERE id = ?1 RETURNING next_seq - 1";
static const char SQL_ITEM_INSERT[] =
    "INSERT INTO items(inbox, id, sender, state, size, off, seq, meta, created, expires,"
    " deferred) VALUES (?1, ?2, ?3, ?4, ?5, ?5 * (?4 = 1), ?6, ?7, ?8, ?9, ?10)";

/* Take the inbox's next sequence number (inside a transaction). */
static chute_status next_seq(store *s, const char *inbox, uint64_t *seq)
{
    sqlite3_stmt *q = db_stmt(s, SQL_NEXT_SEQ);
    if (!q)
        return CHUTE_ERR_DB;
    db_bind_text(q, 1, inbox);
    int rc = sqlite3_step(q);
    chute_status st = CHUTE_OK;
    if (rc == SQLITE_ROW)
        *seq = (uint64_t)sqlite3_column_int64(q, 0);
    else if (rc == SQLITE_DONE)
        st = CHUTE_ERR_NOT_FOUND;
    else
        st = db_err(s, "next seq");
    /* Step to the end so the UPDATE is complete before the reset. */
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(q);
    sqlite3_reset(q);
    return st;
}

/* The undelivered items of an inbox and the bytes they count against its
 * quota (inside a transaction). */
static chute_status inbox_usage(store *s, const char *inbox, uint64_t *items,
                                uint64_t *bytes)
{
    sqlite3_stmt *q = db_stmt(s, SQL_QUOTA);
    if (!q)
        return CHUTE_ERR_DB;
    db_bind_text(q, 1, inbox);
    chute_status st = CHUTE_OK;
    if (sqlite3_step(q) != SQLITE_ROW) {
        st = db_err(s, "quota");
    } else {
        *items = (uint64_t)sqlite3_column_int64(q, 0);
        *bytes = (uint64_t)sqlite3_column_int64(q, 1);
    }
    sqlite3_reset(q);
    return st;
}

/* Whether `add` more bytes on top of `bytes` stay within `quota`. */
static bool bytes_fit(uint64_t bytes, uint64_t add, uint64_t quota)
{
    return add <= quota && bytes <= quota - add;
}

/* Whether an existing live item is what this create asks for, so a
 * retried create is answered with it. */
static bool same_create(const store_item *it, const char *sender, const store_item_new *n)
{
    if (it->state > ITEM_PENDING || strcmp(it->sender, sender) != 0 ||
        it->deferred != n->deferred)
        return false;
    if (n->deferred)
        return true;                /* a deferred item is always uploading */
    return it->size == n->size && it->meta && it->meta_len == n->meta_len &&
           (n->meta_len == 0 || memcmp(it->meta, n->meta, n->meta_len) == 0);
}

static chute_status insert_item(store *s, const char *inbox, const char *item,
                                const char *sender, const store_item_new *n, uint64_t seq)
{
    sqlite3_stmt *q = db_stmt(s, SQL_ITEM_INSERT);
    if (!q)
        return CHUTE_ERR_DB;
    item_state state = n->size == 0 && !n->deferred ? ITEM_PENDING : ITEM_UPLOADING;
    db_bind_text(q, 1, inbox);
    db_bind_text(q, 2, item);
    db_bind_text(q, 3, sender);
    sqlite3_bind_int(q, 4, state);
    sqlite3_bind_int64(q, 5, n->deferred ? 0 : (int64_t)n->size);
    sqlite3_bind_int64(q, 6, (int64_t)seq);
    if (n->deferred)
        sqlite3_bind_null(q, 7);    /* no meta until the declare */
    else
        db_bind_blob(q, 7, n->meta, n->meta_len);
    sqlite3_bind_int64(q, 8, n->now);
    sqlite3_bind_int64(q, 9, n->expires);
    sqlite3_bind_int(q, 10, n->deferred);
    chute_status st = sqlite3_step(q) == SQLITE_DONE ? CHUTE_OK : db_err(s, "insert item");
    sqlite3_reset(q);
    return st;
}

chute_status store_item_create(store *s, const char *inbox, const char *item,
                               const char *sender, const store_item_new *n,
                               bool *created, store_item *out)
{
    *created = false;
    memset(out, 0, sizeof *out);
    db_lock(s);
    chute_status st = db_begin(s);
    if (st != CHUTE_OK)
        goto out;
    st = item_get_locked(s, inbox, item, out);
    if (st == CHUTE_OK) {
        /* A retried create is answered with what exists; anything else
         * under the same id is a conflict. */
        st = db_finish(s, same_create(out, sender, n) ? CHUTE_OK : CHUTE_ERR_EXISTS);
        goto out;
    }
    if (st != CHUTE_ERR_NOT_FOUND) {
        db_finish(s, st);
        goto out;
    }
    uint64_t items = 0, bytes = 0, seq = 0;
    st = inbox_usage(s, inbox, &items, &bytes);
    if (st == CHUTE_OK && (items + 1 > n->quota_items ||
                           !bytes_fit(bytes, n->deferred ? 0 : n->size, n->quota_bytes)))
        st = CHUTE_ERR_LIMIT;
    if (st == CHUTE_OK)
        st = next_seq(s, inbox, &seq);
    if (st == CHUTE_OK)
        st = insert_item(s, inbox, item, sender, n, seq);
    if (st == CHUTE_OK)
        st = item_get_locked(s, inbox, item, out);
    st = db_finish(s, st);
    if (st == CHUTE_OK)
        *created = true;
out:
    if (st != CHUTE_OK && st != CHUTE_ERR_EXISTS)
        store_item_clear(out);
    db_unlock(s);
    return st;
}

/* An upload's progress, declare and commit need its sender still granted:
 * a PATCH begun before the owner revoked it must not complete after. */
#define SENDER_GRANTED \
    " AND EXISTS (SELECT 1 FROM senders WHERE senders.id = items.sender" \
    " AND senders.inbox = items.inbox)"

static const char SQL_DECLARE[] =
    "UPDATE items SET size = ?3, meta = ?4, deferred = 0"
    " WHERE inbox = ?1 AND id = ?2 AND state = 0 AND deferred = 1" SENDER_GRANTED;

static chute_status set_declared(store *s, const char *inbox, const char *item,
                                 const store_item_new *n)
{
    sqlite3_stmt *q = db_stmt(s, SQL_DECLARE);
    if (!q)
        return CHUTE_ERR_DB;
    db_bind_text(q, 1, inbox);
    db_bind_text(q, 2, item);
    sqlite3_bind_int64(q, 3, (int64_t)n->size);
    db_bind_blob(q, 4, n->meta, n->meta_len);
    chute_status st = CHUTE_OK;
    if (sqlite3_step(q) != SQLITE_DONE)
        st = db_err(s, "declare item");
    else if (sqlite3_changes(s->db) == 0)
        st = CHUTE_ERR_NOT_FOUND;
    sqlite3_reset(q);
    return st;
}

/* Inside the declare's transaction: may this item take size n->size? */
static chute_status may_declare(store *s, const char *inbox, const store_item *it,
                                const char *sender, const store_item_new *n)
{
    if (!it->deferred || it->state != ITEM_UPLOADING || strcmp(it->sender, sender) != 0 ||
        it->offset > n->size)
        return CHUTE_ERR_EXISTS;
    uint64_t items, bytes;
    chute_status st = inbox_usage(s, inbox, &items, &bytes);
    /* bytes counts this item's offset, which the size replaces */
    if (st == CHUTE_OK && !bytes_fit(bytes - it->offset, n->size, n->quota_bytes))
        st = CHUTE_ERR_LIMIT;
    return st;
}

chute_status store_item_declare(store *s, const char *inbox, const char *item,
                                const char *sender, const store_item_new *n,
                                bool *declared, store_item *out)
{
    *declared = false;
    memset(out, 0, sizeof *out);
    db_lock(s);
    chute_status st = db_begin(s);
    if (st != CHUTE_OK)
        goto out;
    st = item_get_locked(s, inbox, item, out);
    if (st == CHUTE_OK && !out->deferred) {
        /* declared already (by this very declare, retried): a no-op if same */
        st = db_finish(s, same_create(out, sender, n) ? CHUTE_OK : CHUTE_ERR_EXISTS);
        goto out;
    }
    if (st == CHUTE_OK)
        st = may_declare(s, inbox, out, sender, n);
    if (st == CHUTE_ERR_EXISTS) {
        st = db_finish(s, st);      /* nothing was written; *out says why */
        goto out;
    }
    store_item_clear(out);
    if (st == CHUTE_OK)
        st = set_declared(s, inbox, item, n);
    if (st == CHUTE_OK)
        st = item_get_locked(s, inbox, item, out);
    st = db_finish(s, st);
    if (st == CHUTE_OK)
        *declared = true;
out:
    if (st != CHUTE_OK && st != CHUTE_ERR_EXISTS)
        store_item_clear(out);
    db_unlock(s);
    return st;
}

static const char SQL_SET_OFFSET[] =
    "UPDATE items SET off = ?3 WHERE inbox = ?1 AND id = ?2 AND state = 0"
    " AND (deferred = 1 OR ?3 <= size)" SENDER_GRANTED;

/* At start, a body found shorter than its offset (the disk lost its end):
 * the offset only goes back, whoever its sender is now. */
static const char SQL_REWIND_OFFSET[] =
    "UPDATE items SET off = ?3 WHERE inbox = ?1 AND id = ?2 AND state = 0 AND off > ?3";

static chute_status update_offset(store *s, const char *sql, const char *inbox,
                                  const char *item, uint64_t offset)
{
    db_lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = db_stmt(s, sql);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        db_bind_text(q, 1, inbox);
        db_bind_text(q, 2, item);
        sqlite3_bind_int64(q, 3, (int64_t)offset);
        if (sqlite3_step(q) != SQLITE_DONE)
            st = db_err(s, "set offset");
        else if (sqlite3_changes(s->db) == 0)
            st = CHUTE_ERR_NOT_FOUND;
        sqlite3_reset(q);
    }
    db_unlock(s);
    return st;
}

chute_status store_item_set_offset(store *s, const char *inbox, const char *item,
                                   uint64_t offset)
{
    return update_offset(s, SQL_SET_OFFSET, inbox, item, offset);
}

chute_status store_item_rewind_offset(store *s, const char *inbox, const char *item,
                                      uint64_t offset)
{
    return update_offset(s, SQL_REWIND_OFFSET, inbox, item, offset);
}

static const char SQL_COMMIT[] =
    "UPDATE items SET state = 1, seq = ?3 WHERE inbox = ?1 AND id = ?2 AND state = 0"
    " AND off = size AND deferred = 0" SENDER_GRANTED;

chute_status store_item_commit(store *s, const char *inbox, const char *item,
                               uint64_t *seq)
{
    db_lock(s);
    chute_status st = db_begin(s);
    if (st == CHUTE_OK) {
        st = next_seq(s, inbox, seq);
        sqlite3_stmt *q = st == CHUTE_OK ? db_stmt(s, SQL_COMMIT) : NULL;
        if (st == CHUTE_OK && !q)
            st = CHUTE_ERR_DB;
        if (st == CHUTE_OK) {
            db_bind_text(q, 1, inbox);
            db_bind_text(q, 2, item);
            sqlite3_bind_int64(q, 3, (int64_t)*seq);
            if (sqlite3_step(q) != SQLITE_DONE)
                st = db_err(s, "commit item");
            else if (sqlite3_changes(s->db) == 0)
                st = CHUTE_ERR_NOT_FOUND;
            sqlite3_reset(q);
        }
        st = db_finish(s, st);
    }
    db_unlock(s);
    return st;
}

static const char SQL_RETIRE[] =
    "UPDATE items SET state = ?3, meta = NULL, expires = ?4"
    " WHERE inbox = ?1 AND id = ?2 AND state <= 1";

chute_status store_item_retire(store *s, const char *inbox, const char *item,
                               item_state to, int64_t tomb_expires, item_state *was)
{
    store_item it;
    db_lock(s);
    chute_status st = db_begin(s);
    if (st == CHUTE_OK) {
        st = item_get_locked(s, inbox, item, &it);
        if (st == CHUTE_OK) {
            *was = it.state;
            store_item_clear(&it);
        }
        sqlite3_stmt *q = NULL;
        if (st == CHUTE_OK && *was <= ITEM_PENDING) {
            if (!(q = db_stmt(s, SQL_RETIRE))) {
                st = CHUTE_ERR_DB;
            } else {
                db_bind_text(q, 1, inbox);
                db_bind_text(q, 2, item);
                sqlite3_bind_int(q, 3, to);
                sqlite3_bind_int64(q, 4, tomb_expires);
                if (sqlite3_step(q) != SQLITE_DONE)
                    st = db_err(s, "retire item");
                sqlite3_reset(q);
            }
        }
        st = db_finish(s, st);
    }
    db_unlock(s);
    return st;
}

static const char SQL_LIST[] =
    "SELECT " ITEM_COLS " FROM items WHERE inbox = ?1 AND seq > ?2"
    " AND state <= 1 AND state >= ?3 AND expires > ?4 ORDER BY seq LIMIT ?5";

chute_status store_item_list(store *s, const char *inbox, uint64_t after,
                             bool partial, int64_t now, size_t limit, size_t max_meta,
                             store_item **items, size_t *n)
{
    size_t meta = 0;
    *items = NULL;
    *n = 0;
    store_item *arr = calloc(limit ? limit : 1, sizeof *arr);
    if (!arr)
        return CHUTE_ERR_NOMEM;
    size_t k = 0;
    db_lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = db_stmt(s, SQL_LIST);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        db_bind_text(q, 1, inbox);
        sqlite3_bind_int64(q, 2, after > INT64_MAX ? INT64_MAX : (int64_t)after);
        sqlite3_bind_int(q, 3, partial ? ITEM_UPLOADING : ITEM_PENDING);
        sqlite3_bind_int64(q, 4, now);
        sqlite3_bind_int64(q, 5, (int64_t)limit);
        int rc;
        bool full = false;
        while (st == CHUTE_OK && !full && k < limit && (rc = sqlite3_step(q)) == SQLITE_ROW) {
            /* The row past max_meta ends the page unread (not the first). */
            size_t len = (size_t)sqlite3_column_bytes(q, 8);
            full = k > 0 && len > max_meta - meta;
            if (!full) {
                st = read_item(q, &arr[k]);
                meta += len > max_meta - meta ? max_meta - meta : len;
                k++;
            }
        }
        if (st == CHUTE_OK && !full && k < limit && rc != SQLITE_DONE)
            st = db_err(s, "list items");
        sqlite3_reset(q);
    }
    db_unlock(s);
    if (st != CHUTE_OK) {
        store_items_free(arr, k);
        return st;
    }
    *items = arr;
    *n = k;
    return CHUTE_OK;
}

static const char SQL_LIVE[] =
    "SELECT 1 FROM items WHERE inbox = ?1 AND id = ?2 AND state <= 1";

chute_status store_item_live(store *s, const char *inbox, const char *item, bool *live)
{
    db_lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = db_stmt(s, SQL_LIVE);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        db_bind_text(q, 1, inbox);
        db_bind_text(q, 2, item);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW || rc == SQLITE_DONE)
            *live = rc == SQLITE_ROW;
        else
            st = db_err(s, "item live");
        sqlite3_reset(q);
    }
    db_unlock(s);
    return st;
}
