/* db.c — see db.h. */
#include "db.h"

#include <stddef.h>

chute_status db_exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? CHUTE_OK
                                                                : CHUTE_ERR_DB;
}

chute_status db_open(const char *path, const char *schema_sql, sqlite3 **out)
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
    sqlite3_busy_timeout(db, 10000);
    if (db_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                    "PRAGMA foreign_keys=ON;") != CHUTE_OK ||
        (schema_sql && db_exec(db, schema_sql) != CHUTE_OK)) {
        sqlite3_close(db);
        return CHUTE_ERR_DB;
    }
    *out = db;
    return CHUTE_OK;
}
