/* queue.c — the outgoing queue on SQLite; see queue.h for the states. */
#include "queue.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"

struct queue {
    sqlite3 *db;
    /* A connection of its own for the notes of what a request has sent:
     * it commits without an fsync (queue_set_sent), and the others must
     * never. Opened at the first note. */
    sqlite3 *notes;
    char *path;
    /* Serializes read-modify-write sequences (claim) across threads; the
     * single statements are atomic anyway. */
    pthread_mutex_t mu;
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS queue ("
    " id TEXT PRIMARY KEY, peer TEXT NOT NULL, path TEXT NOT NULL,"
    " state INTEGER NOT NULL, size INTEGER NOT NULL, blob_size INTEGER NOT NULL,"
    " progress INTEGER NOT NULL DEFAULT 0, mode INTEGER NOT NULL,"
    " mtime_sec INTEGER NOT NULL, mtime_nsec INTEGER NOT NULL,"
    " header_mac BLOB NOT NULL, meta BLOB NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '',"
    " next_attempt INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL,"
    " updated INTEGER NOT NULL, relay_cancel INTEGER NOT NULL DEFAULT 0,"
    " age_header BLOB, age_nonce BLOB, file_key BLOB,"
    " growing INTEGER NOT NULL DEFAULT 0, sent INTEGER NOT NULL DEFAULT 0,"
    " recipient TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX IF NOT EXISTS queue_by_path ON queue(peer, path, state);"
    "CREATE INDEX IF NOT EXISTS queue_by_state ON queue(state, created);";

#define COLS "id,peer,path,state,size,blob_size,progress,mode,mtime_sec," \
             "mtime_nsec,header_mac,meta,attempts,last_error,next_attempt," \
             "created,updated,relay_cancel,growing,sent,recipient"
#define ACTIVE "state IN (0,1,2)"
/* Active and sealed: what the outbox shows as queued at a path. A growing
 * row belongs to the open file that is sending it (queue.h). */
#define SEALED ACTIVE " AND growing=0"
/* A delivered or cancelled item's key is of no more use: forgotten, so a
 * copy of the relay's ciphertext and, later, of this file together do not
 * give the plaintext back. */
#define FORGET_KEY "age_header=NULL, age_nonce=NULL, file_key=NULL"

/* Every public call holds mu: the connection is shared by the mount's
 * threads, and a statement of one thread must never land inside another
 * thread's BEGIN ... COMMIT. */
#define STR_(x) #x
#define STR(x) STR_(x)
#define WAIT_MAX_TEXT STR(QUEUE_WAIT_MAX_S)

#define LOCK(q) pthread_mutex_lock(&(q)->mu)
#define UNLOCK(q) pthread_mutex_unlock(&(q)->mu)

static int64_t now_s(void) { return (int64_t)time(NULL); }

/* A queue made before items kept their plaintext (blob sealed at close)
 * lacks the age columns: add them, empty, so its rows still go (as .age);
 * one made before files were sent while written lacks `growing`, one
 * before progress was noted during a request `sent`, one before items
 * kept whom they were sealed for `recipient`. */
static chute_status migrate(sqlite3 *db)
{
    static const char *const cols[] = {"age_header", "age_nonce", "file_key", "growing", "sent",
                                       "recipient"};
    static const char *const types[] = {"BLOB", "BLOB", "BLOB", "INTEGER NOT NULL DEFAULT 0",
                                        "INTEGER NOT NULL DEFAULT 0",
                                        "TEXT NOT NULL DEFAULT ''"};
    chute_status st = db_exec(db, "BEGIN IMMEDIATE");
    for (size_t i = 0; !st && i < sizeof cols / sizeof *cols; i++) {
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info('queue') WHERE name=?",
                               -1, &s, NULL) != SQLITE_OK) {
            st = CHUTE_ERR_DB;
            break;
        }
        sqlite3_bind_text(s, 1, cols[i], -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        sqlite3_finalize(s);
        if (rc == SQLITE_ROW) continue;
        if (rc != SQLITE_DONE) { st = CHUTE_ERR_DB; break; }
        char sql[128];
        snprintf(sql, sizeof sql, "ALTER TABLE queue ADD COLUMN %s %s", cols[i], types[i]);
        st = db_exec(db, sql);
    }
    /* Keys an earlier version kept after the item was done with. */
    if (!st) st = db_exec(db, "UPDATE queue SET " FORGET_KEY
                              " WHERE state IN (3,4) AND file_key IS NOT NULL");
    if (!st) st = db_exec(db, "COMMIT");
    if (st) db_exec(db, "ROLLBACK");
    return st;
}

chute_status queue_open(const char *db_path, queue **out)
{
    if (!db_path || !out) return CHUTE_ERR_ARG;
    queue *q = calloc(1, sizeof *q);
    if (!q) return CHUTE_ERR_NOMEM;
    chute_status st = db_open(db_path, SCHEMA, &q->db);
    /* What is deleted or overwritten (keys above) is zeroed in the file. */
    if (!st) st = db_exec(q->db, "PRAGMA secure_delete=ON");
    if (!st) st = migrate(q->db);
    if (!st && !(q->path = strdup(db_path))) st = CHUTE_ERR_NOMEM;
    if (st) { sqlite3_close(q->db); free(q); return st; }
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    /* Recursive: the transactional calls reuse the locking helpers. */
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&q->mu, &a);
    pthread_mutexattr_destroy(&a);
    *out = q;
    return CHUTE_OK;
}

void queue_close(queue *q)
{
    if (!q) return;
    sqlite3_close(q->notes);
    sqlite3_close(q->db);
    free(q->path);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

void queue_new_id(char out[QUEUE_ID_LEN + 1])
{
    unsigned char raw[16];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(out, QUEUE_ID_LEN + 1, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

const char *queue_state_name(queue_state s)
{
    static const char *names[] = {"queued", "uploading", "uploaded",
                                  "delivered", "cancelled"};
    return (unsigned)s < 5 ? names[s] : "unknown";
}

static void copy_text(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

static void load_row(sqlite3_stmt *s, queue_item *it)
{
    memset(it, 0, sizeof *it);
    copy_text(it->id, sizeof it->id, sqlite3_column_text(s, 0));
    copy_text(it->peer, sizeof it->peer, sqlite3_column_text(s, 1));
    copy_text(it->path, sizeof it->path, sqlite3_column_text(s, 2));
    it->state = (queue_state)sqlite3_column_int(s, 3);
    it->size = (uint64_t)sqlite3_column_int64(s, 4);
    it->blob_size = (uint64_t)sqlite3_column_int64(s, 5);
    it->progress = (uint64_t)sqlite3_column_int64(s, 6);
    it->mode = (uint32_t)sqlite3_column_int(s, 7);
    it->mtime_sec = sqlite3_column_int64(s, 8);
    it->mtime_nsec = (uint32_t)sqlite3_column_int(s, 9);
    if (sqlite3_column_bytes(s, 10) == META_MAC_BYTES)
        memcpy(it->header_mac, sqlite3_column_blob(s, 10), META_MAC_BYTES);
    int ml = sqlite3_column_bytes(s, 11);
    if (ml > 0 && (size_t)ml <= sizeof it->meta) {
        memcpy(it->meta, sqlite3_column_blob(s, 11), (size_t)ml);
        it->meta_len = (size_t)ml;
    }
    it->attempts = (uint32_t)sqlite3_column_int(s, 12);
    copy_text(it->last_error, sizeof it->last_error, sqlite3_column_text(s, 13));
    it->next_attempt = sqlite3_column_int64(s, 14);
    it->created = sqlite3_column_int64(s, 15);
    it->updated = sqlite3_column_int64(s, 16);
    it->relay_cancel = sqlite3_column_int(s, 17) != 0;
    it->growing = sqlite3_column_int(s, 18) != 0;
    it->sent = (uint64_t)sqlite3_column_int64(s, 19);
    copy_text(it->recipient, sizeof it->recipient, sqlite3_column_text(s, 20));
}

/* Run a one-row SELECT with text parameters; load the row or NOT_FOUND. */
static chute_status select_one(queue *q, const char *sql, queue_item *out,
                               const char *a, const char *b)
{
    sqlite3_stmt *s;
    LOCK(q);
    if (sqlite3_prepare_v2(q->db, sql, -1, &s, NULL) != SQLITE_OK) {
        UNLOCK(q);
        return CHUTE_ERR_DB;
    }
    if (a) sqlite3_bind_text(s, 1, a, -1, SQLITE_STATIC);
    if (b) sqlite3_bind_text(s, 2, b, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    chute_status st = CHUTE_OK;
    if (rc == SQLITE_ROW) { if (out) load_row(s, out); }
    else st = rc == SQLITE_DONE ? CHUTE_ERR_NOT_FOUND : CHUTE_ERR_DB;
    sqlite3_finalize(s);
    UNLOCK(q);
    return st;
}

/* Prepare a change under the lock; step_change runs it and unlocks. */
static sqlite3_stmt *prep_change(queue *q, const char *sql)
{
    sqlite3_stmt *s = NULL;
    LOCK(q);
    if (sqlite3_prepare_v2(q->db, sql, -1, &s, NULL) != SQLITE_OK) {
        sqlite3_finalize(s);
        UNLOCK(q);
        return NULL;
    }
    return s;
}

/* Run an UPDATE; NOT_FOUND if it changed no row. */
static chute_status step_change(queue *q, sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    chute_status st = rc != SQLITE_DONE ? CHUTE_ERR_DB
                      : sqlite3_changes(q->db) == 0 ? CHUTE_ERR_NOT_FOUND
                                                    : CHUTE_OK;
    sqlite3_finalize(s);
    UNLOCK(q);
    return st;
}

static chute_status insert_row(queue *q, const queue_item *it, const queue_age *age)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(q->db,
            "INSERT INTO queue(" COLS ",age_header,age_nonce,file_key) "
            "VALUES(?1,?2,?3,0,?4,?5,0,?6,?7,?8,?9,?10,0,'',?18,?11,?12,0,?13,0,?14,"
            "?15,?16,?17)",
            -1, &s, NULL) != SQLITE_OK)
        return CHUTE_ERR_DB;
    int64_t t = now_s();
    sqlite3_bind_text(s, 1, it->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, it->peer, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, it->path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)it->size);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)it->blob_size);
    sqlite3_bind_int(s, 6, (int)it->mode);
    sqlite3_bind_int64(s, 7, it->mtime_sec);
    sqlite3_bind_int(s, 8, (int)it->mtime_nsec);
    sqlite3_bind_blob(s, 9, it->header_mac, META_MAC_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(s, 10, it->meta, (int)it->meta_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 11, t);
    sqlite3_bind_int64(s, 12, t);
    if (age) {   /* else NULLs: a legacy row whose blob is sealed/<id>.age */
        sqlite3_bind_blob(s, 15, age->header, (int)age->header_len, SQLITE_STATIC);
        sqlite3_bind_blob(s, 16, age->nonce, AGE_NONCE_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(s, 17, age->file_key, AGE_FILE_KEY_BYTES, SQLITE_STATIC);
    }
    sqlite3_bind_int(s, 13, it->growing ? 1 : 0);
    sqlite3_bind_int64(s, 18, it->next_attempt);
    sqlite3_bind_text(s, 14, it->recipient, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc == SQLITE_CONSTRAINT) return CHUTE_ERR_EXISTS;
    return rc == SQLITE_DONE ? CHUTE_OK : CHUTE_ERR_DB;
}

static chute_status cancel_locked(queue *q, const char *id);

/* Inside a transaction: the sealed active item at peer/path, unless it is
 * `keep`, is cancelled (a newer file replaces it); its id into replaced. */
static chute_status replace_at_path(queue *q, const char *peer, const char *path,
                                    const char *keep, char replaced[QUEUE_ID_LEN + 1])
{
    queue_item *old = malloc(sizeof *old);
    if (!old) return CHUTE_ERR_NOMEM;
    chute_status st = select_one(q, "SELECT " COLS " FROM queue WHERE peer=? AND path=? AND "
                                    SEALED " ORDER BY created DESC LIMIT 1", old, peer, path);
    if (st == CHUTE_OK && keep && strcmp(old->id, keep) == 0) st = CHUTE_ERR_NOT_FOUND;
    if (st == CHUTE_OK) {
        st = cancel_locked(q, old->id);
        if (!st && replaced) snprintf(replaced, QUEUE_ID_LEN + 1, "%s", old->id);
    } else if (st == CHUTE_ERR_NOT_FOUND) {
        st = CHUTE_OK;
    }
    free(old);
    return st;
}

chute_status queue_insert(queue *q, const queue_item *it, const queue_age *age,
                          char replaced[QUEUE_ID_LEN + 1])
{
    if (!q || !it || strlen(it->id) != QUEUE_ID_LEN || !it->peer[0] ||
        !it->path[0] || (!it->meta_len && !it->growing) || (it->growing && !age) ||
        (age && (!age->header_len || age->header_len > QUEUE_AGE_HEADER_MAX)))
        return CHUTE_ERR_ARG;
    if (replaced) replaced[0] = '\0';
    LOCK(q);
    chute_status st = db_exec(q->db, "BEGIN IMMEDIATE");
    if (!st) {
        /* A growing file replaces nothing yet: it may never be sealed. */
        if (!it->growing) st = replace_at_path(q, it->peer, it->path, NULL, replaced);
        if (!st) st = insert_row(q, it, age);
        if (!st) st = db_exec(q->db, "COMMIT");
        /* A full disk is worth telling apart: close(2) says ENOSPC. */
        if (st == CHUTE_ERR_DB && sqlite3_errcode(q->db) == SQLITE_FULL) st = CHUTE_ERR_FULL;
        if (st) { db_exec(q->db, "ROLLBACK"); if (replaced) replaced[0] = '\0'; }
    }
    UNLOCK(q);
    return st;
}

chute_status queue_seal_growing(queue *q, const queue_item *it,
                                char replaced[QUEUE_ID_LEN + 1])
{
    if (!q || !it || !it->peer[0] || !it->path[0] || !it->meta_len ||
        it->meta_len > META_SEALED_MAX)
        return CHUTE_ERR_ARG;
    if (replaced) replaced[0] = '\0';
    LOCK(q);
    chute_status st = db_exec(q->db, "BEGIN IMMEDIATE");
    if (!st) {
        st = replace_at_path(q, it->peer, it->path, it->id, replaced);
        sqlite3_stmt *s = st ? NULL : prep_change(q,
            "UPDATE queue SET growing=0, path=?, size=?, blob_size=?, mode=?, mtime_sec=?,"
            " mtime_nsec=?, meta=?, updated=?, recipient=?10"
            " WHERE growing=1 AND " ACTIVE " AND id=?9");
        if (!st && !s) st = CHUTE_ERR_DB;
        if (s) {
            sqlite3_bind_text(s, 1, it->path, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, (sqlite3_int64)it->size);
            sqlite3_bind_int64(s, 3, (sqlite3_int64)it->blob_size);
            sqlite3_bind_int(s, 4, (int)it->mode);
            sqlite3_bind_int64(s, 5, it->mtime_sec);
            sqlite3_bind_int(s, 6, (int)it->mtime_nsec);
            sqlite3_bind_blob(s, 7, it->meta, (int)it->meta_len, SQLITE_STATIC);
            sqlite3_bind_int64(s, 8, now_s());
            sqlite3_bind_text(s, 9, it->id, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 10, it->recipient, -1, SQLITE_STATIC);
            st = step_change(q, s);   /* NOT_FOUND: cancelled meanwhile */
        }
        if (!st) st = db_exec(q->db, "COMMIT");
        if (st) { db_exec(q->db, "ROLLBACK"); if (replaced) replaced[0] = '\0'; }
    }
    UNLOCK(q);
    return st;
}

chute_status queue_cancel_growing(queue *q)
{
    if (!q) return CHUTE_ERR_ARG;
    sqlite3_stmt *s = prep_change(q,
        "UPDATE queue SET relay_cancel=(state<>0 OR attempts>0), state=4, updated=?, "
        FORGET_KEY " WHERE growing=1 AND " ACTIVE);
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_int64(s, 1, now_s());
    chute_status st = step_change(q, s);
    return st == CHUTE_ERR_NOT_FOUND ? CHUTE_OK : st;
}

chute_status queue_get(queue *q, const char *id, queue_item *out)
{
    if (!q || !id) return CHUTE_ERR_ARG;
    return select_one(q, "SELECT " COLS " FROM queue WHERE id=?", out, id, NULL);
}

chute_status queue_find_active(queue *q, const char *peer, const char *path,
                               queue_item *out)
{
    if (!q || !peer || !path) return CHUTE_ERR_ARG;
    return select_one(q, "SELECT " COLS " FROM queue WHERE peer=? AND path=? AND "
                         SEALED " ORDER BY created DESC LIMIT 1",
                      out, peer, path);
}

chute_status queue_find_latest(queue *q, const char *peer, const char *path,
                               queue_item *out)
{
    if (!q || !peer || !path) return CHUTE_ERR_ARG;
    return select_one(q, "SELECT " COLS " FROM queue WHERE peer=? AND path=? "
                         "ORDER BY created DESC, rowid DESC LIMIT 1", out, peer, path);
}

chute_status queue_get_age(queue *q, const char *id, queue_age *out)
{
    if (!q || !id || !out) return CHUTE_ERR_ARG;
    sqlite3_stmt *s;
    LOCK(q);
    if (sqlite3_prepare_v2(q->db, "SELECT age_header, age_nonce, file_key FROM queue "
                                  "WHERE id=?", -1, &s, NULL) != SQLITE_OK) {
        UNLOCK(q);
        return CHUTE_ERR_DB;
    }
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    chute_status st = rc == SQLITE_ROW ? CHUTE_OK
                      : rc == SQLITE_DONE ? CHUTE_ERR_NOT_FOUND : CHUTE_ERR_DB;
    if (!st) {
        int hl = sqlite3_column_bytes(s, 0);
        if (sqlite3_column_type(s, 0) == SQLITE_NULL)
            st = CHUTE_ERR_NOT_FOUND;   /* a legacy row: its blob is sealed */
        else if (hl <= 0 || hl > QUEUE_AGE_HEADER_MAX ||
                 sqlite3_column_bytes(s, 1) != AGE_NONCE_BYTES ||
                 sqlite3_column_bytes(s, 2) != AGE_FILE_KEY_BYTES)
            st = CHUTE_ERR_MALFORMED;
        else {
            memcpy(out->header, sqlite3_column_blob(s, 0), (size_t)hl);
            out->header_len = (size_t)hl;
            memcpy(out->nonce, sqlite3_column_blob(s, 1), AGE_NONCE_BYTES);
            memcpy(out->file_key, sqlite3_column_blob(s, 2), AGE_FILE_KEY_BYTES);
        }
    }
    sqlite3_finalize(s);
    UNLOCK(q);
    return st;
}

void queue_age_wipe(queue_age *a)
{
    if (a) sodium_memzero(a, sizeof *a);
}

/* UPDATE with the id as the last parameter and `updated` refreshed. */
static chute_status update_by_id(queue *q, const char *sql, const char *id,
                                 int64_t i1, int64_t i2)
{
    sqlite3_stmt *s = prep_change(q, sql);
    if (!s) return CHUTE_ERR_DB;
    int n = sqlite3_bind_parameter_count(s);
    sqlite3_bind_int64(s, 1, now_s());
    if (n >= 3) sqlite3_bind_int64(s, 2, i1);
    if (n >= 4) sqlite3_bind_int64(s, 3, i2);
    sqlite3_bind_text(s, n, id, -1, SQLITE_STATIC);
    return step_change(q, s);
}

static chute_status cancel_locked(queue *q, const char *id)
{
    return update_by_id(q,
        /* Any attempt may have created the item on the relay, even one
         * that failed back to queued: the relay copy is owed a DELETE. */
        "UPDATE queue SET relay_cancel=(state<>0 OR attempts>0), state=4, updated=?, "
        "attempts=0, next_attempt=0, " FORGET_KEY " WHERE " ACTIVE " AND id=?", id, 0, 0);
}

chute_status queue_cancel(queue *q, const char *id)
{
    if (!q || !id) return CHUTE_ERR_ARG;
    LOCK(q);
    chute_status st = cancel_locked(q, id);
    UNLOCK(q);
    return st;
}

chute_status queue_move(queue *q, const char *peer, const char *old_prefix,
                        const char *new_prefix)
{
    if (!q || !peer || !old_prefix || !new_prefix) return CHUTE_ERR_ARG;
    /* path = new || rest for path == old or path starting with old + '/';
     * substr/length work on characters, consistently on both sides. */
    sqlite3_stmt *s = prep_change(q,
            "UPDATE queue SET path=?3 || substr(path, length(?2)+1), updated=?4 "
            "WHERE peer=?1 AND " ACTIVE " AND (path=?2 OR "
            "substr(path, 1, length(?2)+1) = ?2 || '/')");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_text(s, 1, peer, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, old_prefix, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, new_prefix, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, now_s());
    chute_status st = step_change(q, s);
    return st == CHUTE_ERR_NOT_FOUND ? CHUTE_OK : st;
}

chute_status queue_update_attrs(queue *q, const char *id, uint32_t mode,
                                int64_t mtime_sec, uint32_t mtime_nsec,
                                const uint8_t *meta, size_t meta_len)
{
    if (!q || !id || !meta || !meta_len || meta_len > META_SEALED_MAX)
        return CHUTE_ERR_ARG;
    sqlite3_stmt *s = prep_change(q,
            "UPDATE queue SET mode=?, mtime_sec=?, mtime_nsec=?, meta=?, updated=? "
            "WHERE state=0 AND progress=0 AND attempts=0 AND id=?");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_int(s, 1, (int)mode);
    sqlite3_bind_int64(s, 2, mtime_sec);
    sqlite3_bind_int(s, 3, (int)mtime_nsec);
    sqlite3_bind_blob(s, 4, meta, (int)meta_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, now_s());
    sqlite3_bind_text(s, 6, id, -1, SQLITE_STATIC);
    chute_status st = step_change(q, s);
    return st == CHUTE_ERR_NOT_FOUND ? CHUTE_ERR_REFUSED : st;
}

chute_status queue_renew_id(queue *q, const char *old_id, const char *new_id,
                            const uint8_t *meta, size_t meta_len)
{
    if (!q || !old_id || !new_id || strlen(new_id) != QUEUE_ID_LEN || !meta || !meta_len ||
        meta_len > META_SEALED_MAX)
        return CHUTE_ERR_ARG;
    sqlite3_stmt *s = prep_change(q,
            "UPDATE queue SET id=?, meta=?, progress=0, sent=0, updated=? "
            "WHERE state IN (0,1) AND id=?");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_text(s, 1, new_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, meta, (int)meta_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now_s());
    sqlite3_bind_text(s, 4, old_id, -1, SQLITE_STATIC);
    return step_change(q, s);
}

chute_status queue_send_again(queue *q, const char *id, const char *why)
{
    if (!q || !id || !why) return CHUTE_ERR_ARG;
    sqlite3_stmt *s = prep_change(q,
            "UPDATE queue SET state=0, progress=0, sent=0, next_attempt=0, last_error=?, "
            "updated=? WHERE state=2 AND id=?");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_text(s, 1, why, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, now_s());
    sqlite3_bind_text(s, 3, id, -1, SQLITE_STATIC);
    return step_change(q, s);
}

chute_status queue_note_recipient(queue *q, const char *id, const char *recipient)
{
    if (!q || !id || !recipient || !*recipient || strlen(recipient) > QUEUE_RECIPIENT_MAX)
        return CHUTE_ERR_ARG;
    sqlite3_stmt *s = prep_change(q, "UPDATE queue SET recipient=? WHERE recipient='' AND id=?");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_text(s, 1, recipient, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, id, -1, SQLITE_STATIC);
    chute_status st = step_change(q, s);
    return st == CHUTE_ERR_NOT_FOUND ? CHUTE_OK : st;
}

/* " AND col [NOT] IN (?2,?3,...)" for n values into buf (cap bytes); ""
 * when n is 0. False if n is over QUEUE_SKIP_MAX. */
static bool in_clause(char *buf, size_t cap, const char *col, bool in, size_t n)
{
    buf[0] = '\0';
    if (n == 0) return true;
    if (n > QUEUE_SKIP_MAX) return false;
    size_t len = (size_t)snprintf(buf, cap, " AND %s %sIN (", col, in ? "" : "NOT ");
    for (size_t i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s?%zu", i ? "," : "", i + 2);
    return len < cap && (size_t)snprintf(buf + len, cap - len, ")") < cap - len;
}

static void bind_from_2(sqlite3_stmt *s, const char *const *peers, size_t n)
{
    for (size_t i = 0; i < n; i++) sqlite3_bind_text(s, (int)i + 2, peers[i], -1, SQLITE_STATIC);
}

static chute_status claim_next(queue *q, int64_t now, bool growing_too,
                               const char *const *skip, size_t nskip, queue_item *out)
{
    if (!q || !out || (nskip && !skip)) return CHUTE_ERR_ARG;
    char not_in[32 + QUEUE_SKIP_MAX * 6], sql[512 + sizeof not_in];
    if (!in_clause(not_in, sizeof not_in, "peer", false, nskip)) return CHUTE_ERR_ARG;
    /* A next try further off than any backoff was set by a clock since
     * set back (a wrong date at boot): due now, not in years. */
    snprintf(sql, sizeof sql, "SELECT " COLS " FROM queue WHERE state=0 AND "
                              "(next_attempt<=?1 OR next_attempt>?1+%d)%s%s "
                              "ORDER BY created, rowid LIMIT 1", QUEUE_WAIT_MAX_S,
             growing_too ? "" : " AND growing=0", not_in);
    pthread_mutex_lock(&q->mu);
    sqlite3_stmt *s = NULL;
    chute_status st = CHUTE_ERR_DB;
    if (sqlite3_prepare_v2(q->db, sql, -1, &s, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(s, 1, now);
    bind_from_2(s, skip, nskip);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) { st = rc == SQLITE_DONE ? CHUTE_ERR_NOT_FOUND : CHUTE_ERR_DB; goto out; }
    load_row(s, out);
    sqlite3_finalize(s);
    s = NULL;
    st = update_by_id(q, "UPDATE queue SET state=1, attempts=attempts+1, updated=? "
                         "WHERE id=?", out->id, 0, 0);
    if (st == CHUTE_OK) { out->state = QUEUE_UPLOADING; out->attempts++; }
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&q->mu);
    return st;
}

chute_status queue_claim_next(queue *q, int64_t now, queue_item *out)
{
    return claim_next(q, now, true, NULL, 0, out);
}

chute_status queue_claim_next_sealed(queue *q, int64_t now, queue_item *out)
{
    return claim_next(q, now, false, NULL, 0, out);
}

chute_status queue_claim_next_except(queue *q, int64_t now, bool sealed_only,
                                     const char *const *skip, size_t nskip, queue_item *out)
{
    return claim_next(q, now, !sealed_only, skip, nskip, out);
}

chute_status queue_requeue_interrupted(queue *q)
{
    if (!q) return CHUTE_ERR_ARG;
    sqlite3_stmt *s = prep_change(q, "UPDATE queue SET state=0, sent=progress, updated=? WHERE state=1");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_int64(s, 1, now_s());
    chute_status st = step_change(q, s);
    return st == CHUTE_ERR_NOT_FOUND ? CHUTE_OK : st;   /* none were interrupted */
}

chute_status queue_requeue_unheld(queue *q, const char *const *held, size_t nheld)
{
    if (!q || (nheld && !held)) return CHUTE_ERR_ARG;
    char not_in[32 + QUEUE_SKIP_MAX * 6], sql[128 + sizeof not_in];
    if (!in_clause(not_in, sizeof not_in, "id", false, nheld)) return CHUTE_ERR_ARG;
    snprintf(sql, sizeof sql, "UPDATE queue SET state=0, sent=progress, updated=?1 "
                              "WHERE state=1%s", not_in);
    sqlite3_stmt *s = prep_change(q, sql);
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_int64(s, 1, now_s());
    bind_from_2(s, held, nheld);
    chute_status st = step_change(q, s);
    return st == CHUTE_ERR_NOT_FOUND ? CHUTE_OK : st;
}

chute_status queue_set_error(queue *q, const char *id, const char *error)
{
    if (!q || !id) return CHUTE_ERR_ARG;
    sqlite3_stmt *s = prep_change(q,
            "UPDATE queue SET last_error=?, updated=? WHERE state=2 AND id=?");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_text(s, 1, error ? error : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, now_s());
    sqlite3_bind_text(s, 3, id, -1, SQLITE_STATIC);
    return step_change(q, s);
}

chute_status queue_set_progress(queue *q, const char *id, uint64_t offset)
{
    if (!q || !id) return CHUTE_ERR_ARG;
    return update_by_id(q, "UPDATE queue SET updated=?, progress=?2, sent=?2 "
                           "WHERE state=1 AND id=?3", id, (int64_t)offset, 0);
}

chute_status queue_set_sent(queue *q, const char *id, uint64_t offset)
{
    if (!q || !id) return CHUTE_ERR_ARG;
    /* Only for status, noted often while a request runs: no fsync (WAL at
     * NORMAL cannot corrupt; a crash may lose the note, nothing else). */
    LOCK(q);
    chute_status st = CHUTE_OK;
    if (!q->notes && (st = db_open(q->path, NULL, &q->notes)) == CHUTE_OK &&
        (st = db_exec(q->notes, "PRAGMA synchronous=NORMAL")) != CHUTE_OK) {
        sqlite3_close(q->notes);
        q->notes = NULL;
    }
    sqlite3_stmt *s = NULL;
    if (!st && sqlite3_prepare_v2(q->notes, "UPDATE queue SET sent=? WHERE state=1 AND id=?", -1,
                                  &s, NULL) != SQLITE_OK)
        st = CHUTE_ERR_DB;
    if (!st) {
        sqlite3_bind_int64(s, 1, (sqlite3_int64)offset);
        sqlite3_bind_text(s, 2, id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        st = rc != SQLITE_DONE ? CHUTE_ERR_DB : sqlite3_changes(q->notes) ? CHUTE_OK
                                                                          : CHUTE_ERR_NOT_FOUND;
    }
    sqlite3_finalize(s);
    UNLOCK(q);
    return st;
}

chute_status queue_mark_uploaded(queue *q, const char *id)
{
    if (!q || !id) return CHUTE_ERR_ARG;
    return update_by_id(q, "UPDATE queue SET updated=?, state=2, progress=blob_size,"
                           " last_error='' WHERE state=1 AND id=?", id, 0, 0);
}

chute_status queue_mark_failed(queue *q, const char *id, const char *error,
                               int64_t next_attempt)
{
    if (!q || !id) return CHUTE_ERR_ARG;
    sqlite3_stmt *s = prep_change(q,
            "UPDATE queue SET state=0, sent=progress, last_error=?, next_attempt=?, updated=? "
            "WHERE state=1 AND id=?");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_text(s, 1, error ? error : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, next_attempt);
    sqlite3_bind_int64(s, 3, now_s());
    sqlite3_bind_text(s, 4, id, -1, SQLITE_STATIC);
    return step_change(q, s);
}

chute_status queue_put_back(queue *q, const char *id, const char *why,
                            int64_t next_attempt)
{
    if (!q || !id || !why) return CHUTE_ERR_ARG;
    sqlite3_stmt *s = prep_change(q,
            "UPDATE queue SET state=0, attempts=max(attempts-1,0), sent=progress, "
            "last_error=?, next_attempt=?, updated=? WHERE state=1 AND id=?");
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_text(s, 1, why, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, next_attempt);
    sqlite3_bind_int64(s, 3, now_s());
    sqlite3_bind_text(s, 4, id, -1, SQLITE_STATIC);
    return step_change(q, s);
}

chute_status queue_mark_delivered(queue *q, const char *id)
{
    if (!q || !id) return CHUTE_ERR_ARG;
    return update_by_id(q, "UPDATE queue SET updated=?, state=3, " FORGET_KEY
                           " WHERE state IN (1,2) AND id=?", id, 0, 0);
}

/* Of the peers given (all when peers is NULL). */
static chute_status retry_now(queue *q, const char *error_prefix, const char *const *peers,
                              size_t npeers)
{
    if (!q || !error_prefix || (npeers && !peers)) return CHUTE_ERR_ARG;
    if (peers && !npeers) return CHUTE_OK;
    char in[32 + QUEUE_SKIP_MAX * 6], sql[256 + sizeof in];
    if (!in_clause(in, sizeof in, "peer", true, npeers)) return CHUTE_ERR_ARG;
    /* ?1 is the prefix; the peers are ?2... */
    snprintf(sql, sizeof sql, "UPDATE queue SET next_attempt=0 WHERE state=0 AND "
                              "next_attempt>0 AND substr(last_error,1,length(?1))=?1%s", in);
    sqlite3_stmt *s = prep_change(q, sql);
    if (!s) return CHUTE_ERR_DB;
    sqlite3_bind_text(s, 1, error_prefix, -1, SQLITE_STATIC);
    bind_from_2(s, peers, npeers);
    chute_status st = step_change(q, s);
    return st == CHUTE_ERR_NOT_FOUND ? CHUTE_OK : st;   /* none waiting is fine */
}

chute_status queue_retry_now(queue *q, const char *error_prefix)
{
    return retry_now(q, error_prefix, NULL, 0);
}

chute_status queue_retry_now_for(queue *q, const char *error_prefix,
                                 const char *const *peers, size_t npeers)
{
    if (!peers) return CHUTE_ERR_ARG;
    return retry_now(q, error_prefix, peers, npeers);
}

chute_status queue_next_relay_cancel(queue *q, int64_t now, queue_item *out)
{
    if (!q || !out) return CHUTE_ERR_ARG;
    sqlite3_stmt *s;
    LOCK(q);
    /* As in claim_next: a next try past any backoff is due. */
    if (sqlite3_prepare_v2(q->db, "SELECT " COLS " FROM queue WHERE state=4 AND relay_cancel=1 "
                                  "AND (next_attempt<=?1 OR next_attempt>?1+" WAIT_MAX_TEXT ") "
                                  "ORDER BY next_attempt, updated LIMIT 1",
                           -1, &s, NULL) != SQLITE_OK) {
        UNLOCK(q);
        return CHUTE_ERR_DB;
    }
    sqlite3_bind_int64(s, 1, now);
    int rc = sqlite3_step(s);
    chute_status st = rc == SQLITE_ROW ? CHUTE_OK
                      : rc == SQLITE_DONE ? CHUTE_ERR_NOT_FOUND : CHUTE_ERR_DB;
    if (!st) load_row(s, out);
    sqlite3_finalize(s);
    UNLOCK(q);
    return st;
}

chute_status queue_relay_cancel_failed(queue *q, const char *id, int64_t next_attempt)
{
    if (!q || !id) return CHUTE_ERR_ARG;
    return update_by_id(q, "UPDATE queue SET updated=?, next_attempt=?2, attempts=attempts+1 "
                           "WHERE state=4 AND relay_cancel=1 AND id=?3", id, next_attempt, 0);
}

chute_status queue_relay_cancel_owed(queue *q, const char *id)
{
    if (!q || !id) return CHUTE_ERR_ARG;
    return update_by_id(q, "UPDATE queue SET updated=?, relay_cancel=1, next_attempt=0, "
                           "attempts=attempts+1 WHERE state=4 AND id=?", id, 0, 0);
}

chute_status queue_relay_cancel_done(queue *q, const char *id, uint32_t attempts)
{
    if (!q || !id) return CHUTE_ERR_ARG;
    return update_by_id(q, "UPDATE queue SET updated=?, relay_cancel=0 "
                           "WHERE state=4 AND attempts=?2 AND id=?3", id, attempts, 0);
}

static chute_status each_where(queue *q, const char *sql, queue_visit_fn fn, void *arg)
{
    if (!q || !fn) return CHUTE_ERR_ARG;
    sqlite3_stmt *s;
    queue_item *it = malloc(sizeof *it);
    if (!it) return CHUTE_ERR_NOMEM;
    LOCK(q);
    if (sqlite3_prepare_v2(q->db, sql, -1, &s, NULL) != SQLITE_OK) {
        UNLOCK(q);
        free(it);
        return CHUTE_ERR_DB;
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        load_row(s, it);
        if (fn(it, arg)) { rc = SQLITE_DONE; break; }
    }
    free(it);
    sqlite3_finalize(s);
    UNLOCK(q);
    return rc == SQLITE_DONE ? CHUTE_OK : CHUTE_ERR_DB;
}

chute_status queue_each_active(queue *q, queue_visit_fn fn, void *arg)
{
    return each_where(q, "SELECT " COLS " FROM queue WHERE " SEALED
                         " ORDER BY created, rowid", fn, arg);
}

chute_status queue_each_growing(queue *q, queue_visit_fn fn, void *arg)
{
    return each_where(q, "SELECT " COLS " FROM queue WHERE growing=1 AND " ACTIVE
                         " ORDER BY created, rowid", fn, arg);
}

chute_status queue_each_uploaded(queue *q, queue_visit_fn fn, void *arg)
{
    return each_where(q, "SELECT " COLS " FROM queue WHERE state=2 AND growing=0"
                         " ORDER BY created, rowid", fn, arg);
}

chute_status queue_counts(queue *q, queue_counts_t *out)
{
    if (!q || !out) return CHUTE_ERR_ARG;
    memset(out, 0, sizeof *out);
    LOCK(q);
    sqlite3_stmt *s;
    chute_status st = CHUTE_ERR_DB;
    if (sqlite3_prepare_v2(q->db, "SELECT state, count(*) FROM queue WHERE growing=0 "
                                   "GROUP BY state",
                           -1, &s, NULL) == SQLITE_OK) {
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            uint64_t n = (uint64_t)sqlite3_column_int64(s, 1);
            switch (sqlite3_column_int(s, 0)) {
            case QUEUE_QUEUED: out->queued = n; break;
            case QUEUE_UPLOADING: out->uploading = n; break;
            case QUEUE_UPLOADED: out->uploaded = n; break;
            case QUEUE_DELIVERED: out->delivered = n; break;
            case QUEUE_CANCELLED: out->cancelled = n; break;
            default: break;
            }
        }
        if (rc == SQLITE_DONE) st = CHUTE_OK;
        sqlite3_finalize(s);
    }
    UNLOCK(q);
    return st;
}
