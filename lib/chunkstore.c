/* chunkstore.c — see chunkstore.h. */
#include "chunkstore.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "pagecache.h"
#include "prealloc.h"

static const char TABLES[] =
    "CREATE TABLE IF NOT EXISTS chunks (data INTEGER NOT NULL,"
    " idx INTEGER NOT NULL, bytes BLOB NOT NULL, PRIMARY KEY(data, idx));";
/* What a new file is made with. 16 KiB pages: a 64 KiB chunk is then 5
 * pages rather than 17, which measured ~30% less CPU per byte stored than
 * 4 KiB pages. Incremental auto_vacuum: pages freed can be given back to
 * the filesystem (chunkstore_shrink); without it the file stays as big as
 * it ever was. */
static const char NEW_FILE[] = "PRAGMA page_size=16384; PRAGMA auto_vacuum=INCREMENTAL";

/* A file made before auto_vacuum is rebuilt with it (VACUUM) only while
 * it holds at most this: VACUUM copies every live page twice and holds
 * the file locked all the while, from readers too, whose busy timeout is
 * 10 s; and its copy is made in memory (plaintext must not spill into a
 * temporary file elsewhere), which this bounds. */
#define MIGRATE_MAX_BYTES ((int64_t)16 << 20)

/* The writer's page cache: a batch spills past it (see chunkstore.h). */
#define WRITER_CACHE_KIB "-2048"
/* Write-behind: the batch's dirty pages start for the disk this often. */
#define WRITE_BEHIND_CHUNKS 8

/* What the connections of one file in this process share: an fd for
 * page-cache advice and block reservations, and the flag a waiting reader
 * raises. Closing any fd of a file drops every POSIX lock the process
 * holds on it, SQLite's too, so the fd is closed with the last of them,
 * when none of their connections is left. A full table only means no
 * advice (and no early commits for readers). */
#define SHARED_FILES 16
typedef struct {
    dev_t dev;
    ino_t ino;
    int fd;
    unsigned users;
    atomic_int reader_waiting;
} shared_file;
static shared_file shared_files[SHARED_FILES];
static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;

/* The entry of the file at path, made (and the file too, empty: an empty
 * file is an empty database) if there is none. */
static shared_file *shared_acquire(const char *path)
{
    struct stat sb;
    shared_file *f = NULL;
    pthread_mutex_lock(&shared_mu);
    int made = stat(path, &sb) == 0 ? -1 : open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (made >= 0 && fstat(made, &sb) != 0) { close(made); made = -1; }
    if (made >= 0 || stat(path, &sb) == 0) {
        shared_file *free_slot = NULL;
        for (int i = 0; i < SHARED_FILES && !f; i++) {
            shared_file *e = &shared_files[i];
            if (!e->users) {
                if (!free_slot) free_slot = e;
            } else if (e->dev == sb.st_dev && e->ino == sb.st_ino) {
                e->users++;
                f = e;
            }
        }
        int fd = made;
        made = -1;
        /* For writing (only fallocate writes through it: prealloc.h), or
         * for reading where the file is read-only to us. */
        if (f && fd >= 0) {   /* not reached: a file just made has no entry */
            made = fd;
        } else if (!f && free_slot &&
                   (fd >= 0 || (fd = open(path, O_RDWR | O_CLOEXEC)) >= 0 ||
                    (fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0)) {
            if (fstat(fd, &sb) == 0) {
                free_slot->dev = sb.st_dev;
                free_slot->ino = sb.st_ino;
            }
            free_slot->fd = fd;
            free_slot->users = 1;
            atomic_store(&free_slot->reader_waiting, 0);
            f = free_slot;
        } else {
            made = fd;
        }
    }
    /* Only a file no connection has yet: closing it drops no lock. */
    if (made >= 0) close(made);
    pthread_mutex_unlock(&shared_mu);
    return f;
}

static void shared_release(shared_file *f)
{
    if (!f) return;
    pthread_mutex_lock(&shared_mu);
    if (--f->users == 0) close(f->fd);
    pthread_mutex_unlock(&shared_mu);
}

struct chunkstore {
    sqlite3 *db;
    shared_file *file;            /* NULL: no advice, no signal */
    bool writer;
    sqlite3_stmt *insert;         /* the writer's chunk INSERT, prepared once */
    unsigned batch;               /* chunks in the open transaction */
    chute_status lost;            /* a batch that failed: see chunkstore.h */
    pagecache_stream stored;      /* [0, stored.released) left the page cache */
    off_t grown_to;               /* the file's size when blocks were last reserved */
};

static int advice_fd(const chunkstore *s)
{
    return s->file ? s->file->fd : -1;
}

static off_t file_size(const chunkstore *s)
{
    struct stat sb;
    return advice_fd(s) >= 0 && fstat(advice_fd(s), &sb) == 0 ? sb.st_size : -1;
}

/* One integer from a PRAGMA. */
static chute_status pragma_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) return CHUTE_ERR_DB;
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return rc == SQLITE_ROW ? CHUTE_OK : CHUTE_ERR_DB;
}

/* NEW_FILE takes effect only in a file with no table yet, and its
 * auto_vacuum on a file that has some opens a write transaction (which
 * would wait out a download's batch): asked of an empty file only. */
static chute_status make_schema(sqlite3 *db)
{
    int64_t pages = -1;
    chute_status st = pragma_int(db, "PRAGMA page_count", &pages);
    if (!st && pages == 0) st = db_exec(db, NEW_FILE);
    return st ? st : db_exec(db, TABLES);
}

static chute_status open_store(const char *path, bool writer, bool shared, chunkstore **out)
{
    if (!path || !out) return CHUTE_ERR_ARG;
    *out = NULL;
    chunkstore *s = calloc(1, sizeof *s);
    if (!s) return CHUTE_ERR_NOMEM;
    s->writer = writer;
    /* The file's entry first: a reader waits for a lock (and says so)
     * from its very first statement, the schema's. */
    s->file = shared ? shared_acquire(path) : NULL;
    /* Removed files' bytes must not outlive their delete: secure_delete
     * zeroes the freed pages in the file (on whatever SQLite's build says)
     * and a TRUNCATE journal keeps none of their old contents after the
     * commit — PERSIST kept them, plaintext, in inbox-data.db-journal. */
    chute_status st = db_open_signal(path, NULL,
                                     DB_JOURNAL_TRUNCATE,   /* the index's too */
                                     !writer && s->file ? &s->file->reader_waiting : NULL,
                                     &s->db);
    if (!st && (db_exec(s->db, "PRAGMA secure_delete=ON") != CHUTE_OK ||
                (st = make_schema(s->db)) != CHUTE_OK)) {
        sqlite3_close(s->db);
        st = CHUTE_ERR_DB;
    }
    if (st) { shared_release(s->file); free(s); return st; }
    if (writer) {
        /* A commit of NORMAL syncs the file as FULL does (rollback
         * journal); FULL only adds a sync of the journal's header. */
        st = db_exec(s->db, "PRAGMA synchronous=NORMAL; PRAGMA cache_size=" WRITER_CACHE_KIB);
        if (!st && sqlite3_prepare_v2(s->db, "INSERT INTO chunks(data, idx, bytes) VALUES(?,?,?)",
                                      -1, &s->insert, NULL) != SQLITE_OK)
            st = CHUTE_ERR_DB;
        off_t size = file_size(s);
        s->stored.released = s->grown_to = size > 0 ? size : 0;
    }
    if (st) { chunkstore_close(s); return st; }
    *out = s;
    return CHUTE_OK;
}

chute_status chunkstore_open_reader(const char *path, chunkstore **out)
{
    return open_store(path, false, true, out);
}

chute_status chunkstore_open_legacy_reader(const char *path, chunkstore **out)
{
    return open_store(path, false, false, out);
}

chute_status chunkstore_open_writer(const char *path, chunkstore **out)
{
    return open_store(path, true, true, out);
}

void chunkstore_close(chunkstore *s)
{
    if (!s) return;
    chunkstore_rollback(s);
    sqlite3_finalize(s->insert);
    sqlite3_close(s->db);
    shared_release(s->file);   /* after the connection: see shared_file */
    free(s);
}

/* ---- reading ------------------------------------------------------------ */

chute_status chunkstore_read(chunkstore *s, int64_t data, uint64_t size, uint64_t off,
                             void *buf, size_t len, size_t *got)
{
    if (!s || !got || (!buf && len)) return CHUTE_ERR_ARG;
    *got = 0;
    if (off >= size || len == 0) return CHUTE_OK;
    if (len > size - off) len = (size_t)(size - off);
    int64_t first = (int64_t)(off / CHUNKSTORE_CHUNK);
    int64_t last = (int64_t)((off + len - 1) / CHUNKSTORE_CHUNK);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT idx, bytes FROM chunks WHERE data=? "
                                  "AND idx BETWEEN ? AND ? ORDER BY idx", -1, &q, NULL) != SQLITE_OK)
        return CHUTE_ERR_DB;
    sqlite3_bind_int64(q, 1, data);
    sqlite3_bind_int64(q, 2, first);
    sqlite3_bind_int64(q, 3, last);
    chute_status st = CHUTE_OK;
    int64_t want = first;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        int64_t idx = sqlite3_column_int64(q, 0);
        if (idx != want) { st = CHUTE_ERR_IO; break; }  /* a hole */
        const uint8_t *b = sqlite3_column_blob(q, 1);
        uint64_t from = off + *got - (uint64_t)idx * CHUNKSTORE_CHUNK;
        size_t avail = (size_t)sqlite3_column_bytes(q, 1);
        if (from >= avail) { st = CHUTE_ERR_IO; break; }
        size_t n = avail - (size_t)from;
        if (n > len - *got) n = len - *got;
        memcpy((uint8_t *)buf + *got, b + from, n);
        *got += n;
        want++;
    }
    if (!st && rc != SQLITE_DONE && rc != SQLITE_ROW) st = CHUTE_ERR_DB;
    if (!st && *got != len) st = CHUTE_ERR_IO;
    sqlite3_finalize(q);
    return st;
}

/* ---- writing -------------------------------------------------------------- */

static _Atomic unsigned batch_override;

void chunkstore_set_batch(unsigned chunks)
{
    atomic_store(&batch_override, chunks);
}

static unsigned batch_limit(void)
{
    unsigned n = atomic_load(&batch_override);
    return n ? n : CHUNKSTORE_BATCH;
}

/* Blocks are reserved ahead of a file growing at its end (prealloc.h). */
static void reserve_ahead(chunkstore *s, off_t size)
{
    if (size > s->grown_to) {
        prealloc_grew(advice_fd(s), s->grown_to, size);
        s->grown_to = size;
    }
}

/* The batch's pages so far start for the disk. */
static void write_behind(chunkstore *s)
{
    int fd = advice_fd(s);
    if (fd < 0) return;
    (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    reserve_ahead(s, file_size(s));
}

chute_status chunkstore_commit(chunkstore *s)
{
    if (!s || !s->writer) return CHUTE_ERR_ARG;
    if (s->lost || !s->batch) return s->lost;
    s->batch = 0;
    if (db_exec(s->db, "COMMIT") != CHUTE_OK) {
        chute_status st = sqlite3_errcode(s->db) == SQLITE_FULL ? CHUTE_ERR_LIMIT : CHUTE_ERR_DB;
        if (!sqlite3_get_autocommit(s->db)) db_exec(s->db, "ROLLBACK");
        return s->lost = st;
    }
    /* A reader that waited for this commit has its turn now: not a
     * reason to end the next batch early. */
    if (s->file) atomic_store(&s->file->reader_waiting, 0);
    /* Committed is synced: what the batch appended leaves the page cache. */
    off_t size = file_size(s);
    if (size > 0) {
        pagecache_synced(&s->stored, advice_fd(s), size);
        reserve_ahead(s, size);   /* for the next batch */
    }
    return CHUTE_OK;
}

void chunkstore_rollback(chunkstore *s)
{
    if (!s || !s->batch) return;
    s->batch = 0;
    db_exec(s->db, "ROLLBACK");
}

chute_status chunkstore_append(chunkstore *s, int64_t data, int64_t idx,
                               const void *bytes, size_t n)
{
    if (!s || !s->writer || !bytes || n == 0 || n > CHUNKSTORE_CHUNK) return CHUTE_ERR_ARG;
    if (s->lost) return s->lost;
    if (s->batch == 0 && db_exec(s->db, "BEGIN IMMEDIATE")) return CHUTE_ERR_DB;
    s->batch++;
    sqlite3_bind_int64(s->insert, 1, data);
    sqlite3_bind_int64(s->insert, 2, idx);
    sqlite3_bind_blob(s->insert, 3, bytes, (int)n, SQLITE_STATIC);
    int rc = sqlite3_step(s->insert);
    sqlite3_reset(s->insert);
    sqlite3_clear_bindings(s->insert);
    if (rc != SQLITE_DONE) {
        chunkstore_rollback(s);
        return s->lost = rc == SQLITE_FULL ? CHUTE_ERR_LIMIT : CHUTE_ERR_DB;
    }
    if (s->batch % WRITE_BEHIND_CHUNKS == 0) write_behind(s);
    bool waited = s->file && atomic_exchange(&s->file->reader_waiting, 0);
    if (s->batch >= batch_limit() || waited) return chunkstore_commit(s);
    return CHUTE_OK;
}

chute_status chunkstore_keep_prefix(chunkstore *s, int64_t data, uint64_t max,
                                    uint64_t *kept)
{
    if (!s || !kept || s->batch) return CHUTE_ERR_ARG;
    *kept = 0;
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT count(*), coalesce(max(idx) + 1, 0) FROM chunks "
                                  "WHERE data=?", -1, &q, NULL) != SQLITE_OK)
        return CHUTE_ERR_DB;
    sqlite3_bind_int64(q, 1, data);
    chute_status st = CHUTE_ERR_DB;
    if (sqlite3_step(q) == SQLITE_ROW) {
        int64_t count = sqlite3_column_int64(q, 0), end = sqlite3_column_int64(q, 1);
        uint64_t have = count == end ? (uint64_t)count : 0;   /* a gap: start over */
        *kept = have < max ? have : max;
        st = CHUTE_OK;
    }
    sqlite3_finalize(q);
    if (st) return st;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM chunks WHERE data=? AND idx>=?", -1, &q,
                           NULL) != SQLITE_OK)
        return CHUTE_ERR_DB;
    sqlite3_bind_int64(q, 1, data);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)*kept);
    st = sqlite3_step(q) == SQLITE_DONE ? CHUTE_OK : CHUTE_ERR_DB;
    sqlite3_finalize(q);
    return st;
}

chute_status chunkstore_delete(chunkstore *s, int64_t data, unsigned limit,
                               unsigned *deleted)
{
    if (!s || s->batch) return CHUTE_ERR_ARG;
    if (deleted) *deleted = 0;
    sqlite3_stmt *q = NULL;
    const char *sql = limit
        ? "DELETE FROM chunks WHERE data=?1 AND idx IN (SELECT idx FROM chunks"
          " WHERE data=?1 ORDER BY idx LIMIT ?2)"
        : "DELETE FROM chunks WHERE data=?1";
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) return CHUTE_ERR_DB;
    sqlite3_bind_int64(q, 1, data);
    if (limit) sqlite3_bind_int(q, 2, (int)limit);
    chute_status st = sqlite3_step(q) == SQLITE_DONE ? CHUTE_OK : CHUTE_ERR_DB;
    if (!st && deleted) *deleted = (unsigned)sqlite3_changes(s->db);
    sqlite3_finalize(q);
    return st;
}

/* ---- giving space back ------------------------------------------------------ */

/* A file an earlier version made (no auto_vacuum) is rebuilt as a new
 * one would be made, once, when it holds little enough
 * (MIGRATE_MAX_BYTES): its free pages come back then, and from then on
 * step by step. */
static chute_status migrate(chunkstore *s, int64_t page_size, int64_t pages, int64_t free_pages)
{
    if ((pages - free_pages) * page_size > MIGRATE_MAX_BYTES) return CHUTE_OK;
    chute_status st = db_exec(s->db, NEW_FILE);
    if (!st) st = db_exec(s->db, "PRAGMA temp_store=MEMORY");
    if (!st) st = db_exec(s->db, "VACUUM");
    (void)db_exec(s->db, "PRAGMA temp_store=DEFAULT");
    return st;
}

chute_status chunkstore_shrink(chunkstore *s, unsigned pages, bool *more)
{
    if (!s || !s->writer || !more || !pages || s->batch) return CHUTE_ERR_ARG;
    *more = false;
    int64_t mode = 0, page_size = 0, count = 0, free_pages = 0;
    chute_status st = pragma_int(s->db, "PRAGMA auto_vacuum", &mode);
    if (!st) st = pragma_int(s->db, "PRAGMA page_size", &page_size);
    if (!st) st = pragma_int(s->db, "PRAGMA page_count", &count);
    if (!st) st = pragma_int(s->db, "PRAGMA freelist_count", &free_pages);
    if (st || free_pages == 0) return st;
    if (mode == 0) return migrate(s, page_size, count, free_pages);
    if (mode != 2) return CHUTE_OK;   /* FULL: SQLite gives pages back itself */
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA incremental_vacuum(%u)", pages);
    st = db_exec(s->db, sql);
    if (!st) st = pragma_int(s->db, "PRAGMA freelist_count", &free_pages);
    if (!st) *more = free_pages > 0;
    return st;
}
