/* cache.c — the inbox cache on SQLite; see cache.h for the model.
 *
 * Two files. inbox.db, the index: nodes (the visible tree per peer:
 * folders and files), data (one row per received or receiving blob;
 * complete=0 while downloading; store says where its chunks are), received
 * (every item ever committed, so a redelivered item is recognised after
 * its file is gone), quarantine (items refused by verification),
 * list_cursor (where the downloader's listing of the relay inbox resumes),
 * doomed (data rows the reaper is to free). inbox-data.db, the chunks
 * (64 KiB plaintext pieces of a data row: chunkstore.h). Versions before
 * 0.3 kept the chunks in inbox.db's own chunks table: rows of theirs say
 * store=0 and are read from there until removed.
 *
 * Across the two files there is no transaction, so each change is made in
 * the order that leaves nothing dangling: a data row before its chunks,
 * the chunks durable before the node that shows them, and the chunks
 * deleted before the row. */
#include "cache.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "db.h"
#include "names.h"
#include "chunkstore.h"

struct cache {
    sqlite3 *db;          /* the index, for the mount's names and changes */
    char *path;           /* inbox.db */
    char *data_path;      /* inbox-data.db */
    /* The mount's threads share db; multi-statement changes hold mu so no
     * other thread's statement lands inside their transaction. */
    pthread_mutex_t mu;
    /* Reads of file content, opened on first need, under read_mu: a read
     * waiting for a download's batch holds up no lookup. */
    pthread_mutex_t read_mu;
    chunkstore *store;    /* inbox-data.db */
    chunkstore *legacy;   /* inbox.db's own chunks (data.store=0) */
    /* The reaper frees the chunks of removed files in the background. */
    pthread_mutex_t reap_mu;
    pthread_cond_t reap_cv;
    pthread_t reaper;
    bool reaper_running, reap_wanted, reap_stopping;
    bool no_reaper;       /* cache_open_without_reaper */
    dev_t dev;            /* inbox.db's, to tell its open files (held) */
    ino_t ino;
};

/* Data rows open as files (cache_open_file), with how many opens each:
 * the reaper leaves them, removed or not, until their last close. For the
 * whole process: the mount's downloader has a cache of its own (without a
 * reaper, but it could be given one). */
typedef struct { dev_t dev; ino_t ino; int64_t data; unsigned opens; } held_data;
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static held_data *held;
static size_t n_held, cap_held;

static size_t held_find(const cache *c, int64_t data)
{
    size_t i = 0;
    while (i < n_held && !(held[i].data == data && held[i].dev == c->dev &&
                           held[i].ino == c->ino))
        i++;
    return i;
}

struct cache_txn {
    sqlite3 *db;          /* an index connection of its own: a long download
                             never holds a transaction on the mount's */
    chunkstore *store;    /* its chunks' writer */
    int64_t data;
    char *item;           /* data's (peer, item): checked where data is
                             changed, lest its id now be another row's */
    uint64_t total;       /* bytes appended so far */
    int64_t next_idx;
    uint8_t *buf;         /* the chunk being filled */
    size_t fill;
    char peer[256];
};

/* The index. Its pages are small rows: the default page size. */
static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS nodes (id INTEGER PRIMARY KEY,"
    " peer TEXT NOT NULL, parent INTEGER NOT NULL, name TEXT NOT NULL,"
    " is_dir INTEGER NOT NULL, size INTEGER NOT NULL DEFAULT 0,"
    " mode INTEGER NOT NULL, mtime_sec INTEGER NOT NULL,"
    " mtime_nsec INTEGER NOT NULL, data INTEGER,"
    " UNIQUE(peer, parent, name));"
    "CREATE TABLE IF NOT EXISTS data (id INTEGER PRIMARY KEY,"
    " peer TEXT NOT NULL, item TEXT NOT NULL, size INTEGER NOT NULL DEFAULT 0,"
    " complete INTEGER NOT NULL DEFAULT 0, store INTEGER NOT NULL DEFAULT 0,"
    " UNIQUE(peer, item));"
    "CREATE TABLE IF NOT EXISTS received (peer TEXT NOT NULL,"
    " item TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY(peer, item));"
    "CREATE TABLE IF NOT EXISTS quarantine (peer TEXT NOT NULL,"
    " item TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL,"
    " PRIMARY KEY(peer, item));"
    "CREATE TABLE IF NOT EXISTS list_cursor (inbox TEXT PRIMARY KEY,"
    " seq INTEGER NOT NULL);"
    /* data rows of removed files whose chunks the reaper has yet to free */
    "CREATE TABLE IF NOT EXISTS doomed (data INTEGER PRIMARY KEY);";

/* Where a data row's chunks are. */
#define STORE_INDEX 0   /* inbox.db's chunks table, from before 0.3 */
#define STORE_DATA  1   /* inbox-data.db */

static void reaper_wake(cache *c);
static bool has_doomed(sqlite3 *db);

char *cache_data_path(const char *db_path)
{
    size_t n = strlen(db_path);
    bool dot_db = n >= 3 && strcmp(db_path + n - 3, ".db") == 0;
    size_t base = dot_db ? n - 3 : n;
    char *p = malloc(base + sizeof "-data.db");
    if (p) {
        memcpy(p, db_path, base);
        strcpy(p + base, dot_db ? "-data.db" : "-data");
    }
    return p;
}

/* An index made before 0.3 has no data.store: its rows' chunks are in it. */
static chute_status add_store_column(sqlite3 *db)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info('data') WHERE name='store'",
                           -1, &s, NULL) != SQLITE_OK)
        return CHUTE_ERR_DB;
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc == SQLITE_ROW) return CHUTE_OK;
    if (rc != SQLITE_DONE) return CHUTE_ERR_DB;
    return db_exec(db, "ALTER TABLE data ADD COLUMN store INTEGER NOT NULL DEFAULT 0");
}

/* A connection to the index (names, sizes, times of inbox files). A
 * removed file's name must not outlive its delete any more than its bytes
 * (chunkstore.c): pages freed are zeroed (secure_delete) and the journal,
 * which holds their old contents, is emptied at each commit (TRUNCATE;
 * PERSIST kept them). */
static chute_status index_open(const char *path, const char *schema, sqlite3 **db)
{
    chute_status st = db_open_journal(path, schema, DB_JOURNAL_TRUNCATE, db);
    if (!st && (st = db_exec(*db, "PRAGMA secure_delete=ON")) != CHUTE_OK) {
        sqlite3_close(*db);
        *db = NULL;
    }
    return st;
}

static chute_status open_cache(const char *db_path, bool reaper, cache **out)
{
    if (!db_path || !out) return CHUTE_ERR_ARG;
    cache *c = calloc(1, sizeof *c);
    if (!c) return CHUTE_ERR_NOMEM;
    c->path = strdup(db_path);
    c->data_path = cache_data_path(db_path);
    if (!c->path || !c->data_path) { free(c->path); free(c->data_path); free(c); return CHUTE_ERR_NOMEM; }
    chute_status st = index_open(db_path, SCHEMA, &c->db);
    if (!st) st = add_store_column(c->db);
    if (st) { sqlite3_close(c->db); free(c->path); free(c->data_path); free(c); return st; }
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->read_mu, NULL);
    pthread_mutex_init(&c->reap_mu, NULL);
    pthread_cond_init(&c->reap_cv, NULL);
    c->no_reaper = !reaper;
    struct stat sb;
    if (stat(db_path, &sb) == 0) { c->dev = sb.st_dev; c->ino = sb.st_ino; }
    if (has_doomed(c->db)) reaper_wake(c);   /* left by a crash or a close */
    *out = c;
    return CHUTE_OK;
}

chute_status cache_open(const char *db_path, cache **out)
{
    return open_cache(db_path, true, out);
}

chute_status cache_open_without_reaper(const char *db_path, cache **out)
{
    return open_cache(db_path, false, out);
}

void cache_close(cache *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->reap_mu);
    c->reap_stopping = true;   /* what is still doomed waits for the next open */
    pthread_cond_signal(&c->reap_cv);
    pthread_mutex_unlock(&c->reap_mu);
    if (c->reaper_running) pthread_join(c->reaper, NULL);
    chunkstore_close(c->store);
    chunkstore_close(c->legacy);
    sqlite3_close(c->db);
    pthread_cond_destroy(&c->reap_cv);
    pthread_mutex_destroy(&c->reap_mu);
    pthread_mutex_destroy(&c->read_mu);
    pthread_mutex_destroy(&c->mu);
    free(c->path);
    free(c->data_path);
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
    /* Its chunks stay in the index, as a version before 0.3 kept them:
     * its data rows say store=0. */
    static const char *const copies[] = {
        "INSERT OR IGNORE INTO main.nodes SELECT * FROM legacy.nodes",
        "INSERT OR IGNORE INTO main.data(id, peer, item, size, complete)"
        " SELECT id, peer, item, size, complete FROM legacy.data",
        "CREATE TABLE IF NOT EXISTS main.chunks (data INTEGER NOT NULL,"
        " idx INTEGER NOT NULL, bytes BLOB NOT NULL, PRIMARY KEY(data, idx))",
        "INSERT OR IGNORE INTO main.chunks SELECT * FROM legacy.chunks",
        "INSERT OR IGNORE INTO main.received SELECT * FROM legacy.received",
        "INSERT OR IGNORE INTO main.quarantine SELECT * FROM legacy.quarantine",
        "INSERT OR IGNORE INTO main.list_cursor SELECT * FROM legacy.list_cursor",
        "DROP TABLE legacy.nodes; DROP TABLE legacy.data; DROP TABLE legacy.chunks;"
        " DROP TABLE legacy.received; DROP TABLE legacy.quarantine;"
        " DROP TABLE legacy.list_cursor",
    };
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
    for (size_t i = 0; !st && found && i < sizeof copies / sizeof *copies; i++)
        st = db_exec(c->db, copies[i]);
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

/* Where data row `data` keeps its chunks (STORE_DATA if it has no row). */
static chute_status data_store(sqlite3 *db, int64_t data, int *store)
{
    sqlite3_stmt *s = prep(db, "SELECT store FROM data WHERE id=?");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_int64(s, 1, data);
    int rc = sqlite3_step(s);
    *store = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : STORE_DATA;
    sqlite3_finalize(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? CHUTE_OK : CHUTE_ERR_DB;
}

/* Chunks freed per transaction, by the reaper and by a dropped partial:
 * freeing a big file in one would hold the chunk file from every reader
 * for seconds (SQLite reads each overflow page to free it, and zeroes it:
 * secure_delete), and an inbox read waiting past the busy timeout fails. */
#define REAP_CHUNKS 64
/* Free pages given back to the filesystem per transaction, by the reaper
 * once nothing is doomed: 4 MiB of 16 KiB pages, as much as REAP_CHUNKS. */
#define SHRINK_PAGES 256
/* The pause after each such step (~7 ms here): back to back, the 265
 * steps after a 1 GiB file was removed held arrivals off for up to 1.5 s
 * (their busy handler polls; the reaper took the lock again first). The
 * space comes back over seconds instead; nothing waits for it. */
#define SHRINK_PAUSE_MS 25

/* Delete at most limit (0: all) chunks of data from where it keeps them:
 * through chunks (a writer of the data file), or through db, the index,
 * for a row of an older version. *deleted: whether any went. Not inside a
 * transaction of db's. */
static chute_status delete_chunks(sqlite3 *db, chunkstore *chunks, int64_t data, int store,
                                  unsigned limit, bool *deleted)
{
    if (store == STORE_DATA) {
        unsigned n = 0;
        chute_status st = chunks ? chunkstore_delete(chunks, data, limit, &n) : CHUTE_ERR_ARG;
        if (deleted) *deleted = n > 0;
        return st;
    }
    sqlite3_stmt *s = prep(db, limit
        ? "DELETE FROM chunks WHERE data=?1 AND idx IN (SELECT idx FROM chunks"
          " WHERE data=?1 ORDER BY idx LIMIT ?2)"
        : "DELETE FROM chunks WHERE data=?1");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_int64(s, 1, data);
    if (limit) sqlite3_bind_int(s, 2, (int)limit);
    int rc = sqlite3_step(s);
    if (deleted) *deleted = sqlite3_changes(db) > 0;
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? CHUTE_OK : CHUTE_ERR_DB;
}

/* Data row `data` as the partial of (peer, item), or of any item for a
 * NULL peer: a row whose id was freed and taken again is another's. */
#define PARTIAL_IS "id=?1 AND complete=0 AND (?2 IS NULL OR (peer=?2 AND item=?3))"

static void bind_partial(sqlite3_stmt *s, int64_t data, const char *peer, const char *item)
{
    sqlite3_bind_int64(s, 1, data);
    if (peer) {
        sqlite3_bind_text(s, 2, peer, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, item, -1, SQLITE_STATIC);
    }
}

static chute_status partial_is(sqlite3 *db, int64_t data, const char *peer,
                               const char *item, bool *yes)
{
    sqlite3_stmt *s = prep(db, "SELECT 1 FROM data WHERE " PARTIAL_IS);
    if (!s) return CHUTE_ERR_DB;
    bind_partial(s, data, peer, item);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    *yes = rc == SQLITE_ROW;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? CHUTE_OK : CHUTE_ERR_DB;
}

/* Delete the partial of data row `data` (of (peer, item), or any for a
 * NULL peer): its chunks, REAP_CHUNKS at a time, then the row — only
 * while the row is still that partial: a row dropped twice could take a
 * new item's row, which took its id, with it. A crash between leaves a
 * row with fewer chunks or none, a partial the next start drops. */
static chute_status drop_data(sqlite3 *db, chunkstore *chunks, int64_t data,
                              const char *peer, const char *item)
{
    bool ours;
    chute_status st = partial_is(db, data, peer, item, &ours);
    if (st || !ours) return st;
    int store;
    st = data_store(db, data, &store);
    for (bool more = true; !st && more;)
        st = delete_chunks(db, chunks, data, store, REAP_CHUNKS, &more);
    if (st) return st;
    sqlite3_stmt *s = prep(db, "DELETE FROM data WHERE " PARTIAL_IS);
    if (s) bind_partial(s, data, peer, item);
    return run(s);
}

/* ---- the reaper ---------------------------------------------------------
 * Removing a file only dooms its data row; a thread frees the chunks in
 * small transactions on a connection of its own, and then gives the pages
 * freed back to the filesystem, as small transactions too. Freed in the unlink
 * itself, 256 MiB took ~1 s here (SQLite reads every overflow page to
 * free it, and zeroes each one: secure_delete, chunkstore.c), with the
 * mount's connection locked all along and arrivals waiting on it.
 * A partial download's chunks are still freed in place (doomed, its row
 * would count as incoming and be resumed from), REAP_CHUNKS at a time. */

static bool is_held(const cache *c, int64_t data)
{
    pthread_mutex_lock(&held_mu);
    bool yes = held_find(c, data) < n_held;
    pthread_mutex_unlock(&held_mu);
    return yes;
}

/* Nothing is doomed: give some of the pages freed back to the filesystem
 * (chunkstore_shrink); *done once none is left, *pause while some are. One that fails (busy with
 * an arrival's batch, which reuses the free pages anyway; a disk too full
 * for a first VACUUM) waits for the reaper's next pass: not retried every
 * 2 s as a failed free is. */
static chute_status shrink_some(chunkstore *chunks, bool *done, bool *pause)
{
    bool more = false;
    (void)chunkstore_shrink(chunks, SHRINK_PAGES, &more);
    *done = !more;
    *pause = more;
    return CHUTE_OK;
}

/* Free some chunks of one doomed data row, or the row itself once it has
 * none left, or else some free pages (shrink_some); *done when nothing is
 * left to do. db: the reaper's index
 * connection; chunks: its writer of the data file. */
static chute_status reap_some(cache *c, sqlite3 *db, chunkstore *chunks, bool *done,
                              bool *pause)
{
    *done = *pause = false;
    /* The first doomed row no one has open (a removed file stays readable
     * through the descriptors open on it: cache_open_file). None can be
     * opened anew once doomed, so one found free stays free. */
    sqlite3_stmt *s = prep(db, "SELECT d.data, coalesce(x.store, 1) FROM doomed d"
                               " LEFT JOIN data x ON x.id = d.data ORDER BY d.data");
    int rc = s ? sqlite3_step(s) : SQLITE_ERROR;
    while (rc == SQLITE_ROW && is_held(c, sqlite3_column_int64(s, 0)))
        rc = sqlite3_step(s);
    int64_t data = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    int store = rc == SQLITE_ROW ? sqlite3_column_int(s, 1) : STORE_DATA;
    sqlite3_finalize(s);
    if (rc == SQLITE_DONE) return shrink_some(chunks, done, pause);
    if (rc != SQLITE_ROW) return CHUTE_ERR_DB;
    bool deleted = false;
    chute_status st = delete_chunks(db, chunks, data, store, REAP_CHUNKS, &deleted);
    if (st || deleted) return st;
    /* No chunk left: the doom goes, and the row with it — only if it was
     * still doomed. Another reaper that freed it first (one per cache
     * file, but nothing else stops two) has let its id be taken again,
     * and the row now is a new arrival's. */
    if (db_exec(db, "BEGIN IMMEDIATE")) return CHUTE_ERR_DB;
    s = prep(db, "DELETE FROM doomed WHERE data=?");
    if (s) sqlite3_bind_int64(s, 1, data);
    st = run(s);
    bool was_doomed = !st && sqlite3_changes(db) == 1;
    s = st || !was_doomed ? NULL : prep(db, "DELETE FROM data WHERE id=?");
    if (s) sqlite3_bind_int64(s, 1, data);
    if (!st && was_doomed) st = run(s);
    if (!st) st = db_exec(db, "COMMIT");
    if (st) db_exec(db, "ROLLBACK");
    return st;
}

/* The reaper's own connections, opened where missing: an open can fail
 * (a batch of an arrival holds the chunk file longer than the busy
 * timeout), and is tried again at the next pass. */
static bool reaper_connect(cache *c, sqlite3 **db, chunkstore **chunks)
{
    /* Each batch need not be durable: a crash leaves the rest doomed. */
    if (!*db && index_open(c->path, NULL, db) == CHUTE_OK)
        (void)db_exec(*db, "PRAGMA synchronous=NORMAL");
    if (*db && !*chunks && chunkstore_open_writer(c->data_path, chunks) != CHUTE_OK)
        *chunks = NULL;
    return *db && *chunks;
}

static void *reap_loop(void *arg)
{
    cache *c = arg;
    sqlite3 *db = NULL;
    chunkstore *chunks = NULL;
    pthread_mutex_lock(&c->reap_mu);
    while (!c->reap_stopping) {
        if (!c->reap_wanted) { pthread_cond_wait(&c->reap_cv, &c->reap_mu); continue; }
        c->reap_wanted = false;
        pthread_mutex_unlock(&c->reap_mu);
        bool done = false, failed = !reaper_connect(c, &db, &chunks);
        pthread_mutex_lock(&c->reap_mu);
        while (!done && !failed && !c->reap_stopping) {
            pthread_mutex_unlock(&c->reap_mu);
            bool pause = false;
            failed = reap_some(c, db, chunks, &done, &pause) != CHUTE_OK;
            pthread_mutex_lock(&c->reap_mu);
            if (pause && !c->reap_stopping) {   /* let arrivals in (SHRINK_PAUSE_MS) */
                struct timespec at;
                clock_gettime(CLOCK_REALTIME, &at);
                at.tv_nsec += SHRINK_PAUSE_MS * 1000000L;
                if (at.tv_nsec >= 1000000000L) { at.tv_sec++; at.tv_nsec -= 1000000000L; }
                pthread_cond_timedwait(&c->reap_cv, &c->reap_mu, &at);
            }
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
    chunkstore_close(chunks);
    sqlite3_close(db);
    return NULL;
}

/* Something is doomed: have the reaper free it (started on first need). */
static void reaper_wake(cache *c)
{
    if (c->no_reaper) return;   /* left doomed for a mount's cache to free */
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
    t->item = strdup(item);
    if (!t->item) { free(t->buf); free(t); return CHUTE_ERR_NOMEM; }
    chute_status st = index_open(c->path, NULL, &t->db);
    if (!st) st = chunkstore_open_writer(c->data_path, &t->store);
    if (!st) st = db_exec(t->db, "BEGIN IMMEDIATE");
    if (st) goto fail;
    /* A partial left by a crash or an earlier try: its first chunks go
     * on (up to max_chunks), the rest starts over. */
    sqlite3_stmt *s = prep(t->db, "SELECT id, complete, store FROM data WHERE peer=? AND item=?");
    if (!s) { st = CHUTE_ERR_DB; goto rollback; }
    sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, item, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        t->data = sqlite3_column_int64(s, 0);
        int complete = sqlite3_column_int(s, 1), store = sqlite3_column_int(s, 2);
        sqlite3_finalize(s);
        if (complete) { st = CHUTE_ERR_EXISTS; goto rollback; }
        if (store != STORE_DATA) {
            /* An older version's partial, in the index: start it over
             * in the data file. */
            max_chunks = 0;
            s = prep(t->db, "DELETE FROM chunks WHERE data=?1");
            if (s) sqlite3_bind_int64(s, 1, t->data);
            if ((st = run(s))) goto rollback;
            s = prep(t->db, "UPDATE data SET store=1 WHERE id=?");
            if (s) sqlite3_bind_int64(s, 1, t->data);
            if ((st = run(s))) goto rollback;
        }
    } else {
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE) { st = CHUTE_ERR_DB; goto rollback; }
        s = prep(t->db, "INSERT INTO data(peer, item, store) VALUES(?, ?, 1)");
        if (s) {
            sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 2, item, -1, SQLITE_STATIC);
        }
        if ((st = run(s))) goto rollback;
        t->data = sqlite3_last_insert_rowid(t->db);
        max_chunks = 0;
    }
    if ((st = db_exec(t->db, "COMMIT"))) goto rollback;
    /* The row first, then its chunks: a new row's id may be one a crash
     * left chunks of, and those go here. */
    if ((st = chunkstore_keep_prefix(t->store, t->data, max_chunks, kept))) goto fail;
    t->next_idx = (int64_t)*kept;
    t->total = *kept * CACHE_CHUNK;
    *out = t;
    return CHUTE_OK;
rollback:
    db_exec(t->db, "ROLLBACK");
fail:
    chunkstore_close(t->store);
    sqlite3_close(t->db);
    free(t->item);
    free(t->buf);
    free(t);
    return st;
}

static chute_status write_chunk(cache_txn *t, const uint8_t *bytes, size_t n)
{
    chute_status st = chunkstore_append(t->store, t->data, t->next_idx, bytes, n);
    if (!st) t->next_idx++;
    return st;
}

chute_status cache_item_checkpoint(cache_txn *t)
{
    return t ? chunkstore_commit(t->store) : CHUTE_ERR_ARG;
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
    chunkstore_close(t->store);
    sqlite3_close(t->db);
    free(t->item);
    free(t->buf);
    free(t);
}

/* One child of dir by exact name (inside the caller's lock/transaction). */
static chute_status child(sqlite3 *db, const char *peer, int64_t dir,
                          const char *name, cache_node *out)
{
    sqlite3_stmt *s = prep(db,
        "SELECT n.id, n.is_dir, n.size, n.mode, n.mtime_sec, n.mtime_nsec,"
        " coalesce(n.data,0), coalesce(d.store,1) FROM nodes n LEFT JOIN data d ON d.id=n.data"
        " WHERE n.peer=? AND n.parent=? AND n.name=?");
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
            out->data_in_index = sqlite3_column_int(s, 7) == STORE_INDEX;
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
#define PLACE_IN_ORDER 999   /* " (2)" … " (1000)" */

static chute_status place(sqlite3 *db, const char *peer, int64_t dir,
                          const char *name, bool is_dir, char *used,
                          cache_node *found, bool *exists)
{
    char cand[NAMES_MAX + 1];
    snprintf(cand, sizeof cand, "%s", name);
    /* " (2)" … " (1000)" in order; past that (a folder with a thousand
     * files of one name) a random number, so a commit never walks the
     * whole run under the write lock, nor fails for want of a name. */
    for (unsigned tries = 0;; tries++) {
        chute_status st = child(db, peer, dir, cand, found);
        if (st == CHUTE_ERR_NOT_FOUND) { *exists = false; break; }
        if (st) return st;
        if (is_dir && found->is_dir) { *exists = true; break; }
        if (tries >= PLACE_IN_ORDER + 64) return CHUTE_ERR_LIMIT;   /* not in practice */
        unsigned n = tries < PLACE_IN_ORDER ? tries + 2
                                            : PLACE_IN_ORDER + 2 + randombytes_uniform(1u << 30);
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

/* The txn's partial becomes a whole file (inside its transaction). Its row
 * must still be there as this item's partial: gone (freed by mistake) or
 * another's (its id taken again), the commit would show a file without
 * data — and be acknowledged — so it fails, and the item is fetched again. */
static chute_status mark_complete(cache_txn *t, uint64_t size)
{
    sqlite3_stmt *s = prep(t->db, "UPDATE data SET complete=1, size=? WHERE id=?"
                                  " AND peer=? AND item=? AND complete=0");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)size);
    sqlite3_bind_int64(s, 2, t->data);
    sqlite3_bind_text(s, 3, t->peer, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, t->item, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) return CHUTE_ERR_DB;
    return sqlite3_changes(t->db) == 1 ? CHUTE_OK : CHUTE_ERR_DB;
}

chute_status cache_item_commit(cache_txn *t, const chute_meta *m,
                               char *final_path, size_t cap)
{
    if (!t) return CHUTE_ERR_ARG;
    if (!m) { cache_item_abort(t); return CHUTE_ERR_ARG; }
    chute_status st = CHUTE_OK;
    /* The last piece, then every chunk on disk (the batch's commit), and
     * only then the one index transaction that shows the file. */
    if (t->fill) { st = write_chunk(t, t->buf, t->fill); t->fill = 0; }
    if (!st && t->total != m->size) st = CHUTE_ERR_MALFORMED;
    if (!st) st = chunkstore_commit(t->store);
    if (!st) st = db_exec(t->db, "BEGIN IMMEDIATE");
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
    if (!st) st = mark_complete(t, m->size);
    if (!st) {
        sqlite3_stmt *s = prep(t->db,
            "INSERT OR IGNORE INTO received(peer, item, at) "
            "SELECT peer, item, ? FROM data WHERE id=?");
        if (s) { sqlite3_bind_int64(s, 1, now); sqlite3_bind_int64(s, 2, t->data); }
        st = run(s);
    }
    if (!st) st = db_exec(t->db, "COMMIT");
    if (st) {
        if (!sqlite3_get_autocommit(t->db)) db_exec(t->db, "ROLLBACK");
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
    /* Whole chunks only: a resume starts at a chunk boundary. A batch
     * that cannot commit is rolled back: resumed from the one before. */
    (void)chunkstore_commit(t->store);
    txn_free(t);
}

void cache_item_abort(cache_txn *t)
{
    if (!t) return;
    chunkstore_rollback(t->store);
    /* Best effort: a partial that cannot be dropped now is dropped by the
     * next begin of the same item, or the next start. */
    (void)drop_data(t->db, t->store, t->data, t->peer, t->item);
    txn_free(t);
}

chute_status cache_drop_partials(cache *c, cache_keep_fn keep, void *arg)
{
    if (!c) return CHUTE_ERR_ARG;
    chunkstore *chunks = NULL;
    chute_status st = chunkstore_open_writer(c->data_path, &chunks);
    if (st) return st;
    pthread_mutex_lock(&c->mu);
    sqlite3_stmt *s = prep(c->db, "SELECT id, peer, item FROM data WHERE complete=0");
    if (!s) st = CHUTE_ERR_DB;
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
    for (size_t i = 0; !st && i < n; i++) st = drop_data(c->db, chunks, drop[i], NULL, NULL);
    free(drop);
    pthread_mutex_unlock(&c->mu);
    chunkstore_close(chunks);
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

/* One more open of data row `data` (see held). */
static chute_status hold(const cache *c, int64_t data)
{
    chute_status st = CHUTE_OK;
    pthread_mutex_lock(&held_mu);
    size_t i = held_find(c, data);
    if (i < n_held) {
        held[i].opens++;
    } else {
        if (n_held == cap_held) {
            size_t cap = cap_held ? 2 * cap_held : 8;
            held_data *h = realloc(held, cap * sizeof *h);
            if (h) { held = h; cap_held = cap; }
        }
        if (n_held < cap_held) held[n_held++] = (held_data){c->dev, c->ino, data, 1};
        else st = CHUTE_ERR_NOMEM;
    }
    pthread_mutex_unlock(&held_mu);
    return st;
}

chute_status cache_open_file(cache *c, const char *peer, const char *path,
                             cache_node *out)
{
    if (!c || !peer || !path || !out) return CHUTE_ERR_ARG;
    pthread_mutex_lock(&c->mu);
    chute_status st = walk(c, peer, path, out);
    /* Held before mu goes: once removed (under mu) it cannot be opened. */
    if (!st && !out->is_dir && out->data) st = hold(c, out->data);
    pthread_mutex_unlock(&c->mu);
    return st;
}

void cache_close_file(cache *c, const cache_node *n)
{
    if (!c || !n || n->is_dir || !n->data) return;
    bool last = false, doomed = false;
    pthread_mutex_lock(&held_mu);
    size_t i = held_find(c, n->data);
    if (i < n_held && --held[i].opens == 0) {
        held[i] = held[--n_held];
        last = true;
    }
    pthread_mutex_unlock(&held_mu);
    if (last) {
        pthread_mutex_lock(&c->mu);
        sqlite3_stmt *s = prep(c->db, "SELECT 1 FROM doomed WHERE data=?");
        if (s) {
            sqlite3_bind_int64(s, 1, n->data);
            doomed = sqlite3_step(s) == SQLITE_ROW;
            sqlite3_finalize(s);
        }
        pthread_mutex_unlock(&c->mu);
    }
    if (doomed) reaper_wake(c);   /* removed while open: its chunks can go now */
}

chute_status cache_list(cache *c, const char *peer, int64_t dir,
                        cache_list_fn fn, void *arg)
{
    if (!c || !peer || !fn) return CHUTE_ERR_ARG;
    pthread_mutex_lock(&c->mu);
    sqlite3_stmt *s = prep(c->db,
        "SELECT n.name, n.id, n.is_dir, n.size, n.mode, n.mtime_sec, n.mtime_nsec,"
        " coalesce(n.data,0), coalesce(d.store,1) FROM nodes n LEFT JOIN data d ON d.id=n.data"
        " WHERE n.peer=? AND n.parent=? ORDER BY n.name");
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
                .data_in_index = sqlite3_column_int(s, 8) == STORE_INDEX,
            };
            if (fn((const char *)sqlite3_column_text(s, 0), &n, arg)) { rc = SQLITE_DONE; break; }
        }
        st = rc == SQLITE_DONE ? CHUTE_OK : CHUTE_ERR_DB;
        sqlite3_finalize(s);
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

chute_status cache_each_peer(cache *c, void (*fn)(const char *peer, void *arg), void *arg)
{
    if (!c || !fn) return CHUTE_ERR_ARG;
    pthread_mutex_lock(&c->mu);
    /* DISTINCT walks the UNIQUE(peer, parent, name) index */
    sqlite3_stmt *s = prep(c->db, "SELECT DISTINCT peer FROM nodes ORDER BY peer");
    chute_status st = CHUTE_ERR_DB;
    if (s) {
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            fn((const char *)sqlite3_column_text(s, 0), arg);
        st = rc == SQLITE_DONE ? CHUTE_OK : CHUTE_ERR_DB;
        sqlite3_finalize(s);
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

chute_status cache_peer_holds(cache *c, const char *peer, bool *holds)
{
    if (!c || !peer || !holds) return CHUTE_ERR_ARG;
    pthread_mutex_lock(&c->mu);
    sqlite3_stmt *s = prep(c->db, "SELECT 1 FROM nodes WHERE peer=? LIMIT 1");
    chute_status st = CHUTE_ERR_DB;
    if (s) {
        sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
            *holds = rc == SQLITE_ROW;
            st = CHUTE_OK;
        }
        sqlite3_finalize(s);
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

chute_status cache_read(cache *c, const cache_node *n, uint64_t off,
                        void *buf, size_t len, size_t *got)
{
    if (!c || !n || !got || (!buf && len)) return CHUTE_ERR_ARG;
    *got = 0;
    if (n->is_dir) return CHUTE_ERR_ARG;
    if (off >= n->size || len == 0) return CHUTE_OK;
    pthread_mutex_lock(&c->read_mu);
    chunkstore **from = n->data_in_index ? &c->legacy : &c->store;
    chute_status st = *from ? CHUTE_OK
                    : n->data_in_index ? chunkstore_open_legacy_reader(c->path, from)
                    : chunkstore_open_reader(c->data_path, from);
    if (!st) st = chunkstore_read(*from, n->data, n->size, off, buf, len, got);
    pthread_mutex_unlock(&c->read_mu);
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
/* The last component of path, its parent in parent; NULL if the parent
 * does not fit (cut, it could name another folder). */
static const char *split_base(const char *path, char *parent, size_t cap)
{
    const char *slash = strrchr(path, '/');
    size_t pl = slash ? (size_t)(slash - path) : 0;
    if (pl >= cap) return NULL;
    memcpy(parent, path, pl);
    parent[pl] = '\0';
    return slash ? slash + 1 : path;
}

chute_status cache_rename(cache *c, const char *peer, const char *from,
                          const char *to, bool noreplace)
{
    if (!c || !peer || !from || !to) return CHUTE_ERR_ARG;
    char parent[META_PATH_MAX + 1];
    const char *base = split_base(to, parent, sizeof parent);
    if (!base || strlen(base) > NAMES_MAX) return CHUTE_ERR_LIMIT;
    if (!*base) return CHUTE_ERR_ARG;
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
            if (noreplace) st = CHUTE_ERR_EXISTS;
            else if (dst.is_dir != src.is_dir) st = CHUTE_ERR_ARG;
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
