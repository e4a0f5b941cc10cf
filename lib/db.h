/* db.h — opening SQLite the way Chute wants it: synchronous=FULL (a commit
 * that returned is on disk: "close() returning 0 means durably queued"
 * rests on it), a busy timeout, foreign keys on, and WAL unless the caller
 * asks for a rollback journal (see db_journal). */
#ifndef CHUTE_DB_H
#define CHUTE_DB_H

#include <sqlite3.h>
#include <stdatomic.h>

#include "status.h"

/* Open (creating) path and run schema_sql (idempotent CREATE ... IF NOT
 * EXISTS statements). The handle is serialized (SQLITE_OPEN_FULLMUTEX). */
chute_status db_open(const char *path, const char *schema_sql, sqlite3 **out);

/* WAL lets readers run beside a writer but writes every byte twice (log,
 * then checkpoint). A rollback journal writes new pages once — only the
 * pages a transaction overwrites are journaled — which is what a store of
 * large appended blobs wants; readers then wait out each commit (the busy
 * timeout). Every connection to one file must ask for the same mode. */
typedef enum {
    DB_JOURNAL_WAL = 0,
    DB_JOURNAL_ROLLBACK,     /* kept between commits, its header zeroed */
    /* Emptied at every commit: a rollback journal holds the pages a
     * transaction changed as they were before, deleted rows and all, and
     * one kept would keep them (for a file of secrets: the chunk file). */
    DB_JOURNAL_TRUNCATE,
} db_journal;
chute_status db_open_journal(const char *path, const char *schema_sql,
                             db_journal journal, sqlite3 **out);

/* db_open_journal, and each time the connection waits for a lock (the
 * busy timeout), from its first statement on, it sets *waiting to 1 first:
 * so a writer that holds a file for long (chunkstore.h) can learn that
 * someone waits and let go. */
chute_status db_open_signal(const char *path, const char *schema_sql, db_journal journal,
                            atomic_int *waiting, sqlite3 **out);

/* Run a statement list without results; CHUTE_ERR_DB on failure. */
chute_status db_exec(sqlite3 *db, const char *sql);

#endif
