/* cache.c — the inbox cache on SQLite; see cache.h for the model.
 *
 * Tables: nodes (the visible tree per peer: folders and files), data (one
 * row per received or receiving blob; complete=0 while downloading), chunks
 * (64 KiB plaintext pieces of a data row), received (every item ever
 * committed, so a redelivered item is recognised after its file is gone),
 * quarantine (items refused by verification), list_cursor (where the
 * downloader's listing of the relay inbox resumes). */
#include "cache.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "names.h"
#include "pagecache.h"
#include "prealloc.h"

struct cache {
    sqlite3 *db;
    char *path;
    /* The mount's threads share db; multi-statement changes hold mu so no
     * other thread's statement lands inside their transaction. */
    pthread_mutex_t mu;
    int advice_fd;        /* see advice_fd_acquire; -1: none */
    /* The reaper frees the chunks of removed files in the background. */
    pthread_mutex_t reap_mu;
    pthread_cond_t reap_cv;
    pthread_t reaper;
    bool reaper_running, reap_wanted, reap_stopping;
};

struct cache_txn {
    sqlite3 *db;          /* its own connection: a long download never holds
                             a transaction on the mount's connection */
    int64_t data;
    uint64_t total;       /* bytes appended so far */
    int64_t next_idx;
    sqlite3_stmt *insert; /* the chunk INSERT, prepared once */
    uint8_t *buf;         /* the chunk being filled */
    size_t fill;
    unsigned batch;       /* chunks written in the open transaction */
    int advice_fd;        /* the cache's, for dropping what is stored */
    pagecache_stream stored;
    off_t grown_to;       /* the file's size at the last batch, for prealloc */
    char peer[256];
};

/* An fd of the cache file for page-cache advice only (lib/pagecache.h).
 * Closing any fd of a file drops every POSIX lock the process holds on it,
 * SQLite's too, so one such fd per file is shared by every cache open on
 * it and closed with the last of them, when none of their connections is
 * left. A full table only means no advice. */
#define ADVICE_FILES 16
static struct {
    dev_t dev;
    ino_t ino;
    int fd;
    unsigned users;
} advice_files[ADVICE_FILES];
static pthread_mutex_t advice_mu = PTHREAD_MUTEX_INITIALIZER;

static int advice_fd_acquire(const char *path)
{
    struct stat sb;
    int fd = -1;
    pthread_mutex_lock(&advice_mu);
    if (stat(path, &sb) == 0) {
        int free_slot = -1;
        for (int i = 0; i < ADVICE_FILES && fd < 0; i++) {
            if (!advice_files[i].users) {
                if (free_slot < 0) free_slot = i;
            } else if (advice_files[i].dev == sb.st_dev && advice_files[i].ino == sb.st_ino) {
                advice_files[i].users++;
                fd = advice_files[i].fd;
            }
        }
        /* For writing (only fallocate writes through it: prealloc.h), or
         * for reading where the file is read-only to us. */
        if (fd < 0 && free_slot >= 0 &&
            ((fd = open(path, O_RDWR | O_CLOEXEC)) >= 0 ||
             (fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0)) {
            if (fstat(fd, &sb) == 0) {
                advice_files[free_slot].dev = sb.st_dev;
                advice_files[free_slot].ino = sb.st_ino;
            }
            advice_files[free_slot].fd = fd;
            advice_files[free_slot].users = 1;
        }
    }
    pthread_mutex_unlock(&advice_mu);
    return fd;
}

static void advice_fd_release(int fd)
{
    if (fd < 0) return;
    pthread_mutex_lock(&advice_mu);
    for (int i = 0; i < ADVICE_FILES; i++) {
        if (advice_files[i].users && advice_files[i].fd == fd) {
            if (--advice_files[i].users == 0) close(fd);
            break;
        }
    }
    pthread_mutex_unlock(&advice_mu);
}

/* A committed batch is on disk (synchronous=NORMAL syncs the database at
 * a commit): what it appended leaves the page cache, so receiving a big
 * file does not fill memory with it. */
static void release_stored(cache_txn *t)
{
    struct stat sb;
    if (t->advice_fd >= 0 && fstat(t->advice_fd, &sb) == 0) {
        pagecache_synced(&t->stored, t->advice_fd, sb.st_size);
        /* the next batches' pages go into blocks reserved for them */
        prealloc_grew(t->advice_fd, t->grown_to, sb.st_size);
        t->grown_to = sb.st_size;
    }
}

/* 16 KiB pages (taking effect when the file is made): a 64 KiB chunk is
 * then 5 pages rather than 17, which measured ~30% less CPU per byte
 * stored than 4 KiB pages. */
static const char SCHEMA[] =
    "PRAGMA page_size=16384;"
    "CREATE TABLE IF NOT EXISTS nodes (id INTEGER PRIMARY KEY,"
    " peer TEXT NOT NULL, parent INTEGER NOT NULL, name TEXT NOT NULL,"
    " is_dir INTEGER NOT NULL, size INTEGER NOT NULL DEFAULT 0,"
    " mode INTEGER NOT NULL, mtime_sec INTEGER NOT NULL,"
    " mtime_nsec INTEGER NOT NULL, data INTEGER,"
    " UNIQUE(peer, parent, name));"
    "CREATE TABLE IF NOT EXISTS data (id INTEGER PRIMARY KEY,"
    " peer TEXT NOT NULL, item TEXT NOT NULL, size INTEGER NOT NULL DEFAULT 0,"
    " complete INTEGER NOT NULL DEFAULT 0, UNIQUE(peer, item));"
    "CREATE TABLE IF NOT EXISTS chunks (data INTEGER NOT NULL,"
    " idx INTEGER NOT NULL, bytes BLOB NOT NULL, PRIMARY KEY(data, idx));"
    "CREATE TABLE IF NOT EXISTS received (peer TEXT NOT NULL,"
    " item TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY(peer, item));"
    "CREATE TABLE IF NOT EXISTS quarantine (peer TEXT NOT NULL,"
    " item TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL,"
    " PRIMARY KEY(peer, item));"
    "CREATE TABLE IF NOT EXISTS list_cursor (inbox TEXT PRIMARY KEY,"
    " seq INTEGER NOT NULL);"
    /* data rows of removed files whose chunks the reaper has yet to free */
    "CREATE TABLE IF NOT EXISTS doomed (data INTEGER PRIMARY KEY);";

/* 8 MiB of chunks per transaction while receiving: each commit costs
 * fsyncs, and the writer's page cache holds the whole batch so that it
 * never spills (a spill would lock readers out until the commit). */
#define BATCH_CHUNKS 128
#define TXN_CACHE_KIB "-12288"

static void reaper_wake(cache *c);
static bool has_doomed(sqlite3 *db);

chute_status cache_open(const char *db_path, cache **out)
{
    if (!db_path || !out) return CHUTE_ERR_ARG;
    cache *c = calloc(1, sizeof *c);
    if (!c) return CHUTE_ERR_NOMEM;
    c->path = strdup(db_path);
    if (!c->path) { free(c); return CHUTE_ERR_NOMEM; }
    chute_status st = db_open_journal(db_path, SCHEMA, DB_JOURNAL_ROLLBACK, &c->db);
    if (st) { free(c->path); free(c); return st; }
    c->advice_fd = advice_fd_acquire(db_path);
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->reap_mu, NULL);
    pthread_cond_init(&c->reap_cv, NULL);
    if (has_doomed(c->db)) reaper_wake(c);   /* left by a crash or a close */
    *out = c;
    return CHUTE_OK;
}

void cache_close(cache *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->reap_mu);
    c->reap_stopping = true;   /* what is still doomed waits for the next open */
    pthread_cond_signal(&c->reap_cv);
    pthread_mutex_unlock(&c->reap_mu);
    if (c->reaper_running) pthread_join(c->reaper, NULL);
    sqlite3_close(c->db);
    advice_fd_release(c->advice_fd);   /* after the connections: see there */
    pthread_cond_destroy(&c->reap_cv);
    pthread_mutex_destroy(&c->reap_mu);
    pthread_mutex_destroy(&c->mu);
    free(c->path);
    free(c);
}

/* prepare + bind: 'i' int64, 't' text, 'b' (ptr,len) blob. */
static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    return sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK ? s : NULL;
}

/* Step a statement expected to finish without rows, then finalize it. */
static chute_status run(sqlite3_stmt *s)
{
    if (!s) return CHUTE_ERR_DB;
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc == SQLITE_CONSTRAINT) return CHUTE_ERR_EXISTS;
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? CHUTE_OK : CHUTE_ERR_DB;
}

static bool has_doomed(sqlite3 *db)
{
    sqlite3_stmt *s = prep(db, "SELECT 1 FROM doomed LIMIT 1");
    bool yes = s && sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return yes;
}

chute_status cache_adopt_legacy(cache *c, const char *legacy_path)
{
    if (!c || !legacy_path) return CHUTE_ERR_ARG;
    static const char *const tables[] = {"nodes", "data", "chunks", "received",
                                         "quarantine", "list_cursor"};
    pthread_mutex_lock(&c->mu);
    sqlite3_stmt *s = prep(c->db, "ATTACH DATABASE ? AS legacy");
    if (s) sqlite3_bind_text(s, 1, legacy_path, -1, SQLITE_STATIC);
    chute_status st = run(s);
    if (st) { pthread_mutex_unlock(&c->mu); return st; }
    s = prep(c->db, "SELECT count(*) FROM legacy.sqlite_master WHERE type='table' AND name='chunks'");
    bool found = s && sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) > 0;
    if (!s) st = CHUTE_ERR_DB;
    sqlite3_finalize(s);
    if (!st && found) st = db_exec(c->db, "BEGIN IMMEDIATE");
    /* Rows first, then the drops: a crash between the two files' commits
     * leaves copies that the next run's OR IGNORE skips. */
    for (size_t i = 0; !st && found && i < sizeof tables / sizeof *tables; i++) {
        char sql[160];
        snprintf(sql, sizeof sql, "INSERT OR IGNORE INTO main.%s SELECT * FROM legacy.%s;"
                                  "DROP TABLE legacy.%s;", tables[i], tables[i], tables[i]);
        st = db_exec(c->db, sql);
    }
    if (found) {
        if (!st) st = db_exec(c->db, "COMMIT");
        else db_exec(c->db, "ROLLBACK");
    }
    chute_status dt = db_exec(c->db, "DETACH DATABASE legacy");
    pthread_mutex_unlock(&c->mu);
    return st ? st : dt;
}

static int64_t now_s(void) { return (int64_t)time(NULL); }

chute_status cache_seen(cache *c, const char *peer, const char *item, bool *seen)
{
    if (!c || !peer || !item || !seen) return CHUTE_ERR_ARG;
    sqlite3_stmt *s = prep(c->db, "SELECT 1 FROM received WHERE peer=? AND item=?");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, item, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return CHUTE_ERR_DB;
    *seen = rc == SQLITE_ROW;
    return CHUTE_OK;
}

/* Delete a data row and its chunks (inside the caller's transaction). */
static chute_status drop_data(sqlite3 *db, int64_t data)
{
    sqlite3_stmt *s = prep(db, "DELETE FROM chunks WHERE data=?");
    if (s) sqlite3_bind_int64(s, 1, data);
    chute_status st = run(s);
    if (st) return st;
    s = prep(db, "DELETE FROM data WHERE id=?");
    if (s) sqlite3_bind_int64(s, 1, data);
    return run(s);
}

/* ---- the reaper ---------------------------------------------------------
 * Removing a file only dooms its data row; a thread frees the chunks in
 * small transactions on a connection of its own. Freed in the unlink
 * itself, 256 MiB took ~1 s here (SQLite reads every overflow page to
 * free it, and Debian's build zeroes each one: secure_delete), with the
 * mount's connection locked all along and arrivals waiting on it.
 * A partial download's chunks are still freed in place: doomed, its
 * row would count as incoming and be resumed from. */
#define REAP_CHUNKS "64"

/* Free some chunks of one doomed data row, or the row itself once it has
 * none left; *done when nothing is doomed. */
static chute_status reap_some(sqlite3 *db, bool *done)
{
    *done = false;
    if (db_exec(db, "BEGIN IMMEDIATE")) return CHUTE_ERR_DB;
    sqlite3_stmt *s = prep(db, "SELECT data FROM doomed LIMIT 1");
    int rc = s ? sqlite3_step(s) : SQLITE_ERROR;
    int64_t data = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    chute_status st = rc == SQLITE_ROW || rc == SQLITE_DONE ? CHUTE_OK : CHUTE_ERR_DB;
    if (!st && rc == SQLITE_DONE) *done = true;
    if (!st && data) {
        s = prep(db, "DELETE FROM chunks WHERE data=?1 AND idx IN (SELECT idx FROM chunks"
                     " WHERE data=?1 ORDER BY idx LIMIT " REAP_CHUNKS ")");
        if (s) sqlite3_bind_int64(s, 1, data);
        st = run(s);
        if (!st && sqlite3_changes(db) == 0) {
            st = drop_data(db, data);
            s = st ? NULL : prep(db, "DELETE FROM doomed WHERE data=?");
            if (s) sqlite3_bind_int64(s, 1, data);
            if (!st) st = run(s);
        }
    }
    if (!st) st = db_exec(db, "COMMIT");
    if (st) db_exec(db, "ROLLBACK");
    return st;
}

static void *reap_loop(void *arg)
{
    cache *c = arg;
    sqlite3 *db = NULL;
    /* Each batch need not be durable: a crash leaves the rest doomed. */
    if (db_open_journal(c->path, NULL, DB_JOURNAL_ROLLBACK, &db) == CHUTE_OK)
        (void)db_exec(db, "PRAGMA synchronous=NORMAL");
    pthread_mutex_lock(&c->reap_mu);
    while (!c->reap_stopping) {
        if (!c->reap_wanted) { pthread_cond_wait(&c->reap_cv, &c->reap_mu); continue; }
        c->reap_wanted = false;
        bool done = false, failed = !db;
        while (!done && !failed && !c->reap_stopping) {
            pthread_mutex_unlock(&c->reap_mu);
            failed = reap_some(db, &done) != CHUTE_OK;
            pthread_mutex_lock(&c->reap_mu);
        }
        if (failed && !c->reap_stopping) {
            /* busy or a transient error: try again in a while */
            struct timespec at;
            clock_gettime(CLOCK_REALTIME, &at);
            at.tv_sec += 2;
            pthread_cond_timedwait(&c->reap_cv, &c->reap_mu, &at);
            c->reap_wanted = true;
        }
    }
    pthread_mutex_unlock(&c->reap_mu);
    sqlite3_close(db);
    return NULL;
}

/* Something is doomed: have the reaper free it (started on first need). */
static void reaper_wake(cache *c)
{
    pthread_mutex_lock(&c->reap_mu);
    if (!c->reaper_running && !c->reap_stopping)
        c->reaper_running = pthread_create(&c->reaper, NULL, reap_loop, c) == 0;
    c->reap_wanted = true;   /* without a thread: left doomed for the next open */
    pthread_cond_signal(&c->reap_cv);
    pthread_mutex_unlock(&c->reap_mu);
}

/* Doom a data row (inside the caller's transaction). */
static chute_status doom_data(sqlite3 *db, int64_t data)
{
    sqlite3_stmt *s = prep(db, "INSERT OR IGNORE INTO doomed(data) VALUES(?)");
    if (s) sqlite3_bind_int64(s, 1, data);
    return run(s);
}

/* How many chunks of partial `data` can be kept, at most max: rows 0..n-1
 * all there (committed batches are whole, but be sure). */
static chute_status kept_chunks(sqlite3 *db, int64_t data, uint64_t max, uint64_t *n)
{
    sqlite3_stmt *s = prep(db, "SELECT count(*), coalesce(max(idx) + 1, 0) FROM chunks "
                               "WHERE data=?");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_int64(s, 1, data);
    chute_status st = CHUTE_ERR_DB;
    if (sqlite3_step(s) == SQLITE_ROW) {
        int64_t count = sqlite3_column_int64(s, 0), end = sqlite3_column_int64(s, 1);
        uint64_t have = count == end ? (uint64_t)count : 0;   /* a gap: start over */
        *n = have < max ? have : max;
        st = CHUTE_OK;
    }
    sqlite3_finalize(s);
    if (st) return st;
    s = prep(db, "DELETE FROM chunks WHERE data=? AND idx>=?");
    if (s) { sqlite3_bind_int64(s, 1, data); sqlite3_bind_int64(s, 2, (sqlite3_int64)*n); }
    return run(s);
}

chute_status cache_item_begin(cache *c, const char *peer, const char *item,
                              cache_txn **out)
{
    uint64_t kept;
    return cache_item_resume(c, peer, item, 0, out, &kept);
}

chute_status cache_item_resume(cache *c, const char *peer, const char *item,
                               uint64_t max_chunks, cache_txn **out, uint64_t *kept)
{
    if (!c || !peer || !item || !out || !kept || strlen(peer) >= 256) return CHUTE_ERR_ARG;
    *kept = 0;
    cache_txn *t = calloc(1, sizeof *t);
    if (!t) return CHUTE_ERR_NOMEM;
    t->buf = malloc(CACHE_CHUNK);
    if (!t->buf) { free(t); return CHUTE_ERR_NOMEM; }
    snprintf(t->peer, sizeof t->peer, "%s", peer);
    t->advice_fd = c->advice_fd;
    struct stat sb;
    if (t->advice_fd >= 0 && fstat(t->advice_fd, &sb) == 0)
        t->stored.released = t->grown_to = sb.st_size;
    chute_status st = db_open_journal(c->path, NULL, DB_JOURNAL_ROLLBACK, &t->db);
    if (st) { free(t->buf); free(t); return st; }
    st = db_exec(t->db, "PRAGMA cache_size=" TXN_CACHE_KIB);
    if (!st) t->insert = prep(t->db, "INSERT INTO chunks(data, idx, bytes) VALUES(?,?,?)");
    if (!st && !t->insert) st = CHUTE_ERR_DB;
    if (!st) st = db_exec(t->db, "BEGIN IMMEDIATE");
    if (st) goto fail;
    /* A partial left by a crash or an earlier try: its first chunks go
     * on (up to max_chunks), the rest starts over. */
    sqlite3_stmt *s = prep(t->db, "SELECT id, complete FROM data WHERE peer=? AND item=?");
    if (!s) { st = CHUTE_ERR_DB; goto rollback; }
    sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, item, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) {
        int64_t old = sqlite3_column_int64(s, 0);
        int complete = sqlite3_column_int(s, 1);
        sqlite3_finalize(s);
        if (complete) { st = CHUTE_ERR_EXISTS; goto rollback; }
        if ((st = kept_chunks(t->db, old, max_chunks, kept))) goto rollback;
        t->data = old;
        t->next_idx = (int64_t)*kept;
        t->total = *kept * CACHE_CHUNK;
        if ((st = db_exec(t->db, "COMMIT; PRAGMA synchronous=NORMAL"))) goto rollback;
        *out = t;
        return CHUTE_OK;
    }
    sqlite3_finalize(s);
    s = prep(t->db, "INSERT INTO data(peer, item) VALUES(?, ?)");
    if (s) {
        sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, item, -1, SQLITE_STATIC);
    }
    if ((st = run(s))) goto rollback;
    t->data = sqlite3_last_insert_rowid(t->db);
    /* Partial chunks need not be durable one by one; the final commit is. */
    if ((st = db_exec(t->db, "COMMIT; PRAGMA synchronous=NORMAL"))) goto rollback;
    *out = t;
    return CHUTE_OK;
rollback:
    db_exec(t->db, "ROLLBACK");
fail:
    sqlite3_finalize(t->insert);
    sqlite3_close(t->db);
    free(t->buf);
    free(t);
    return st;
}

static chute_status write_chunk(cache_txn *t, const uint8_t *bytes, size_t n)
{
    if (t->batch == 0 && db_exec(t->db, "BEGIN IMMEDIATE")) return CHUTE_ERR_DB;
    sqlite3_stmt *s = t->insert;
    sqlite3_bind_int64(s, 1, t->data);
    sqlite3_bind_int64(s, 2, t->next_idx);
    sqlite3_bind_blob(s, 3, bytes, (int)n, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc == SQLITE_FULL) return CHUTE_ERR_LIMIT;
    if (rc != SQLITE_DONE) return CHUTE_ERR_DB;
    t->next_idx++;
    if (++t->batch == BATCH_CHUNKS) {
        t->batch = 0;
        chute_status st = db_exec(t->db, "COMMIT");
        if (!st) release_stored(t);
        else if (sqlite3_errcode(t->db) == SQLITE_FULL) st = CHUTE_ERR_LIMIT;
        return st;
    }
    return CHUTE_OK;
}

chute_status cache_item_append(cache_txn *t, const void *buf, size_t len)
{
    if (!t || (!buf && len)) return CHUTE_ERR_ARG;
    const uint8_t *p = buf;
    while (len) {
        chute_status st;
        if (t->fill == 0 && len >= CACHE_CHUNK) {
            /* A whole chunk (the downloader's every append): no copy. */
            if ((st = write_chunk(t, p, CACHE_CHUNK))) return st;
            p += CACHE_CHUNK; len -= CACHE_CHUNK; t->total += CACHE_CHUNK;
            continue;
        }
        size_t n = CACHE_CHUNK - t->fill;
        if (n > len) n = len;
        memcpy(t->buf + t->fill, p, n);
        t->fill += n; p += n; len -= n; t->total += n;
        if (t->fill == CACHE_CHUNK) {
            if ((st = write_chunk(t, t->buf, CACHE_CHUNK))) return st;
            t->fill = 0;
        }
    }
    return CHUTE_OK;
}

static void txn_free(cache_txn *t)
{
    sqlite3_finalize(t->insert);
    sqlite3_close(t->db);
    free(t->buf);
    free(t);
}

/* One child of dir by exact name (inside the caller's lock/transaction). */
static chute_status child(sqlite3 *db, const char *peer, int64_t dir,
                          const char *name, cache_node *out)
{
    sqlite3_stmt *s = prep(db,
        "SELECT id, is_dir, size, mode, mtime_sec, mtime_nsec, coalesce(data,0) "
        "FROM nodes WHERE peer=? AND parent=? AND name=?");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, dir);
    sqlite3_bind_text(s, 3, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    chute_status st = CHUTE_OK;
    if (rc == SQLITE_ROW) {
        if (out) {
            out->id = sqlite3_column_int64(s, 0);
            out->is_dir = sqlite3_column_int(s, 1) != 0;
            out->size = (uint64_t)sqlite3_column_int64(s, 2);
            out->mode = (uint32_t)sqlite3_column_int(s, 3);
            out->mtime_sec = sqlite3_column_int64(s, 4);
            out->mtime_nsec = (uint32_t)sqlite3_column_int(s, 5);
            out->data = sqlite3_column_int64(s, 6);
        }
    } else {
        st = rc == SQLITE_DONE ? CHUTE_ERR_NOT_FOUND : CHUTE_ERR_DB;
    }
    sqlite3_finalize(s);
    return st;
}

static chute_status insert_node(sqlite3 *db, const char *peer, int64_t parent,
                                const char *name, bool is_dir, uint64_t size,
                                uint32_t mode, int64_t sec, uint32_t nsec,
                                int64_t data, int64_t *id)
{
    sqlite3_stmt *s = prep(db,
        "INSERT INTO nodes(peer, parent, name, is_dir, size, mode, mtime_sec,"
        " mtime_nsec, data) VALUES(?,?,?,?,?,?,?,?,?)");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, parent);
    sqlite3_bind_text(s, 3, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 4, is_dir);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)size);
    sqlite3_bind_int(s, 6, (int)mode);
    sqlite3_bind_int64(s, 7, sec);
    sqlite3_bind_int(s, 8, (int)nsec);
    if (data) sqlite3_bind_int64(s, 9, data);
    else sqlite3_bind_null(s, 9);
    chute_status st = run(s);
    if (!st && id) *id = sqlite3_last_insert_rowid(db);
    return st;
}

/* Place one sanitized component under dir: folders reuse an existing
 * folder of that name; anything else takes the first free variant. */
static chute_status place(sqlite3 *db, const char *peer, int64_t dir,
                          const char *name, bool is_dir, char *used,
                          cache_node *found, bool *exists)
{
    char cand[NAMES_MAX + 1];
    snprintf(cand, sizeof cand, "%s", name);
    for (unsigned n = 2;; n++) {
        chute_status st = child(db, peer, dir, cand, found);
        if (st == CHUTE_ERR_NOT_FOUND) { *exists = false; break; }
        if (st) return st;
        if (is_dir && found->is_dir) { *exists = true; break; }
        if (n > 100000) return CHUTE_ERR_LIMIT;
        if ((st = names_variant(name, n, cand))) return st;
    }
    snprintf(used, NAMES_MAX + 1, "%s", cand);
    return CHUTE_OK;
}

/* Append "/" name to out (bounded; the result is informational). */
static void path_add(char *out, size_t cap, const char *name)
{
    size_t l = strlen(out);
    if (l + 1 + strlen(name) + 1 > cap) return;
    snprintf(out + l, cap - l, "%s%s", l ? "/" : "", name);
}

chute_status cache_item_commit(cache_txn *t, const chute_meta *m,
                               char *final_path, size_t cap)
{
    if (!t) return CHUTE_ERR_ARG;
    if (!m) { cache_item_abort(t); return CHUTE_ERR_ARG; }
    chute_status st = CHUTE_OK;
    /* Close the open batch, then make the final transaction durable
     * (synchronous cannot change inside a transaction). */
    if (t->batch) { st = db_exec(t->db, "COMMIT"); t->batch = 0; }
    if (!st) st = db_exec(t->db, "PRAGMA synchronous=FULL");
    if (!st) st = db_exec(t->db, "BEGIN IMMEDIATE");
    if (!st) t->batch = 1;   /* a transaction is open from here on */
    if (!st && t->fill) { st = write_chunk(t, t->buf, t->fill); t->fill = 0; }
    if (!st && t->total != m->size) st = CHUTE_ERR_MALFORMED;
    /* Split the untrusted path; "" and "." components vanish, everything
     * else is sanitized, the last one is the file. */
    const char *comp[CACHE_MAX_DEPTH];
    size_t clen[CACHE_MAX_DEPTH], nc = 0;
    for (const char *p = m->path; !st && *p;) {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l && !(l == 1 && p[0] == '.')) {
            if (nc == CACHE_MAX_DEPTH) { /* too deep: keep the top folders */
                comp[nc - 2] = comp[nc - 1]; clen[nc - 2] = clen[nc - 1]; nc--;
            }
            comp[nc] = p; clen[nc] = l; nc++;
        }
        p += l + (e ? 1 : 0);
    }
    if (!st && nc == 0) { comp[0] = ""; clen[0] = 0; nc = 1; }
    char name[NAMES_MAX + 1], used[NAMES_MAX + 1], shown[META_PATH_MAX + 1] = "";
    int64_t dir = 0, now = now_s();
    for (size_t i = 0; !st && i < nc; i++) {
        bool last = i + 1 == nc, exists;
        cache_node found;
        if ((st = names_sanitize(comp[i], clen[i], name))) break;
        if ((st = place(t->db, t->peer, dir, name, !last, used, &found, &exists))) break;
        path_add(shown, sizeof shown, used);
        if (!last) {
            if (exists) dir = found.id;
            else st = insert_node(t->db, t->peer, dir, used, true, 0, 0755, now, 0, 0, &dir);
        } else {
            st = insert_node(t->db, t->peer, dir, used, false, m->size, m->mode & 07777,
                             m->mtime_sec, m->mtime_nsec, t->data, NULL);
        }
    }
    if (!st) {
        sqlite3_stmt *s = prep(t->db, "UPDATE data SET complete=1, size=? WHERE id=?");
        if (s) { sqlite3_bind_int64(s, 1, (sqlite3_int64)m->size); sqlite3_bind_int64(s, 2, t->data); }
        st = run(s);
    }
    if (!st) {
        sqlite3_stmt *s = prep(t->db,
            "INSERT OR IGNORE INTO received(peer, item, at) "
            "SELECT peer, item, ? FROM data WHERE id=?");
        if (s) { sqlite3_bind_int64(s, 1, now); sqlite3_bind_int64(s, 2, t->data); }
        st = run(s);
    }
    if (!st) st = db_exec(t->db, "COMMIT");
    if (st) {
        db_exec(t->db, "ROLLBACK");
        t->batch = 0;
        cache_item_abort(t);
        return st;
    }
    if (final_path && cap) snprintf(final_path, cap, "%s", shown);
    txn_free(t);
    return CHUTE_OK;
}

void cache_item_suspend(cache_txn *t)
{
    if (!t) return;
    /* Whole chunks only: a resume starts at a chunk boundary. */
    if (t->batch && db_exec(t->db, "COMMIT") != CHUTE_OK) db_exec(t->db, "ROLLBACK");
    txn_free(t);
}

void cache_item_abort(cache_txn *t)
{
    if (!t) return;
    if (t->batch) db_exec(t->db, "ROLLBACK");
    /* Best effort: a partial that cannot be dropped now is dropped by the
     * next begin of the same item. */
    if (db_exec(t->db, "BEGIN IMMEDIATE") == CHUTE_OK) {
        if (drop_data(t->db, t->data) == CHUTE_OK) db_exec(t->db, "COMMIT");
        else db_exec(t->db, "ROLLBACK");
    }
    txn_free(t);
}

chute_status cache_drop_partials(cache *c, cache_keep_fn keep, void *arg)
{
    if (!c) return CHUTE_ERR_ARG;
    pthread_mutex_lock(&c->mu);
    chute_status st = db_exec(c->db, "BEGIN IMMEDIATE");
    sqlite3_stmt *s = st ? NULL : prep(c->db, "SELECT id, peer, item FROM data WHERE complete=0");
    if (!st && !s) st = CHUTE_ERR_DB;
    /* Collect first: no DELETE while the SELECT walks the table. */
    int64_t *drop = NULL;
    size_t n = 0, cap = 0;
    while (!st && sqlite3_step(s) == SQLITE_ROW) {
        if (keep && keep((const char *)sqlite3_column_text(s, 1),
                         (const char *)sqlite3_column_text(s, 2), arg))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            int64_t *grown = realloc(drop, ncap * sizeof *drop);
            if (!grown) { st = CHUTE_ERR_NOMEM; break; }
            drop = grown;
            cap = ncap;
        }
        drop[n++] = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    for (size_t i = 0; !st && i < n; i++) st = drop_data(c->db, drop[i]);
    free(drop);
    if (!st) st = db_exec(c->db, "COMMIT");
    if (st) db_exec(c->db, "ROLLBACK");
    pthread_mutex_unlock(&c->mu);
    return st;
}

/* Walk path from the peer's root. Caller holds c->mu. */
static chute_status walk(cache *c, const char *peer, const char *path,
                         cache_node *out)
{
    cache_node n = {.id = 0, .is_dir = true, .mode = 0755};
    char name[NAMES_MAX + 1];
    for (const char *p = path; *p;) {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l > NAMES_MAX) return CHUTE_ERR_NOT_FOUND;
        if (l) {
            if (!n.is_dir) return CHUTE_ERR_NOT_FOUND;
            memcpy(name, p, l);
            name[l] = '\0';
            chute_status st = child(c->db, peer, n.id, name, &n);
            if (st) return st;
        }
        p += l + (e ? 1 : 0);
    }
    *out = n;
    return CHUTE_OK;
}

chute_status cache_lookup(cache *c, const char *peer, const char *path,
                          cache_node *out)
{
    if (!c || !peer || !path || !out) return CHUTE_ERR_ARG;
    pthread_mutex_lock(&c->mu);
    chute_status st = walk(c, peer, path, out);
    pthread_mutex_unlock(&c->mu);
    return st;
}

chute_status cache_list(cache *c, const char *peer, int64_t dir,
                        cache_list_fn fn, void *arg)
{
    if (!c || !peer || !fn) return CHUTE_ERR_ARG;
    pthread_mutex_lock(&c->mu);
    sqlite3_stmt *s = prep(c->db,
        "SELECT name, id, is_dir, size, mode, mtime_sec, mtime_nsec, coalesce(data,0) "
        "FROM nodes WHERE peer=? AND parent=? ORDER BY name");
    chute_status st = CHUTE_ERR_DB;
    if (s) {
        sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, dir);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            cache_node n = {
                .id = sqlite3_column_int64(s, 1),
                .is_dir = sqlite3_column_int(s, 2) != 0,
                .size = (uint64_t)sqlite3_column_int64(s, 3),
                .mode = (uint32_t)sqlite3_column_int(s, 4),
                .mtime_sec = sqlite3_column_int64(s, 5),
                .mtime_nsec = (uint32_t)sqlite3_column_int(s, 6),
                .data = sqlite3_column_int64(s, 7),
            };
            if (fn((const char *)sqlite3_column_text(s, 0), &n, arg)) { rc = SQLITE_DONE; break; }
        }
        st = rc == SQLITE_DONE ? CHUTE_OK : CHUTE_ERR_DB;
        sqlite3_finalize(s);
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

chute_status cache_read(cache *c, int64_t data, uint64_t size, uint64_t off,
                        void *buf, size_t len, size_t *got)
{
    if (!c || !got || (!buf && len)) return CHUTE_ERR_ARG;
    *got = 0;
    if (off >= size || len == 0) return CHUTE_OK;
    if (len > size - off) len = (size_t)(size - off);
    int64_t first = (int64_t)(off / CACHE_CHUNK);
    int64_t last = (int64_t)((off + len - 1) / CACHE_CHUNK);
    pthread_mutex_lock(&c->mu);
    sqlite3_stmt *s = prep(c->db, "SELECT idx, bytes FROM chunks WHERE data=? "
                                  "AND idx BETWEEN ? AND ? ORDER BY idx");
    chute_status st = s ? CHUTE_OK : CHUTE_ERR_DB;
    if (s) {
        sqlite3_bind_int64(s, 1, data);
        sqlite3_bind_int64(s, 2, first);
        sqlite3_bind_int64(s, 3, last);
        int64_t want = first;
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            int64_t idx = sqlite3_column_int64(s, 0);
            if (idx != want) { st = CHUTE_ERR_IO; break; }  /* a hole */
            const uint8_t *b = sqlite3_column_blob(s, 1);
            uint64_t cstart = (uint64_t)idx * CACHE_CHUNK;
            uint64_t from = off + *got - cstart;
            size_t avail = (size_t)sqlite3_column_bytes(s, 1);
            if (from >= avail) { st = CHUTE_ERR_IO; break; }
            size_t n = avail - (size_t)from;
            if (n > len - *got) n = len - *got;
            memcpy((uint8_t *)buf + *got, b + from, n);
            *got += n;
            want++;
        }
        if (!st && rc != SQLITE_DONE && rc != SQLITE_ROW) st = CHUTE_ERR_DB;
        if (!st && *got != len) st = CHUTE_ERR_IO;
        sqlite3_finalize(s);
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

static chute_status has_children(sqlite3 *db, const char *peer, int64_t dir, bool *yes)
{
    sqlite3_stmt *s = prep(db, "SELECT 1 FROM nodes WHERE peer=? AND parent=? LIMIT 1");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, dir);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return CHUTE_ERR_DB;
    *yes = rc == SQLITE_ROW;
    return CHUTE_OK;
}

/* Delete node n (a file with its data, or an empty folder); in a txn. */
static chute_status drop_node(cache *c, const char *peer, const cache_node *n)
{
    if (n->is_dir) {
        bool busy;
        chute_status st = has_children(c->db, peer, n->id, &busy);
        if (st) return st;
        if (busy) return CHUTE_ERR_EXISTS;
    } else if (n->data) {
        chute_status st = doom_data(c->db, n->data);
        if (st) return st;
    }
    sqlite3_stmt *s = prep(c->db, "DELETE FROM nodes WHERE id=?");
    if (s) sqlite3_bind_int64(s, 1, n->id);
    return run(s);
}

chute_status cache_remove(cache *c, const char *peer, const char *path)
{
    if (!c || !peer || !path) return CHUTE_ERR_ARG;
    pthread_mutex_lock(&c->mu);
    cache_node n;
    chute_status st = walk(c, peer, path, &n);
    if (!st && n.id == 0) st = CHUTE_ERR_ARG;
    if (!st) st = db_exec(c->db, "BEGIN IMMEDIATE");
    if (!st) {
        st = drop_node(c, peer, &n);
        if (!st) st = db_exec(c->db, "COMMIT");
        if (st) db_exec(c->db, "ROLLBACK");
    }
    pthread_mutex_unlock(&c->mu);
    if (!st && !n.is_dir) reaper_wake(c);
    return st;
}

/* Split "a/b/c" into parent "a/b" and base "c" (in buf). */
static const char *split_base(const char *path, char *parent, size_t cap)
{
    const char *slash = strrchr(path, '/');
    size_t pl = slash ? (size_t)(slash - path) : 0;
    if (pl >= cap) pl = cap - 1;
    memcpy(parent, path, pl);
    parent[pl] = '\0';
    return slash ? slash + 1 : path;
}

chute_status cache_rename(cache *c, const char *peer, const char *from,
                          const char *to)
{
    if (!c || !peer || !from || !to) return CHUTE_ERR_ARG;
    char parent[META_PATH_MAX + 1];
    const char *base = split_base(to, parent, sizeof parent);
    if (!*base || strlen(base) > NAMES_MAX) return CHUTE_ERR_ARG;
    pthread_mutex_lock(&c->mu);
    cache_node src, dst_dir, dst;
    bool replaced = false;   /* a file was replaced: its chunks are doomed */
    chute_status st = walk(c, peer, from, &src);
    if (!st && src.id == 0) st = CHUTE_ERR_ARG;
    if (!st) st = walk(c, peer, parent, &dst_dir);
    if (!st && !dst_dir.is_dir) st = CHUTE_ERR_NOT_FOUND;
    /* A folder may not move into itself or below. */
    for (int64_t up = dst_dir.id; !st && src.is_dir && up != 0;) {
        if (up == src.id) { st = CHUTE_ERR_ARG; break; }
        sqlite3_stmt *s = prep(c->db, "SELECT parent FROM nodes WHERE id=?");
        if (!s) { st = CHUTE_ERR_DB; break; }
        sqlite3_bind_int64(s, 1, up);
        up = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
        sqlite3_finalize(s);
    }
    if (!st) st = db_exec(c->db, "BEGIN IMMEDIATE");
    if (!st) {
        chute_status f = child(c->db, peer, dst_dir.id, base, &dst);
        if (f == CHUTE_OK && dst.id != src.id) {
            if (dst.is_dir != src.is_dir) st = CHUTE_ERR_ARG;
            else if (!(st = drop_node(c, peer, &dst))) replaced = !dst.is_dir;
        } else if (f != CHUTE_OK && f != CHUTE_ERR_NOT_FOUND) {
            st = f;
        }
        if (!st) {
            sqlite3_stmt *s = prep(c->db, "UPDATE nodes SET parent=?, name=? WHERE id=?");
            if (s) {
                sqlite3_bind_int64(s, 1, dst_dir.id);
                sqlite3_bind_text(s, 2, base, -1, SQLITE_STATIC);
                sqlite3_bind_int64(s, 3, src.id);
            }
            st = run(s);
        }
        if (!st) st = db_exec(c->db, "COMMIT");
        if (st) db_exec(c->db, "ROLLBACK");
    }
    pthread_mutex_unlock(&c->mu);
    if (!st && replaced) reaper_wake(c);
    return st;
}

chute_status cache_counts(cache *c, cache_counts_t *out)
{
    if (!c || !out) return CHUTE_ERR_ARG;
    pthread_mutex_lock(&c->mu);
    sqlite3_stmt *s = prep(c->db,
        "SELECT (SELECT count(*) FROM nodes WHERE is_dir=0),"
        " (SELECT coalesce(sum(size),0) FROM nodes WHERE is_dir=0),"
        " (SELECT count(*) FROM data WHERE complete=0),"
        " (SELECT count(*) FROM quarantine)");
    chute_status st = CHUTE_ERR_DB;
    if (s && sqlite3_step(s) == SQLITE_ROW) {
        out->stored = (uint64_t)sqlite3_column_int64(s, 0);
        out->stored_bytes = (uint64_t)sqlite3_column_int64(s, 1);
        out->incoming = (uint64_t)sqlite3_column_int64(s, 2);
        out->quarantined = (uint64_t)sqlite3_column_int64(s, 3);
        st = CHUTE_OK;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&c->mu);
    return st;
}

/* ---- quarantine and the list cursor -------------------------------------- */

chute_status cache_quarantine(cache *c, const char *peer, const char *item,
                              const char *reason)
{
    if (!c || !peer || !item || !reason) return CHUTE_ERR_ARG;
    pthread_mutex_lock(&c->mu);
    /* The first reason stays: a retry after a lost ack finds it again. */
    sqlite3_stmt *s = prep(c->db, "INSERT OR IGNORE INTO quarantine(peer, item, reason, at)"
                                  " VALUES(?,?,?,?)");
    if (s) {
        sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, item, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, reason, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, now_s());
    }
    chute_status st = run(s);
    pthread_mutex_unlock(&c->mu);
    return st;
}

chute_status cache_is_quarantined(cache *c, const char *peer, const char *item,
                                  bool *yes)
{
    if (!c || !peer || !item || !yes) return CHUTE_ERR_ARG;
    pthread_mutex_lock(&c->mu);
    sqlite3_stmt *s = prep(c->db, "SELECT 1 FROM quarantine WHERE peer=? AND item=?");
    int rc = SQLITE_ERROR;
    if (s) {
        sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, item, -1, SQLITE_STATIC);
        rc = sqlite3_step(s);
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&c->mu);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return CHUTE_ERR_DB;
    *yes = rc == SQLITE_ROW;
    return CHUTE_OK;
}

chute_status cache_quarantine_each(cache *c, cache_quarantine_fn fn, void *arg)
{
    if (!c || !fn) return CHUTE_ERR_ARG;
    pthread_mutex_lock(&c->mu);
    sqlite3_stmt *s = prep(c->db, "SELECT peer, item, reason, at FROM quarantine"
                                  " ORDER BY at, peer, item");
    chute_status st = s ? CHUTE_OK : CHUTE_ERR_DB;
    int rc = SQLITE_DONE;
    while (!st && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (fn((const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
               (const char *)sqlite3_column_text(s, 2), sqlite3_column_int64(s, 3), arg))
            break;
    }
    if (!st && rc != SQLITE_ROW && rc != SQLITE_DONE) st = CHUTE_ERR_DB;
    sqlite3_finalize(s);
    pthread_mutex_unlock(&c->mu);
    return st;
}

chute_status cache_list_cursor(cache *c, const char *inbox, uint64_t *seq)
{
    if (!c || !inbox || !seq) return CHUTE_ERR_ARG;
    pthread_mutex_lock(&c->mu);
    sqlite3_stmt *s = prep(c->db, "SELECT seq FROM list_cursor WHERE inbox=?");
    int rc = SQLITE_ERROR;
    *seq = 0;
    if (s) {
        sqlite3_bind_text(s, 1, inbox, -1, SQLITE_STATIC);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW && sqlite3_column_int64(s, 0) > 0)
            *seq = (uint64_t)sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&c->mu);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? CHUTE_OK : CHUTE_ERR_DB;
}

chute_status cache_set_list_cursor(cache *c, const char *inbox, uint64_t seq)
{
    if (!c || !inbox || seq > INT64_MAX) return CHUTE_ERR_ARG;
    pthread_mutex_lock(&c->mu);
    sqlite3_stmt *s = prep(c->db, "INSERT INTO list_cursor(inbox, seq) VALUES(?1, ?2)"
                                  " ON CONFLICT(inbox) DO UPDATE SET seq=?2");
    if (s) {
        sqlite3_bind_text(s, 1, inbox, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)seq);
    }
    chute_status st = run(s);
    pthread_mutex_unlock(&c->mu);
    return st;
}
