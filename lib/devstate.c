/* devstate.c — the device state database (schema, migrations, records). */
#include "devstate.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

struct devstate {
    sqlite3 *db;
};

/* Migration i brings user_version from i to i + 1. Append, never edit:
 * a released step is history that old files are replayed through. */
static const char *const migrations[] = {
    /* 0 → 1 */
    "CREATE TABLE device ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  name TEXT NOT NULL,"
    "  identity TEXT NOT NULL,"
    "  recipient TEXT NOT NULL,"
    "  relay_url TEXT NOT NULL,"
    "  cacert TEXT NOT NULL DEFAULT '',"
    "  pin TEXT NOT NULL DEFAULT '',"
    "  inbox TEXT NOT NULL,"
    "  owner_token TEXT NOT NULL,"
    "  created INTEGER NOT NULL);"
    "CREATE TABLE peers ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  device_name TEXT NOT NULL,"
    "  recipient TEXT NOT NULL,"
    "  relay_url TEXT NOT NULL,"
    "  inbox TEXT NOT NULL,"
    "  send_token TEXT NOT NULL,"
    "  granted_sender TEXT NOT NULL,"
    "  link_key BLOB NOT NULL CHECK (length(link_key) = 32),"
    "  paired_at INTEGER NOT NULL,"
    "  gone_at INTEGER NOT NULL DEFAULT 0);",
    /* 1 → 2: a private relay wants its access token for every new inbox
     * and pairing (PROTOCOL §6.1). */
    "ALTER TABLE device ADD COLUMN access_token TEXT NOT NULL DEFAULT '';",
    /* 2 → 3: folder names of unpaired peers, with whose they were. The
     * mount keeps an unpaired peer's queue and received files under its
     * folder name: only the same device (recipient) may have it again. */
    "CREATE TABLE past_peers ("
    "  name TEXT PRIMARY KEY,"
    "  recipient TEXT NOT NULL,"
    "  unpaired_at INTEGER NOT NULL);",
};
#define MIGRATION_COUNT (sizeof migrations / sizeof migrations[0])

_Static_assert(MIGRATION_COUNT == DEVSTATE_SCHEMA_VERSION,
               "one migration per schema version");

chute_status devstate_resolve_dir(const char *dir_opt, char *out, size_t cap)
{
    const char *env;
    int n;
    if (dir_opt && *dir_opt)
        n = snprintf(out, cap, "%s", dir_opt);
    else if ((env = getenv("CHUTE_HOME")) && *env)
        n = snprintf(out, cap, "%s", env);
    else if ((env = getenv("XDG_DATA_HOME")) && *env == '/')
        n = snprintf(out, cap, "%s/chute", env);
    else if ((env = getenv("HOME")) && *env)
        n = snprintf(out, cap, "%s/.local/share/chute", env);
    else
        return CHUTE_ERR_NOT_FOUND;
    return (n < 0 || (size_t)n >= cap) ? CHUTE_ERR_ARG : CHUTE_OK;
}

chute_status devstate_dir_usable(const char *dir)
{
    struct stat sb;
    if (!dir || !*dir)
        return CHUTE_ERR_ARG;
    if (stat(dir, &sb) != 0)
        return errno == ENOENT ? CHUTE_OK : CHUTE_ERR_IO;
    if (!S_ISDIR(sb.st_mode)) {
        errno = ENOTDIR;
        return CHUTE_ERR_IO;
    }
    /* As ssh with ~/.ssh: another user who can write the folder can swap
     * state.db for one of theirs, or make it first. Refuse; never chmod a
     * folder we did not make (it may be ~ or /tmp). */
    if (sb.st_uid != geteuid() || (sb.st_mode & (S_IWGRP | S_IWOTH)))
        return CHUTE_ERR_REFUSED;
    return CHUTE_OK;
}

/* mkdir -p: the folders it makes get 0700 for the last component (parents
 * 0755, as usual for ~/.local/share); an existing last component keeps its
 * mode if devstate_dir_usable accepts it. */
static chute_status make_dirs(const char *dir)
{
    char path[DEVSTATE_PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return CHUTE_ERR_ARG;
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return CHUTE_ERR_IO;
        *p = '/';
    }
    if (mkdir(path, 0700) == 0)
        return CHUTE_OK;
    if (errno != EEXIST)
        return CHUTE_ERR_IO;
    return devstate_dir_usable(path);
}

static chute_status exec_sql(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? CHUTE_OK
                                                                 : CHUTE_ERR_DB;
}

static chute_status migrate(sqlite3 *db)
{
    if (exec_sql(db, "BEGIN IMMEDIATE") != CHUTE_OK)
        return CHUTE_ERR_DB;
    sqlite3_stmt *q = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        version = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    chute_status st = CHUTE_OK;
    if (version < 0)
        st = CHUTE_ERR_DB;
    else if (version > DEVSTATE_SCHEMA_VERSION)
        st = CHUTE_ERR_UNSUPPORTED;
    for (int v = version; st == CHUTE_OK && v < DEVSTATE_SCHEMA_VERSION; v++)
        st = exec_sql(db, migrations[v]);
    if (st == CHUTE_OK && version < DEVSTATE_SCHEMA_VERSION) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", DEVSTATE_SCHEMA_VERSION);
        st = exec_sql(db, sql);
    }
    if (st == CHUTE_OK)
        st = exec_sql(db, "COMMIT");
    if (st != CHUTE_OK)
        exec_sql(db, "ROLLBACK");
    return st;
}

chute_status devstate_open(const char *dir, int create, devstate **out)
{
    if (!dir || !*dir || !out)
        return CHUTE_ERR_ARG;
    *out = NULL;
    char path[DEVSTATE_PATH_MAX];
    if (snprintf(path, sizeof path, "%s/state.db", dir) >= (int)sizeof path)
        return CHUTE_ERR_ARG;
    if (create) {
        chute_status st = make_dirs(dir);
        if (st != CHUTE_OK)
            return st;
        /* Create the file ourselves so it is 0600 from its first byte;
         * SQLite gives its -wal and -shm files the same mode. */
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return CHUTE_ERR_IO;
        int bad = fchmod(fd, 0600) != 0;
        if (close(fd) != 0 || bad)
            return CHUTE_ERR_IO;
    } else if (access(path, F_OK) != 0) {
        return errno == ENOENT ? CHUTE_ERR_NOT_FOUND : CHUTE_ERR_IO;
    } else {
        /* Every open, not only the first: a folder made writable for
         * others since holds keys another user could swap. */
        chute_status st = devstate_dir_usable(dir);
        if (st != CHUTE_OK)
            return st;
    }

    devstate *ds = calloc(1, sizeof *ds);
    if (!ds)
        return CHUTE_ERR_NOMEM;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &ds->db, flags, NULL) != SQLITE_OK) {
        devstate_close(ds);
        return CHUTE_ERR_DB;
    }
    sqlite3_busy_timeout(ds->db, 5000);
    chute_status st = exec_sql(ds->db, "PRAGMA journal_mode = WAL;"
                                       "PRAGMA synchronous = FULL;"
                                       "PRAGMA foreign_keys = ON;"
                                       "PRAGMA secure_delete = ON;");
    if (st == CHUTE_OK)
        st = migrate(ds->db);
    if (st != CHUTE_OK) {
        devstate_close(ds);
        return st;
    }
    *out = ds;
    return CHUTE_OK;
}

void devstate_close(devstate *ds)
{
    if (!ds)
        return;
    sqlite3_close(ds->db);
    free(ds);
}

sqlite3 *devstate_db(devstate *ds) { return ds ? ds->db : NULL; }

void devstate_device_wipe(devstate_device *d)
{
    if (d)
        sodium_memzero(d, sizeof *d);
}

void devstate_peer_wipe(devstate_peer *p)
{
    if (p)
        sodium_memzero(p, sizeof *p);
}

/* Copy column i (text) into dst[cap]; a NULL or over-long value is a
 * corrupt database. */
static chute_status col_text(sqlite3_stmt *q, int i, char *dst, size_t cap)
{
    const unsigned char *s = sqlite3_column_text(q, i);
    int n = sqlite3_column_bytes(q, i);
    if (!s || n < 0 || (size_t)n >= cap)
        return CHUTE_ERR_DB;
    memcpy(dst, s, (size_t)n);
    dst[n] = '\0';
    return CHUTE_OK;
}

chute_status devstate_get_device(devstate *ds, devstate_device *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(ds->db,
            "SELECT name, identity, recipient, relay_url, cacert, pin, inbox,"
            " owner_token, created, access_token FROM device WHERE id = 1", -1, &q, NULL) != SQLITE_OK)
        return CHUTE_ERR_DB;
    chute_status st;
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        st = CHUTE_ERR_NOT_FOUND;
    } else if (rc != SQLITE_ROW) {
        st = CHUTE_ERR_DB;
    } else {
        st = col_text(q, 0, out->name, sizeof out->name);
        if (!st) st = col_text(q, 1, out->identity, sizeof out->identity);
        if (!st) st = col_text(q, 2, out->recipient, sizeof out->recipient);
        if (!st) st = col_text(q, 3, out->relay_url, sizeof out->relay_url);
        if (!st) st = col_text(q, 4, out->cacert, sizeof out->cacert);
        if (!st) st = col_text(q, 5, out->pin, sizeof out->pin);
        if (!st) st = col_text(q, 6, out->inbox, sizeof out->inbox);
        if (!st) st = col_text(q, 7, out->owner_token, sizeof out->owner_token);
        out->created = sqlite3_column_int64(q, 8);
        if (!st) st = col_text(q, 9, out->access_token, sizeof out->access_token);
    }
    sqlite3_finalize(q);
    if (st != CHUTE_OK)
        devstate_device_wipe(out);
    return st;
}

chute_status devstate_set_device(devstate *ds, const devstate_device *d)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(ds->db,
            "INSERT INTO device (id, name, identity, recipient, relay_url, cacert,"
            " pin, inbox, owner_token, created, access_token)"
            " VALUES (1,?,?,?,?,?,?,?,?,?,?)",
            -1, &q, NULL) != SQLITE_OK)
        return CHUTE_ERR_DB;
    sqlite3_bind_text(q, 1, d->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, d->identity, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, d->recipient, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, d->relay_url, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 5, d->cacert, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 6, d->pin, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 7, d->inbox, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 8, d->owner_token, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 9, d->created ? d->created : (long long)time(NULL));
    sqlite3_bind_text(q, 10, d->access_token, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc == SQLITE_DONE)
        return CHUTE_OK;
    return sqlite3_extended_errcode(ds->db) == SQLITE_CONSTRAINT_PRIMARYKEY
               ? CHUTE_ERR_EXISTS : CHUTE_ERR_DB;
}

/* Run sql, an UPDATE of the device row with one text parameter. */
static chute_status update_device(devstate *ds, const char *sql, const char *value)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(ds->db, sql, -1, &q, NULL) != SQLITE_OK)
        return CHUTE_ERR_DB;
    sqlite3_bind_text(q, 1, value, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE)
        return CHUTE_ERR_DB;
    return sqlite3_changes(ds->db) == 1 ? CHUTE_OK : CHUTE_ERR_NOT_FOUND;
}

chute_status devstate_set_access_token(devstate *ds, const char *token)
{
    if (!token || strlen(token) >= DEVSTATE_ACCESS_TOKEN_MAX)
        return CHUTE_ERR_ARG;
    return update_device(ds, "UPDATE device SET access_token = ? WHERE id = 1", token);
}

chute_status devstate_set_device_name(devstate *ds, const char *name)
{
    if (!name || !peername_ok(name))
        return CHUTE_ERR_ARG;
    return update_device(ds, "UPDATE device SET name = ? WHERE id = 1", name);
}

#define PEER_COLUMNS "name, device_name, recipient, relay_url, inbox, send_token," \
                     " granted_sender, link_key, paired_at, gone_at"

static chute_status read_peer(sqlite3_stmt *q, devstate_peer *p)
{
    chute_status st = col_text(q, 0, p->name, sizeof p->name);
    if (!st) st = col_text(q, 1, p->device_name, sizeof p->device_name);
    if (!st) st = col_text(q, 2, p->recipient, sizeof p->recipient);
    if (!st) st = col_text(q, 3, p->relay_url, sizeof p->relay_url);
    if (!st) st = col_text(q, 4, p->inbox, sizeof p->inbox);
    if (!st) st = col_text(q, 5, p->send_token, sizeof p->send_token);
    if (!st) st = col_text(q, 6, p->granted_sender, sizeof p->granted_sender);
    if (!st) {
        const void *k = sqlite3_column_blob(q, 7);
        if (!k || sqlite3_column_bytes(q, 7) != DEVSTATE_LINK_KEY_BYTES)
            st = CHUTE_ERR_DB;
        else
            memcpy(p->link_key, k, DEVSTATE_LINK_KEY_BYTES);
    }
    p->paired_at = sqlite3_column_int64(q, 8);
    p->gone_at = sqlite3_column_int64(q, 9);
    return st;
}

/* Is name a current peer's folder, or an unpaired one's that was not
 * `recipient`'s (its queue and inbox stay with that device)? */
static int name_taken(sqlite3 *db, const char *name, const char *recipient,
                      chute_status *st)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM peers WHERE name = ?1 UNION ALL "
                           "SELECT 1 FROM past_peers WHERE name = ?1 AND recipient <> ?2",
                           -1, &q, NULL) != SQLITE_OK) {
        *st = CHUTE_ERR_DB;
        return 1;
    }
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, recipient, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        *st = CHUTE_ERR_DB;
    return rc == SQLITE_ROW;
}

chute_status devstate_add_peer(devstate *ds, devstate_peer *p)
{
    if (!peername_ok(p->device_name))
        return CHUTE_ERR_ARG;
    /* Choosing the name and inserting must not interleave with another
     * pairtool doing the same. */
    if (exec_sql(ds->db, "BEGIN IMMEDIATE") != CHUTE_OK)
        return CHUTE_ERR_DB;
    chute_status st = CHUTE_OK;
    bool back = false;
    sqlite3_stmt *q = NULL;
    /* The same device back, whatever it calls itself now: its old folder,
     * with what is queued and received there, if no peer has it since. */
    if (sqlite3_prepare_v2(ds->db, "SELECT name FROM past_peers WHERE recipient = ? AND "
                           "name NOT IN (SELECT name FROM peers) "
                           "ORDER BY unpaired_at DESC LIMIT 1", -1, &q, NULL) != SQLITE_OK)
        st = CHUTE_ERR_DB;
    else {
        sqlite3_bind_text(q, 1, p->recipient, -1, SQLITE_STATIC);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW)
            st = col_text(q, 0, p->name, sizeof p->name);
        else if (rc != SQLITE_DONE)
            st = CHUTE_ERR_DB;
        back = rc == SQLITE_ROW && st == CHUTE_OK;
    }
    sqlite3_finalize(q);
    q = NULL;
    unsigned n;
    for (n = 1; st == CHUTE_OK && !back && n <= 999; n++) {
        peername_candidate(p->device_name, n, p->name, sizeof p->name);
        if (!name_taken(ds->db, p->name, p->recipient, &st) || st != CHUTE_OK)
            break;
    }
    if (st == CHUTE_OK && !back && n > 999)
        st = CHUTE_ERR_LIMIT;
    /* The same device back: its old folder is current again. */
    if (st == CHUTE_OK &&
        (sqlite3_prepare_v2(ds->db, "DELETE FROM past_peers WHERE name = ?", -1, &q,
                            NULL) != SQLITE_OK ||
         sqlite3_bind_text(q, 1, p->name, -1, SQLITE_STATIC) != SQLITE_OK ||
         sqlite3_step(q) != SQLITE_DONE))
        st = CHUTE_ERR_DB;
    sqlite3_finalize(q);
    q = NULL;
    if (st == CHUTE_OK &&
        sqlite3_prepare_v2(ds->db, "INSERT INTO peers (" PEER_COLUMNS
                           ") VALUES (?,?,?,?,?,?,?,?,?,0)", -1, &q, NULL) != SQLITE_OK)
        st = CHUTE_ERR_DB;
    if (st == CHUTE_OK) {
        sqlite3_bind_text(q, 1, p->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, p->device_name, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, p->recipient, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 4, p->relay_url, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 5, p->inbox, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 6, p->send_token, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 7, p->granted_sender, -1, SQLITE_STATIC);
        sqlite3_bind_blob(q, 8, p->link_key, DEVSTATE_LINK_KEY_BYTES, SQLITE_STATIC);
        if (!p->paired_at)
            p->paired_at = (long long)time(NULL);
        sqlite3_bind_int64(q, 9, p->paired_at);
        if (sqlite3_step(q) != SQLITE_DONE)
            st = CHUTE_ERR_DB;
    }
    sqlite3_finalize(q);
    if (st == CHUTE_OK)
        st = exec_sql(ds->db, "COMMIT");
    if (st != CHUTE_OK)
        exec_sql(ds->db, "ROLLBACK");
    return st;
}

chute_status devstate_get_peer(devstate *ds, const char *name, devstate_peer *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(ds->db, "SELECT " PEER_COLUMNS " FROM peers WHERE name = ?",
                           -1, &q, NULL) != SQLITE_OK)
        return CHUTE_ERR_DB;
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    chute_status st = rc == SQLITE_ROW ? read_peer(q, out)
                    : rc == SQLITE_DONE ? CHUTE_ERR_NOT_FOUND : CHUTE_ERR_DB;
    sqlite3_finalize(q);
    if (st != CHUTE_OK)
        devstate_peer_wipe(out);
    return st;
}

chute_status devstate_find_peer_by_recipient(devstate *ds, const char *recipient,
                                             char name[PEERNAME_MAX + 1])
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(ds->db, "SELECT name FROM peers WHERE recipient = ?"
                           " ORDER BY paired_at, name LIMIT 1", -1, &q, NULL) != SQLITE_OK)
        return CHUTE_ERR_DB;
    sqlite3_bind_text(q, 1, recipient, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    chute_status st = rc == SQLITE_ROW ? col_text(q, 0, name, PEERNAME_MAX + 1)
                    : rc == SQLITE_DONE ? CHUTE_ERR_NOT_FOUND : CHUTE_ERR_DB;
    sqlite3_finalize(q);
    return st;
}

chute_status devstate_remove_peer(devstate *ds, const char *name)
{
    static const char *const steps[] = {
        /* its folder name stays the device's (see past_peers) */
        "INSERT OR REPLACE INTO past_peers (name, recipient, unpaired_at) "
        "SELECT name, recipient, ?2 FROM peers WHERE name = ?1",
        "DELETE FROM peers WHERE name = ?1",
    };
    if (exec_sql(ds->db, "BEGIN IMMEDIATE") != CHUTE_OK)
        return CHUTE_ERR_DB;
    chute_status st = CHUTE_OK;
    for (size_t i = 0; st == CHUTE_OK && i < sizeof steps / sizeof *steps; i++) {
        sqlite3_stmt *q;
        if (sqlite3_prepare_v2(ds->db, steps[i], -1, &q, NULL) != SQLITE_OK) {
            st = CHUTE_ERR_DB;
            break;
        }
        sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
        if (sqlite3_bind_parameter_count(q) == 2)
            sqlite3_bind_int64(q, 2, (sqlite3_int64)time(NULL));
        if (sqlite3_step(q) != SQLITE_DONE)
            st = CHUTE_ERR_DB;
        else if (i == 1 && sqlite3_changes(ds->db) != 1)
            st = CHUTE_ERR_NOT_FOUND;
        sqlite3_finalize(q);
    }
    if (st == CHUTE_OK)
        st = exec_sql(ds->db, "COMMIT");
    if (st != CHUTE_OK) {
        exec_sql(ds->db, "ROLLBACK");
        return st;
    }
    /* The deleted row's keys are zeroed (secure_delete) in the WAL's copy
     * of its page; until a checkpoint the main file keeps the old page, and
     * a running mount keeps connections open that would put it off to
     * unmount. Best effort: a busy reader only delays it. */
    sqlite3_wal_checkpoint_v2(ds->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    return CHUTE_OK;
}

chute_status devstate_mark_peer_gone(devstate *ds, const char *name)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(ds->db, "UPDATE peers SET gone_at = ? WHERE name = ? AND gone_at = 0",
                           -1, &q, NULL) != SQLITE_OK)
        return CHUTE_ERR_DB;
    sqlite3_bind_int64(q, 1, (long long)time(NULL));
    sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? CHUTE_OK : CHUTE_ERR_DB;
}

void devstate_peers_free(devstate_peer *peers, size_t count)
{
    if (!peers)
        return;
    sodium_memzero(peers, count * sizeof *peers);
    free(peers);
}

chute_status devstate_list_peers(devstate *ds, devstate_peer **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(ds->db, "SELECT " PEER_COLUMNS " FROM peers ORDER BY name",
                           -1, &q, NULL) != SQLITE_OK)
        return CHUTE_ERR_DB;
    devstate_peer *peers = NULL;
    size_t n = 0, cap = 0;
    chute_status st = CHUTE_OK;
    int rc = SQLITE_DONE;
    while (st == CHUTE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            devstate_peer *np = calloc(ncap, sizeof *np);
            if (!np) {
                st = CHUTE_ERR_NOMEM;
                break;
            }
            if (peers)
                memcpy(np, peers, n * sizeof *np);
            devstate_peers_free(peers, cap);
            peers = np;
            cap = ncap;
        }
        st = read_peer(q, &peers[n]);
        n++;
    }
    if (st == CHUTE_OK && rc != SQLITE_DONE)
        st = CHUTE_ERR_DB;
    sqlite3_finalize(q);
    if (st != CHUTE_OK) {
        devstate_peers_free(peers, cap);
        return st;
    }
    *out = peers;
    *count = n;
    return CHUTE_OK;
}

chute_status devstate_count_peers(devstate *ds, size_t *count)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(ds->db, "SELECT count(*) FROM peers", -1, &q, NULL) != SQLITE_OK)
        return CHUTE_ERR_DB;
    chute_status st = CHUTE_ERR_DB;
    if (sqlite3_step(q) == SQLITE_ROW) {
        *count = (size_t)sqlite3_column_int64(q, 0);
        st = CHUTE_OK;
    }
    sqlite3_finalize(q);
    return st;
}
