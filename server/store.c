/* store.c — SQLite implementation of store.h.
 *
 * One connection behind one mutex: the relay's metadata transactions are
 * tiny, and fsync (synchronous=FULL in WAL mode, so a commit is durable when
 * it returns) dominates their cost either way. Statements are prepared once
 * and cached by their SQL text's address. */
#include "store.h"

#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define MAX_STMTS 64

struct store {
    sqlite3 *db;
    pthread_mutex_t mu;
    struct { const char *sql; sqlite3_stmt *st; } cache[MAX_STMTS];
    int ncache;
};

static const char *const state_names[] = {
    "uploading", "pending", "delivered", "expired", "cancelled"
};

const char *item_state_name(item_state st)
{
    return (unsigned)st < 5 ? state_names[st] : "unknown";
}

/* --- plumbing ------------------------------------------------------------- */

static chute_status db_err(store *s, const char *what)
{
    log_error("sqlite: %s: %s", what, sqlite3_errmsg(s->db));
    return CHUTE_ERR_DB;
}

/* The cached statement for `sql`, reset and unbound; NULL on error. */
static sqlite3_stmt *stmt(store *s, const char *sql)
{
    for (int i = 0; i < s->ncache; i++)
        if (s->cache[i].sql == sql) {
            sqlite3_reset(s->cache[i].st);
            sqlite3_clear_bindings(s->cache[i].st);
            return s->cache[i].st;
        }
    if (s->ncache == MAX_STMTS) {
        log_error("sqlite: statement cache full");
        return NULL;
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        db_err(s, sql);
        return NULL;
    }
    s->cache[s->ncache].sql = sql;
    s->cache[s->ncache].st = st;
    s->ncache++;
    return st;
}

static bool exec(store *s, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_error("sqlite: %s: %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return false;
    }
    return true;
}

static void lock(store *s) { pthread_mutex_lock(&s->mu); }
static void unlock(store *s) { pthread_mutex_unlock(&s->mu); }

/* BEGIN IMMEDIATE ... COMMIT around a body that returns a status. */
static chute_status begin(store *s)
{
    return exec(s, "BEGIN IMMEDIATE") ? CHUTE_OK : CHUTE_ERR_DB;
}

static chute_status finish(store *s, chute_status st)
{
    if (st == CHUTE_OK) {
        if (!exec(s, "COMMIT")) {
            exec(s, "ROLLBACK");
            return CHUTE_ERR_DB;
        }
        return CHUTE_OK;
    }
    exec(s, "ROLLBACK");
    return st;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

static void bind_blob(sqlite3_stmt *st, int i, const void *v, size_t n)
{
    /* A zero-length blob must not bind as NULL (meta may be empty). */
    if (n == 0)
        sqlite3_bind_zeroblob(st, i, 0);
    else
        sqlite3_bind_blob(st, i, v, (int)n, SQLITE_STATIC);
}

static void copy_text(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

/* --- schema --------------------------------------------------------------- */

/* Each entry moves the schema from version i to i+1 (PRAGMA user_version). */
static const char *const migrations[] = {
    "CREATE TABLE inboxes ("
    "  id TEXT PRIMARY KEY, owner_hash BLOB NOT NULL, created INTEGER NOT NULL,"
    "  next_seq INTEGER NOT NULL DEFAULT 1);"
    "CREATE TABLE senders ("
    "  id TEXT PRIMARY KEY, inbox TEXT NOT NULL, token_hash BLOB NOT NULL,"
    "  created INTEGER NOT NULL);"
    "CREATE INDEX senders_inbox ON senders(inbox);"
    "CREATE TABLE items ("
    "  inbox TEXT NOT NULL, id TEXT NOT NULL, sender TEXT NOT NULL,"
    "  state INTEGER NOT NULL, size INTEGER NOT NULL, off INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL, meta BLOB, created INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL, PRIMARY KEY (inbox, id)) WITHOUT ROWID;"
    "CREATE INDEX items_seq ON items(inbox, seq);"
    "CREATE INDEX items_expires ON items(expires);"
    "CREATE TABLE pair_sessions ("
    "  id TEXT PRIMARY KEY, nameplate TEXT NOT NULL UNIQUE,"
    "  inviter_hash BLOB NOT NULL, joiner_hash BLOB, state INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL, next_seq INTEGER NOT NULL DEFAULT 1);"
    "CREATE INDEX pair_expires ON pair_sessions(expires);"
    "CREATE TABLE pair_messages ("
    "  session TEXT NOT NULL, seq INTEGER NOT NULL, side INTEGER NOT NULL,"
    "  body BLOB NOT NULL, PRIMARY KEY (session, seq)) WITHOUT ROWID;",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

static chute_status migrate(store *s)
{
    sqlite3_stmt *st;
    int version = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return db_err(s, "user_version");
    if (sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version > SCHEMA_VERSION) {
        log_error("database schema %d is newer than this chuted (%d)", version,
                  SCHEMA_VERSION);
        return CHUTE_ERR_UNSUPPORTED;
    }
    for (; version < SCHEMA_VERSION; version++) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", version + 1);
        if (begin(s) != CHUTE_OK)
            return CHUTE_ERR_DB;
        bool ok = exec(s, migrations[version]) && exec(s, pragma);
        if (finish(s, ok ? CHUTE_OK : CHUTE_ERR_DB) != CHUTE_OK)
            return CHUTE_ERR_DB;
        log_info("database schema at version %d", version + 1);
    }
    return CHUTE_OK;
}

chute_status store_open(const char *path, store **out)
{
    store *s = calloc(1, sizeof *s);
    if (!s)
        return CHUTE_ERR_NOMEM;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return CHUTE_ERR_NOMEM;
    }
    int rc = sqlite3_open_v2(path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                             SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        log_error("cannot open database %s: %s", path,
                  s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        store_close(s);
        return CHUTE_ERR_DB;
    }
    sqlite3_busy_timeout(s->db, 5000);
    /* WAL + synchronous=FULL: a COMMIT is on disk when it returns, so an
     * answer given after it survives kill -9 and power loss. */
    chute_status st = CHUTE_OK;
    if (!exec(s, "PRAGMA journal_mode=WAL") || !exec(s, "PRAGMA synchronous=FULL") ||
        !exec(s, "PRAGMA foreign_keys=OFF"))
        st = CHUTE_ERR_DB;
    if (st == CHUTE_OK)
        st = migrate(s);
    if (st != CHUTE_OK) {
        store_close(s);
        return st;
    }
    *out = s;
    return CHUTE_OK;
}

void store_close(store *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->ncache; i++)
        sqlite3_finalize(s->cache[i].st);
    if (s->db && sqlite3_close(s->db) != SQLITE_OK)
        log_error("sqlite: close: %s", sqlite3_errmsg(s->db));
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* --- inboxes and senders ---------------------------------------------- */

static const char SQL_INBOX_INSERT[] =
    "INSERT INTO inboxes(id, owner_hash, created) VALUES (?1, ?2, ?3)";

chute_status store_inbox_create(store *s, const char *inbox,
                                const uint8_t owner_hash[STORE_HASH_LEN], int64_t now)
{
    lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = stmt(s, SQL_INBOX_INSERT);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        bind_text(q, 1, inbox);
        bind_blob(q, 2, owner_hash, STORE_HASH_LEN);
        sqlite3_bind_int64(q, 3, now);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_CONSTRAINT)
            st = CHUTE_ERR_EXISTS;
        else if (rc != SQLITE_DONE)
            st = db_err(s, "insert inbox");
        sqlite3_reset(q);
    }
    unlock(s);
    return st;
}

static const char SQL_INBOX_OWNER[] = "SELECT owner_hash FROM inboxes WHERE id = ?1";
static const char SQL_INBOX_SENDERS[] =
    "SELECT id, token_hash FROM senders WHERE inbox = ?1";

/* Constant-time equality of two stored/computed hashes. */
static bool hash_eq(const void *stored, int stored_len, const uint8_t *h)
{
    return stored && stored_len == STORE_HASH_LEN &&
           sodium_memcmp(stored, h, STORE_HASH_LEN) == 0;
}

chute_status store_inbox_auth(store *s, const char *inbox,
                              const uint8_t hash[STORE_HASH_LEN], store_role *role,
                              char sender[RELAY_ID_CHARS + 1])
{
    *role = ROLE_NONE;
    sender[0] = '\0';
    lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = stmt(s, SQL_INBOX_OWNER);
    if (!q) {
        st = CHUTE_ERR_DB;
        goto out;
    }
    bind_text(q, 1, inbox);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE)
        goto out;                   /* no inbox: nobody holds anything */
    if (rc != SQLITE_ROW) {
        st = db_err(s, "inbox owner");
        goto out;
    }
    if (hash_eq(sqlite3_column_blob(q, 0), sqlite3_column_bytes(q, 0), hash))
        *role = ROLE_OWNER;
    sqlite3_reset(q);
    if (*role == ROLE_OWNER)
        goto out;
    q = stmt(s, SQL_INBOX_SENDERS);
    if (!q) {
        st = CHUTE_ERR_DB;
        goto out;
    }
    bind_text(q, 1, inbox);
    /* Compare with every sender, not stopping at a match. */
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        if (hash_eq(sqlite3_column_blob(q, 1), sqlite3_column_bytes(q, 1), hash)) {
            *role = ROLE_SENDER;
            copy_text(sender, RELAY_ID_CHARS + 1, sqlite3_column_text(q, 0));
        }
    if (rc != SQLITE_DONE)
        st = db_err(s, "inbox senders");
out:
    if (q)
        sqlite3_reset(q);
    unlock(s);
    return st;
}

static const char SQL_INBOX_INFO[] =
    "SELECT (SELECT count(*) FROM items WHERE inbox = ?1 AND state <= 1),"
    "       (SELECT coalesce(sum(size), 0) FROM items WHERE inbox = ?1 AND state <= 1),"
    "       (SELECT count(*) FROM senders WHERE inbox = ?1),"
    "       EXISTS (SELECT 1 FROM inboxes WHERE id = ?1)";

chute_status store_inbox_info_get(store *s, const char *inbox, store_inbox_info *out)
{
    lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = stmt(s, SQL_INBOX_INFO);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        bind_text(q, 1, inbox);
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
    unlock(s);
    return st;
}

/* A growing list of item ids whose bodies go once a transaction commits. */
typedef struct {
    char (*ids)[RELAY_ITEM_ID_MAX + 1];
    char (*inboxes)[RELAY_ID_CHARS + 1];
    size_t n, cap;
} id_list;

static chute_status id_list_add(id_list *l, const unsigned char *inbox,
                                const unsigned char *id)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        void *a = realloc(l->ids, cap * sizeof *l->ids);
        if (!a)
            return CHUTE_ERR_NOMEM;
        l->ids = a;
        void *b = realloc(l->inboxes, cap * sizeof *l->inboxes);
        if (!b)
            return CHUTE_ERR_NOMEM;
        l->inboxes = b;
        l->cap = cap;
    }
    copy_text(l->ids[l->n], sizeof l->ids[0], id);
    copy_text(l->inboxes[l->n], sizeof l->inboxes[0], inbox);
    l->n++;
    return CHUTE_OK;
}

static void id_list_run(id_list *l, bool run, store_body_fn each, void *cls)
{
    for (size_t i = 0; run && each && i < l->n; i++)
        each(cls, l->inboxes[i], l->ids[i]);
    free(l->ids);
    free(l->inboxes);
    memset(l, 0, sizeof *l);
}

static const char SQL_INBOX_ITEMS[] =
    "SELECT inbox, id FROM items WHERE inbox = ?1 AND state <= 1";
static const char SQL_INBOX_DEL_ITEMS[] = "DELETE FROM items WHERE inbox = ?1";
static const char SQL_INBOX_DEL_SENDERS[] = "DELETE FROM senders WHERE inbox = ?1";
static const char SQL_INBOX_DEL[] = "DELETE FROM inboxes WHERE id = ?1";

/* Run a one-text-parameter statement to completion. */
static chute_status run1(store *s, const char *sql, const char *arg)
{
    sqlite3_stmt *q = stmt(s, sql);
    if (!q)
        return CHUTE_ERR_DB;
    bind_text(q, 1, arg);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? CHUTE_OK : db_err(s, sql);
}

chute_status store_inbox_delete(store *s, const char *inbox, store_body_fn each,
                                void *cls)
{
    id_list l = { 0 };
    lock(s);
    chute_status st = begin(s);
    if (st == CHUTE_OK) {
        sqlite3_stmt *q = stmt(s, SQL_INBOX_ITEMS);
        if (!q) {
            st = CHUTE_ERR_DB;
        } else {
            bind_text(q, 1, inbox);
            int rc;
            while (st == CHUTE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW)
                st = id_list_add(&l, sqlite3_column_text(q, 0), sqlite3_column_text(q, 1));
            if (st == CHUTE_OK && rc != SQLITE_DONE)
                st = db_err(s, "inbox items");
            sqlite3_reset(q);
        }
        if (st == CHUTE_OK)
            st = run1(s, SQL_INBOX_DEL_ITEMS, inbox);
        if (st == CHUTE_OK)
            st = run1(s, SQL_INBOX_DEL_SENDERS, inbox);
        if (st == CHUTE_OK)
            st = run1(s, SQL_INBOX_DEL, inbox);
        if (st == CHUTE_OK && sqlite3_changes(s->db) == 0)
            st = CHUTE_ERR_NOT_FOUND;
        st = finish(s, st);
    }
    unlock(s);
    id_list_run(&l, st == CHUTE_OK, each, cls);
    return st;
}

static const char SQL_SENDER_INSERT[] =
    "INSERT INTO senders(id, inbox, token_hash, created) VALUES (?1, ?2, ?3, ?4)";

chute_status store_sender_create(store *s, const char *inbox, const char *sender,
                                 const uint8_t hash[STORE_HASH_LEN], int64_t now)
{
    lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = stmt(s, SQL_SENDER_INSERT);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        bind_text(q, 1, sender);
        bind_text(q, 2, inbox);
        bind_blob(q, 3, hash, STORE_HASH_LEN);
        sqlite3_bind_int64(q, 4, now);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_CONSTRAINT)
            st = CHUTE_ERR_EXISTS;
        else if (rc != SQLITE_DONE)
            st = db_err(s, "insert sender");
        sqlite3_reset(q);
    }
    unlock(s);
    return st;
}

static const char SQL_SENDER_DEL[] = "DELETE FROM senders WHERE id = ?1 AND inbox = ?2";

chute_status store_sender_delete(store *s, const char *inbox, const char *sender)
{
    lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = stmt(s, SQL_SENDER_DEL);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        bind_text(q, 1, sender);
        bind_text(q, 2, inbox);
        if (sqlite3_step(q) != SQLITE_DONE)
            st = db_err(s, "delete sender");
        else if (sqlite3_changes(s->db) == 0)
            st = CHUTE_ERR_NOT_FOUND;
        sqlite3_reset(q);
    }
    unlock(s);
    return st;
}

/* --- items ---------------------------------------------------------------- */

#define ITEM_COLS "id, sender, state, size, off, seq, created, expires, meta"

static chute_status read_item(sqlite3_stmt *q, store_item *it)
{
    memset(it, 0, sizeof *it);
    copy_text(it->id, sizeof it->id, sqlite3_column_text(q, 0));
    copy_text(it->sender, sizeof it->sender, sqlite3_column_text(q, 1));
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
    sqlite3_stmt *q = stmt(s, SQL_ITEM_GET);
    if (!q)
        return CHUTE_ERR_DB;
    bind_text(q, 1, inbox);
    bind_text(q, 2, item);
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
    lock(s);
    chute_status st = item_get_locked(s, inbox, item, out);
    unlock(s);
    return st;
}

static const char SQL_QUOTA[] =
    "SELECT count(*), coalesce(sum(size), 0) FROM items WHERE inbox = ?1 AND state <= 1";
static const char SQL_NEXT_SEQ[] =
    "UPDATE inboxes SET next_seq = next_seq + 1 WHERE id = ?1 RETURNING next_seq - 1";
static const char SQL_ITEM_INSERT[] =
    "INSERT INTO items(inbox, id, sender, state, size, off, seq, meta, created, expires)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?5 * (?4 = 1), ?6, ?7, ?8, ?9)";

/* Take the inbox's next sequence number (inside a transaction). */
static chute_status next_seq(store *s, const char *inbox, uint64_t *seq)
{
    sqlite3_stmt *q = stmt(s, SQL_NEXT_SEQ);
    if (!q)
        return CHUTE_ERR_DB;
    bind_text(q, 1, inbox);
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

chute_status store_item_create(store *s, const char *inbox, const char *item,
                               const char *sender, const store_item_new *n,
                               bool *created, store_item *out)
{
    *created = false;
    memset(out, 0, sizeof *out);
    lock(s);
    chute_status st = begin(s);
    if (st != CHUTE_OK)
        goto out;
    st = item_get_locked(s, inbox, item, out);
    if (st == CHUTE_OK) {
        /* A retried create is answered with what exists; anything else
         * under the same id is a conflict. */
        bool same = out->state <= ITEM_PENDING && out->size == n->size &&
                    strcmp(out->sender, sender) == 0 && out->meta &&
                    out->meta_len == n->meta_len &&
                    (n->meta_len == 0 || memcmp(out->meta, n->meta, n->meta_len) == 0);
        st = finish(s, same ? CHUTE_OK : CHUTE_ERR_EXISTS);
        goto out;
    }
    if (st != CHUTE_ERR_NOT_FOUND) {
        finish(s, st);
        goto out;
    }
    sqlite3_stmt *q = stmt(s, SQL_QUOTA);
    st = q ? CHUTE_OK : CHUTE_ERR_DB;
    if (st == CHUTE_OK) {
        bind_text(q, 1, inbox);
        if (sqlite3_step(q) != SQLITE_ROW) {
            st = db_err(s, "quota");
        } else {
            uint64_t items = (uint64_t)sqlite3_column_int64(q, 0);
            uint64_t bytes = (uint64_t)sqlite3_column_int64(q, 1);
            if (items + 1 > n->quota_items || n->size > n->quota_bytes ||
                bytes > n->quota_bytes - n->size)
                st = CHUTE_ERR_LIMIT;
        }
        sqlite3_reset(q);
    }
    uint64_t seq = 0;
    if (st == CHUTE_OK)
        st = next_seq(s, inbox, &seq);
    item_state state = n->size == 0 ? ITEM_PENDING : ITEM_UPLOADING;
    if (st == CHUTE_OK && !(q = stmt(s, SQL_ITEM_INSERT)))
        st = CHUTE_ERR_DB;
    if (st == CHUTE_OK) {
        bind_text(q, 1, inbox);
        bind_text(q, 2, item);
        bind_text(q, 3, sender);
        sqlite3_bind_int(q, 4, state);
        sqlite3_bind_int64(q, 5, (int64_t)n->size);
        sqlite3_bind_int64(q, 6, (int64_t)seq);
        bind_blob(q, 7, n->meta, n->meta_len);
        sqlite3_bind_int64(q, 8, n->now);
        sqlite3_bind_int64(q, 9, n->expires);
        if (sqlite3_step(q) != SQLITE_DONE)
            st = db_err(s, "insert item");
        sqlite3_reset(q);
    }
    if (st == CHUTE_OK)
        st = item_get_locked(s, inbox, item, out);
    st = finish(s, st);
    if (st == CHUTE_OK)
        *created = true;
out:
    if (st != CHUTE_OK && st != CHUTE_ERR_EXISTS)
        store_item_clear(out);
    unlock(s);
    return st;
}

static const char SQL_SET_OFFSET[] =
    "UPDATE items SET off = ?3 WHERE inbox = ?1 AND id = ?2 AND state = 0 AND ?3 <= size";

chute_status store_item_set_offset(store *s, const char *inbox, const char *item,
                                   uint64_t offset)
{
    lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = stmt(s, SQL_SET_OFFSET);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        bind_text(q, 1, inbox);
        bind_text(q, 2, item);
        sqlite3_bind_int64(q, 3, (int64_t)offset);
        if (sqlite3_step(q) != SQLITE_DONE)
            st = db_err(s, "set offset");
        else if (sqlite3_changes(s->db) == 0)
            st = CHUTE_ERR_NOT_FOUND;
        sqlite3_reset(q);
    }
    unlock(s);
    return st;
}

static const char SQL_COMMIT[] =
    "UPDATE items SET state = 1, seq = ?3 WHERE inbox = ?1 AND id = ?2 AND state = 0"
    " AND off = size";

chute_status store_item_commit(store *s, const char *inbox, const char *item,
                               uint64_t *seq)
{
    lock(s);
    chute_status st = begin(s);
    if (st == CHUTE_OK) {
        st = next_seq(s, inbox, seq);
        sqlite3_stmt *q = st == CHUTE_OK ? stmt(s, SQL_COMMIT) : NULL;
        if (st == CHUTE_OK && !q)
            st = CHUTE_ERR_DB;
        if (st == CHUTE_OK) {
            bind_text(q, 1, inbox);
            bind_text(q, 2, item);
            sqlite3_bind_int64(q, 3, (int64_t)*seq);
            if (sqlite3_step(q) != SQLITE_DONE)
                st = db_err(s, "commit item");
            else if (sqlite3_changes(s->db) == 0)
                st = CHUTE_ERR_NOT_FOUND;
            sqlite3_reset(q);
        }
        st = finish(s, st);
    }
    unlock(s);
    return st;
}

static const char SQL_RETIRE[] =
    "UPDATE items SET state = ?3, meta = NULL, expires = ?4"
    " WHERE inbox = ?1 AND id = ?2 AND state <= 1";

chute_status store_item_retire(store *s, const char *inbox, const char *item,
                               item_state to, int64_t tomb_expires, item_state *was)
{
    store_item it;
    lock(s);
    chute_status st = begin(s);
    if (st == CHUTE_OK) {
        st = item_get_locked(s, inbox, item, &it);
        if (st == CHUTE_OK) {
            *was = it.state;
            store_item_clear(&it);
        }
        sqlite3_stmt *q = NULL;
        if (st == CHUTE_OK && *was <= ITEM_PENDING) {
            if (!(q = stmt(s, SQL_RETIRE))) {
                st = CHUTE_ERR_DB;
            } else {
                bind_text(q, 1, inbox);
                bind_text(q, 2, item);
                sqlite3_bind_int(q, 3, to);
                sqlite3_bind_int64(q, 4, tomb_expires);
                if (sqlite3_step(q) != SQLITE_DONE)
                    st = db_err(s, "retire item");
                sqlite3_reset(q);
            }
        }
        st = finish(s, st);
    }
    unlock(s);
    return st;
}

static const char SQL_LIST[] =
    "SELECT " ITEM_COLS " FROM items WHERE inbox = ?1 AND seq > ?2"
    " AND state <= 1 AND state >= ?3 AND expires > ?4 ORDER BY seq LIMIT ?5";

chute_status store_item_list(store *s, const char *inbox, uint64_t after,
                             bool partial, int64_t now, size_t limit,
                             store_item **items, size_t *n)
{
    *items = NULL;
    *n = 0;
    store_item *arr = calloc(limit ? limit : 1, sizeof *arr);
    if (!arr)
        return CHUTE_ERR_NOMEM;
    size_t k = 0;
    lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = stmt(s, SQL_LIST);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        bind_text(q, 1, inbox);
        sqlite3_bind_int64(q, 2, after > INT64_MAX ? INT64_MAX : (int64_t)after);
        sqlite3_bind_int(q, 3, partial ? ITEM_UPLOADING : ITEM_PENDING);
        sqlite3_bind_int64(q, 4, now);
        sqlite3_bind_int64(q, 5, (int64_t)limit);
        int rc;
        while (st == CHUTE_OK && k < limit && (rc = sqlite3_step(q)) == SQLITE_ROW) {
            st = read_item(q, &arr[k]);
            k++;
        }
        if (st == CHUTE_OK && k < limit && rc != SQLITE_DONE)
            st = db_err(s, "list items");
        sqlite3_reset(q);
    }
    unlock(s);
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
    lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = stmt(s, SQL_LIVE);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        bind_text(q, 1, inbox);
        bind_text(q, 2, item);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW || rc == SQLITE_DONE)
            *live = rc == SQLITE_ROW;
        else
            st = db_err(s, "item live");
        sqlite3_reset(q);
    }
    unlock(s);
    return st;
}

/* --- pairing -------------------------------------------------------------- */

static const char SQL_PAIR_INSERT[] =
    "INSERT INTO pair_sessions(id, nameplate, inviter_hash, state, expires)"
    " VALUES (?1, ?2, ?3, 0, ?4)";

chute_status store_pair_create(store *s, const char *session,
                               const uint8_t inviter_hash[STORE_HASH_LEN],
                               int64_t now, int64_t expires,
                               char nameplate[RELAY_NAMEPLATE_MAX + 1])
{
    (void)now;
    lock(s);
    chute_status st = CHUTE_ERR_EXISTS;
    sqlite3_stmt *q = stmt(s, SQL_PAIR_INSERT);
    if (!q)
        st = CHUTE_ERR_DB;
    /* Short nameplates while they are free, longer ones as the space fills:
     * a few random tries at each width from 2 to 6 digits. */
    for (int width = 2; q && st == CHUTE_ERR_EXISTS && width <= RELAY_NAMEPLATE_MAX; width++) {
        uint32_t space = 1;
        for (int i = 0; i < width; i++)
            space *= 10;
        for (int tries = 0; tries < 4 && st == CHUTE_ERR_EXISTS; tries++) {
            snprintf(nameplate, RELAY_NAMEPLATE_MAX + 1, "%u",
                     1 + randombytes_uniform(space - 1));
            sqlite3_reset(q);
            bind_text(q, 1, session);
            bind_text(q, 2, nameplate);
            bind_blob(q, 3, inviter_hash, STORE_HASH_LEN);
            sqlite3_bind_int64(q, 4, expires);
            int rc = sqlite3_step(q);
            if (rc == SQLITE_DONE)
                st = CHUTE_OK;
            else if (rc != SQLITE_CONSTRAINT)
                st = db_err(s, "insert pair session");
        }
    }
    if (q)
        sqlite3_reset(q);
    unlock(s);
    if (st == CHUTE_ERR_EXISTS)
        st = CHUTE_ERR_LIMIT;       /* no free nameplate found */
    return st;
}

static const char SQL_PAIR_CLAIM[] =
    "UPDATE pair_sessions SET state = 1, joiner_hash = ?2"
    " WHERE nameplate = ?1 AND state = 0 AND expires > ?3 RETURNING id, expires";
static const char SQL_PAIR_BY_NAMEPLATE[] =
    "SELECT expires FROM pair_sessions WHERE nameplate = ?1";

chute_status store_pair_claim(store *s, const char *nameplate,
                              const uint8_t joiner_hash[STORE_HASH_LEN], int64_t now,
                              char session[RELAY_ID_CHARS + 1], int64_t *expires)
{
    lock(s);
    chute_status st = CHUTE_OK;
    /* One UPDATE guarded by state = 0: of concurrent claims exactly one
     * changes the row. */
    sqlite3_stmt *q = stmt(s, SQL_PAIR_CLAIM);
    if (!q) {
        st = CHUTE_ERR_DB;
        goto out;
    }
    bind_text(q, 1, nameplate);
    bind_blob(q, 2, joiner_hash, STORE_HASH_LEN);
    sqlite3_bind_int64(q, 3, now);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        copy_text(session, RELAY_ID_CHARS + 1, sqlite3_column_text(q, 0));
        *expires = sqlite3_column_int64(q, 1);
        while (rc == SQLITE_ROW)
            rc = sqlite3_step(q);
        sqlite3_reset(q);
        if (rc != SQLITE_DONE)
            st = db_err(s, "claim");
        goto out;
    }
    sqlite3_reset(q);
    if (rc != SQLITE_DONE) {
        st = db_err(s, "claim");
        goto out;
    }
    q = stmt(s, SQL_PAIR_BY_NAMEPLATE);
    if (!q) {
        st = CHUTE_ERR_DB;
        goto out;
    }
    bind_text(q, 1, nameplate);
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        st = sqlite3_column_int64(q, 0) <= now ? CHUTE_ERR_EXPIRED : CHUTE_ERR_EXISTS;
    else if (rc == SQLITE_DONE)
        st = CHUTE_ERR_NOT_FOUND;
    else
        st = db_err(s, "nameplate");
    sqlite3_reset(q);
out:
    unlock(s);
    return st;
}

static const char SQL_PAIR_GET[] =
    "SELECT inviter_hash, joiner_hash, state, expires FROM pair_sessions WHERE id = ?1";

chute_status store_pair_auth(store *s, const char *session,
                             const uint8_t hash[STORE_HASH_LEN], int *side,
                             pair_state *state, int64_t *expires)
{
    lock(s);
    chute_status st = CHUTE_ERR_NOT_FOUND;
    sqlite3_stmt *q = stmt(s, SQL_PAIR_GET);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        bind_text(q, 1, session);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            bool inv = hash_eq(sqlite3_column_blob(q, 0), sqlite3_column_bytes(q, 0), hash);
            bool joi = hash_eq(sqlite3_column_blob(q, 1), sqlite3_column_bytes(q, 1), hash);
            if (inv || joi) {
                *side = inv ? 0 : 1;
                *state = (pair_state)sqlite3_column_int(q, 2);
                *expires = sqlite3_column_int64(q, 3);
                st = CHUTE_OK;
            }
        } else if (rc != SQLITE_DONE) {
            st = db_err(s, "pair session");
        }
        sqlite3_reset(q);
    }
    unlock(s);
    return st;
}

static const char SQL_PAIR_STATE[] =
    "SELECT state, expires, next_seq FROM pair_sessions WHERE id = ?1";
static const char SQL_PAIR_COUNT[] =
    "SELECT count(*) FROM pair_messages WHERE session = ?1";
static const char SQL_PAIR_BUMP[] =
    "UPDATE pair_sessions SET next_seq = next_seq + 1 WHERE id = ?1";
static const char SQL_MSG_INSERT[] =
    "INSERT INTO pair_messages(session, seq, side, body) VALUES (?1, ?2, ?3, ?4)";

chute_status store_pair_send(store *s, const char *session, int side,
                             const uint8_t *body, size_t len, uint64_t max_messages,
                             int64_t now, uint64_t *seq)
{
    lock(s);
    chute_status st = begin(s);
    if (st != CHUTE_OK)
        goto out;
    sqlite3_stmt *q = stmt(s, SQL_PAIR_STATE);
    if (!q) {
        st = finish(s, CHUTE_ERR_DB);
        goto out;
    }
    bind_text(q, 1, session);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_int(q, 0) != PAIR_CLAIMED || sqlite3_column_int64(q, 1) <= now)
            st = CHUTE_ERR_EXPIRED;
        *seq = (uint64_t)sqlite3_column_int64(q, 2);
    } else {
        st = rc == SQLITE_DONE ? CHUTE_ERR_NOT_FOUND : db_err(s, "pair state");
    }
    sqlite3_reset(q);
    if (st == CHUTE_OK) {
        q = stmt(s, SQL_PAIR_COUNT);
        if (!q) {
            st = CHUTE_ERR_DB;
        } else {
            bind_text(q, 1, session);
            if (sqlite3_step(q) != SQLITE_ROW)
                st = db_err(s, "count messages");
            else if ((uint64_t)sqlite3_column_int64(q, 0) >= max_messages)
                st = CHUTE_ERR_LIMIT;
            sqlite3_reset(q);
        }
    }
    if (st == CHUTE_OK)
        st = run1(s, SQL_PAIR_BUMP, session);
    if (st == CHUTE_OK) {
        q = stmt(s, SQL_MSG_INSERT);
        if (!q) {
            st = CHUTE_ERR_DB;
        } else {
            bind_text(q, 1, session);
            sqlite3_bind_int64(q, 2, (int64_t)*seq);
            sqlite3_bind_int(q, 3, side);
            bind_blob(q, 4, body, len);
            if (sqlite3_step(q) != SQLITE_DONE)
                st = db_err(s, "insert message");
            sqlite3_reset(q);
        }
    }
    st = finish(s, st);
out:
    unlock(s);
    return st;
}

static const char SQL_MSG_LIST[] =
    "SELECT seq, body FROM pair_messages WHERE session = ?1 AND side = ?2 AND seq > ?3"
    " ORDER BY seq";

chute_status store_pair_receive(store *s, const char *session, int side,
                                uint64_t after, store_message **msgs, size_t *n,
                                pair_state *state, int64_t *expires)
{
    *msgs = NULL;
    *n = 0;
    store_message *arr = NULL;
    size_t k = 0, cap = 0;
    lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = stmt(s, SQL_PAIR_STATE);
    if (!q) {
        st = CHUTE_ERR_DB;
        goto out;
    }
    bind_text(q, 1, session);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *state = (pair_state)sqlite3_column_int(q, 0);
        *expires = sqlite3_column_int64(q, 1);
    } else {
        st = rc == SQLITE_DONE ? CHUTE_ERR_NOT_FOUND : db_err(s, "pair state");
    }
    sqlite3_reset(q);
    if (st != CHUTE_OK)
        goto out;
    q = stmt(s, SQL_MSG_LIST);
    if (!q) {
        st = CHUTE_ERR_DB;
        goto out;
    }
    bind_text(q, 1, session);
    sqlite3_bind_int(q, 2, 1 - side);
    sqlite3_bind_int64(q, 3, after > INT64_MAX ? INT64_MAX : (int64_t)after);
    while (st == CHUTE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (k == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            store_message *a = realloc(arr, ncap * sizeof *a);
            if (!a) {
                st = CHUTE_ERR_NOMEM;
                break;
            }
            arr = a;
            cap = ncap;
        }
        int len = sqlite3_column_bytes(q, 1);
        arr[k].seq = (uint64_t)sqlite3_column_int64(q, 0);
        arr[k].len = (size_t)len;
        arr[k].body = malloc(len > 0 ? (size_t)len : 1);
        if (!arr[k].body) {
            st = CHUTE_ERR_NOMEM;
            break;
        }
        if (len > 0)
            memcpy(arr[k].body, sqlite3_column_blob(q, 1), (size_t)len);
        k++;
    }
    if (st == CHUTE_OK && rc != SQLITE_DONE)
        st = db_err(s, "list messages");
    sqlite3_reset(q);
out:
    unlock(s);
    if (st != CHUTE_OK) {
        store_messages_free(arr, k);
        return st;
    }
    *msgs = arr;
    *n = k;
    return CHUTE_OK;
}

void store_messages_free(store_message *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(m[i].body);
    free(m);
}

static const char SQL_PAIR_CLOSE[] = "UPDATE pair_sessions SET state = 2 WHERE id = ?1";
static const char SQL_MSG_DEL[] = "DELETE FROM pair_messages WHERE session = ?1";

chute_status store_pair_close(store *s, const char *session)
{
    lock(s);
    chute_status st = begin(s);
    if (st == CHUTE_OK) {
        st = run1(s, SQL_PAIR_CLOSE, session);
        if (st == CHUTE_OK && sqlite3_changes(s->db) == 0)
            st = CHUTE_ERR_NOT_FOUND;
        if (st == CHUTE_OK)
            st = run1(s, SQL_MSG_DEL, session);
        st = finish(s, st);
    }
    unlock(s);
    return st;
}

/* --- housekeeping --------------------------------------------------------- */

static const char SQL_SWEEP_DUE[] =
    "SELECT inbox, id FROM items WHERE expires <= ?1 AND state <= 1";
static const char SQL_SWEEP_EXPIRE[] =
    "UPDATE items SET state = 3, meta = NULL, expires = ?1 + ?2"
    " WHERE expires <= ?1 AND state <= 1";
static const char SQL_SWEEP_TOMBS[] =
    "DELETE FROM items WHERE expires <= ?1 AND state >= 2";
static const char SQL_SWEEP_MSGS[] =
    "DELETE FROM pair_messages WHERE session IN"
    " (SELECT id FROM pair_sessions WHERE expires <= ?1)";
static const char SQL_SWEEP_SESSIONS[] =
    "DELETE FROM pair_sessions WHERE expires <= ?1 - ?2";

static chute_status run_now(store *s, const char *sql, int64_t a, int64_t b)
{
    sqlite3_stmt *q = stmt(s, sql);
    if (!q)
        return CHUTE_ERR_DB;
    sqlite3_bind_int64(q, 1, a);
    sqlite3_bind_int64(q, 2, b);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? CHUTE_OK : db_err(s, sql);
}

chute_status store_sweep(store *s, int64_t now, uint64_t tombstone_ttl,
                         uint64_t pair_grace, store_body_fn each, void *cls)
{
    id_list l = { 0 };
    lock(s);
    chute_status st = begin(s);
    if (st == CHUTE_OK) {
        sqlite3_stmt *q = stmt(s, SQL_SWEEP_DUE);
        if (!q) {
            st = CHUTE_ERR_DB;
        } else {
            sqlite3_bind_int64(q, 1, now);
            int rc;
            while (st == CHUTE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW)
                st = id_list_add(&l, sqlite3_column_text(q, 0), sqlite3_column_text(q, 1));
            if (st == CHUTE_OK && rc != SQLITE_DONE)
                st = db_err(s, "sweep items");
            sqlite3_reset(q);
        }
        /* Tombstones first, so the ones made just now are not forgotten. */
        if (st == CHUTE_OK)
            st = run_now(s, SQL_SWEEP_TOMBS, now, 0);
        if (st == CHUTE_OK)
            st = run_now(s, SQL_SWEEP_EXPIRE, now, (int64_t)tombstone_ttl);
        if (st == CHUTE_OK)
            st = run_now(s, SQL_SWEEP_MSGS, now, 0);
        if (st == CHUTE_OK)
            st = run_now(s, SQL_SWEEP_SESSIONS, now, (int64_t)pair_grace);
        st = finish(s, st);
    }
    unlock(s);
    id_list_run(&l, st == CHUTE_OK, each, cls);
    return st;
}

static const char SQL_UNFINISHED[] =
    "SELECT inbox, id FROM items WHERE state = 0 AND off = size";

chute_status store_unfinished(store *s, store_body_fn each, void *cls)
{
    id_list l = { 0 };
    lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = stmt(s, SQL_UNFINISHED);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        int rc;
        while (st == CHUTE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW)
            st = id_list_add(&l, sqlite3_column_text(q, 0), sqlite3_column_text(q, 1));
        if (st == CHUTE_OK && rc != SQLITE_DONE)
            st = db_err(s, "unfinished items");
        sqlite3_reset(q);
    }
    unlock(s);
    id_list_run(&l, st == CHUTE_OK, each, cls);
    return st;
}

static const char SQL_STATS[] =
    "SELECT (SELECT count(*) FROM items WHERE state <= 1),"
    "       (SELECT coalesce(sum(off), 0) FROM items WHERE state <= 1),"
    "       (SELECT count(*) FROM pair_sessions WHERE state < 2 AND expires > ?1)";

chute_status store_stats_get(store *s, int64_t now, store_stats *out)
{
    lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = stmt(s, SQL_STATS);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        sqlite3_bind_int64(q, 1, now);
        if (sqlite3_step(q) != SQLITE_ROW) {
            st = db_err(s, "stats");
        } else {
            out->items = (uint64_t)sqlite3_column_int64(q, 0);
            out->bytes = (uint64_t)sqlite3_column_int64(q, 1);
            out->pairings = (uint64_t)sqlite3_column_int64(q, 2);
        }
        sqlite3_reset(q);
    }
    unlock(s);
    return st;
}
