/* db.c — see db.h. */
#include "db.h"

#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

#define BUSY_TIMEOUT_MS 10000

chute_status db_exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? CHUTE_OK
                                                                : CHUTE_ERR_DB;
}

/* SQLite's own busy handler sleeps 1, 2, 5 ... 100 ms between tries, so
 * a writer waiting for a reader that takes a millisecond loses tens of
 * them. Inbox reads and commits meet that way all the time: try again
 * after 0.2 ms at first, backing off to 10 ms, for up to 10 s. */
static int busy_wait(void *arg, int tries)
{
    /* A waiting reader tells the writer (db_busy_signal). */
    if (arg) atomic_store((atomic_int *)arg, 1);
    long us = tries < 50 ? 200 : tries < 100 ? 1000 : 10000;
    long waited = tries < 50 ? tries * 200L : tries < 100 ? 10000L + (tries - 50) * 1000L
                                                          : 60000L + (tries - 100) * 10000L;
    if (waited >= BUSY_TIMEOUT_MS * 1000L) return 0;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = us * 1000L};
    nanosleep(&ts, NULL);
    return 1;
}

chute_status db_open(const char *path, const char *schema_sql, sqlite3 **out)
{
    return db_open_journal(path, schema_sql, DB_JOURNAL_WAL, out);
}

chute_status db_open_journal(const char *path, const char *schema_sql,
                             db_journal journal, sqlite3 **out)
{
    return db_open_signal(path, schema_sql, journal, NULL, out);
}

chute_status db_open_signal(const char *path, const char *schema_sql, db_journal journal,
                            atomic_int *waiting, sqlite3 **out)
{
    if (!path || !out) return CHUTE_ERR_ARG;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                 SQLITE_OPEN_FULLMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        sqlite3_close(db);
        return rc == SQLITE_NOMEM ? CHUTE_ERR_NOMEM : CHUTE_ERR_DB;
    }
    sqlite3_busy_handler(db, busy_wait, waiting);
    /* PERSIST rather than TRUNCATE or DELETE: the journal keeps its blocks
     * from one commit to the next, where truncating it made every commit
     * free them (a discard, on a disk mounted so) and the next allocate
     * them again, so its fsync had metadata and the inode to write too
     * (measured: ~10% off a 1 GiB arrival end to end). Its header is zeroed
     * and synced at each commit; 16 MiB of it at most stays. Leaving WAL
     * (a file from an older version) needs the only connection; if another
     * holds it, the file stays WAL — slower, still correct — and a later
     * first open converts it. TRUNCATE gives those blocks back at each
     * commit, and with them what the journal held: the chunk file's
     * appends journal ~100 KiB a batch, and a 1 GiB arrival into the cache
     * measured the same with it (0.69 s vs 0.71 s, median of six). */
    if (journal == DB_JOURNAL_ROLLBACK)
        (void)db_exec(db, "PRAGMA journal_mode=PERSIST; PRAGMA journal_size_limit=16777216");
    else if (journal == DB_JOURNAL_TRUNCATE)
        (void)db_exec(db, "PRAGMA journal_mode=TRUNCATE");
    if ((journal == DB_JOURNAL_WAL && db_exec(db, "PRAGMA journal_mode=WAL") != CHUTE_OK) ||
        db_exec(db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;") != CHUTE_OK ||
        (schema_sql && db_exec(db, schema_sql) != CHUTE_OK)) {
        sqlite3_close(db);
        return CHUTE_ERR_DB;
    }
    *out = db;
    return CHUTE_OK;
}
