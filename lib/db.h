/* db.h — opening SQLite the one way Chute wants it: WAL, synchronous=FULL
 * (a commit that returned is on disk: "close() returning 0 means durably
 * queued" rests on it), a busy timeout, foreign keys on. */
#ifndef CHUTE_DB_H
#define CHUTE_DB_H

#include <sqlite3.h>

#include "status.h"

/* Open (creating) path and run schema_sql (idempotent CREATE ... IF NOT
 * EXISTS statements). The handle is serialized (SQLITE_OPEN_FULLMUTEX). */
chute_status db_open(const char *path, const char *schema_sql, sqlite3 **out);

/* Run a statement list without results; CHUTE_ERR_DB on failure. */
chute_status db_exec(sqlite3 *db, const char *sql);

#endif
