/* store.c — SQLite implementation of store.h: the connection, schema,
 * shared helpers and housekeeping. Inboxes, senders and items are in
 * store_items.c, pairing sessions in store_pair.c.
 *
 * One connection behind one mutex: the relay's metadata transactions are
 * tiny, and fsync (synchronous=FULL in WAL mode, so a commit is durable when
 * it returns) dominates their cost either way. Statements are prepared once
 * and cached by their SQL text's address. */
#include "store.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_db.h"

static const char *const state_names[] = {
    "uploading", "pending", "delivered", "expired", "cancelled", "rejected"
};

const char *item_state_name(item_state st)
{
    return (unsigned)st < sizeof state_names / sizeof *state_names ? state_names[st]
                                                                   : "unknown";
}

/* --- plumbing ------------------------------------------------------------- */

chute_status db_err(store *s, const char *what)
{
    log_error("sqlite: %s: %s", what, sqlite3_errmsg(s->db));
    return CHUTE_ERR_DB;
}

/* The cached statement for `sql`, reset and unbound; NULL on error. */
sqlite3_stmt *db_stmt(store *s, const char *sql)
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

bool db_exec(store *s, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_error("sqlite: %s: %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return false;
    }
    return true;
}

void db_lock(store *s) { pthread_mutex_lock(&s->mu); }
void db_unlock(store *s) { pthread_mutex_unlock(&s->mu); }

/* BEGIN IMMEDIATE ... COMMIT around a body that returns a status. */
chute_status db_begin(store *s)
{
    return db_exec(s, "BEGIN IMMEDIATE") ? CHUTE_OK : CHUTE_ERR_DB;
}

chute_status db_finish(store *s, chute_status st)
{
    if (st == CHUTE_OK) {
        if (!db_exec(s, "COMMIT")) {
            /* An I/O error in COMMIT has rolled back already. */
            if (!sqlite3_get_autocommit(s->db))
                db_exec(s, "ROLLBACK");
            return CHUTE_ERR_DB;
        }
        return CHUTE_OK;
    }
    db_exec(s, "ROLLBACK");
    return st;
}

void db_bind_text(sqlite3_stmt *st, int i, const char *v)
{
    sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

void db_bind_blob(sqlite3_stmt *st, int i, const void *v, size_t n)
{
    /* A zero-length blob must not bind as NULL (meta may be empty). */
    if (n == 0)
        sqlite3_bind_zeroblob(st, i, 0);
    else
        sqlite3_bind_blob(st, i, v, (int)n, SQLITE_STATIC);
}

void db_copy_text(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

/* Constant-time equality of two stored/computed hashes. */
bool db_hash_eq(const void *stored, int stored_len, const uint8_t *h)
{
    return stored && stored_len == STORE_HASH_LEN &&
           sodium_memcmp(stored, h, STORE_HASH_LEN) == 0;
}

chute_status db_run1(store *s, const char *sql, const char *arg)
{
    sqlite3_stmt *q = db_stmt(s, sql);
    if (!q)
        return CHUTE_ERR_DB;
    db_bind_text(q, 1, arg);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? CHUTE_OK : db_err(s, sql);
}

chute_status id_list_add(id_list *l, const unsigned char *inbox,
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
    db_copy_text(l->ids[l->n], sizeof l->ids[0], id);
    db_copy_text(l->inboxes[l->n], sizeof l->inboxes[0], inbox);
    l->n++;
    return CHUTE_OK;
}

void id_list_run(id_list *l, bool run, store_body_fn each, void *cls)
{
    for (size_t i = 0; run && each && i < l->n; i++)
        each(cls, l->inboxes[i], l->ids[i]);
    free(l->ids);
    free(l->inboxes);
    memset(l, 0, sizeof *l);
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
    /* 2: items of deferred length (size and meta declared later). */
    "ALTER TABLE items ADD COLUMN deferred INTEGER NOT NULL DEFAULT 0;",
    /* 3: a send token is found by its hash, not compared with every sender
     * of the inbox (an unauthenticated request must cost one lookup). */
    "CREATE INDEX senders_token ON senders(inbox, token_hash);",
    /* 4: what /metrics reports of the items, kept as they change: a count
     * scanned every item, tombstones too (30 days of them), under the lock,
     * for any unauthenticated scrape. */
    "CREATE TABLE live_stats (id INTEGER PRIMARY KEY CHECK (id = 0),"
    "  items INTEGER NOT NULL, bytes INTEGER NOT NULL);"
    "INSERT INTO live_stats SELECT 0, count(*), coalesce(sum(off), 0) FROM items"
    "  WHERE state <= 1;"
    "CREATE TRIGGER live_stats_insert AFTER INSERT ON items WHEN new.state <= 1 BEGIN"
    "  UPDATE live_stats SET items = items + 1, bytes = bytes + new.off; END;"
    "CREATE TRIGGER live_stats_delete AFTER DELETE ON items WHEN old.state <= 1 BEGIN"
    "  UPDATE live_stats SET items = items - 1, bytes = bytes - old.off; END;"
    "CREATE TRIGGER live_stats_update AFTER UPDATE OF state, off ON items BEGIN"
    "  UPDATE live_stats SET items = items + (new.state <= 1) - (old.state <= 1),"
    "    bytes = bytes + iif(new.state <= 1, new.off, 0) - iif(old.state <= 1, old.off, 0);"
    "  END;",
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
        if (db_begin(s) != CHUTE_OK)
            return CHUTE_ERR_DB;
        bool ok = db_exec(s, migrations[version]) && db_exec(s, pragma);
        if (db_finish(s, ok ? CHUTE_OK : CHUTE_ERR_DB) != CHUTE_OK)
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
    if (!db_exec(s, "PRAGMA journal_mode=WAL") || !db_exec(s, "PRAGMA synchronous=FULL") ||
        !db_exec(s, "PRAGMA foreign_keys=OFF"))
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
    sqlite3_stmt *q = db_stmt(s, sql);
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
    db_lock(s);
    chute_status st = db_begin(s);
    if (st == CHUTE_OK) {
        sqlite3_stmt *q = db_stmt(s, SQL_SWEEP_DUE);
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
        st = db_finish(s, st);
    }
    db_unlock(s);
    id_list_run(&l, st == CHUTE_OK, each, cls);
    return st;
}

static const char SQL_UNFINISHED[] =
    "SELECT inbox, id FROM items WHERE state = 0 AND (off > 0 OR (off = size AND deferred = 0))";

chute_status store_unfinished(store *s, store_body_fn each, void *cls)
{
    id_list l = { 0 };
    db_lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = db_stmt(s, SQL_UNFINISHED);
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
    db_unlock(s);
    id_list_run(&l, st == CHUTE_OK, each, cls);
    return st;
}

/* live_stats is kept by triggers (schema 4); the sessions by their
 * expiry index. */
static const char SQL_STATS[] =
    "SELECT items, bytes,"
    "       (SELECT count(*) FROM pair_sessions WHERE state < 2 AND expires > ?1)"
    " FROM live_stats";

chute_status store_stats_get(store *s, int64_t now, store_stats *out)
{
    db_lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = db_stmt(s, SQL_STATS);
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
    db_unlock(s);
    return st;
}
