/* store_pair.c — pairing sessions and their messages (see store.h). */
#include "store.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_db.h"

/* --- pairing -------------------------------------------------------------- */

static const char SQL_PAIR_INSERT[] =
    "INSERT INTO pair_sessions(id, nameplate, inviter_hash, state, expires)"
    " VALUES (?1, ?2, ?3, 0, ?4)";

chute_status store_pair_create(store *s, const char *session,
                               const uint8_t inviter_hash[STORE_HASH_LEN],
                               int64_t now, int64_t expires,
                               char nameplate[RELAY_NAMEPLATE_MAX + 1])
{
    (void)now;
    db_lock(s);
    chute_status st = CHUTE_ERR_EXISTS;
    sqlite3_stmt *q = db_stmt(s, SQL_PAIR_INSERT);
    if (!q)
        st = CHUTE_ERR_DB;
    /* Short nameplates while they are free, longer ones as the space fills:
     * a few random tries at each width from 2 to 6 digits. */
    for (int width = 2; q && st == CHUTE_ERR_EXISTS && width <= RELAY_NAMEPLATE_MAX; width++) {
        /* Exactly `width` digits: from 10^(width-1) to 10^width - 1. */
        uint32_t low = 1;
        for (int i = 1; i < width; i++)
            low *= 10;
        for (int tries = 0; tries < 4 && st == CHUTE_ERR_EXISTS; tries++) {
            snprintf(nameplate, RELAY_NAMEPLATE_MAX + 1, "%u",
                     low + randombytes_uniform(9 * low));
            sqlite3_reset(q);
            db_bind_text(q, 1, session);
            db_bind_text(q, 2, nameplate);
            db_bind_blob(q, 3, inviter_hash, STORE_HASH_LEN);
            sqlite3_bind_int64(q, 4, expires);
            int rc = sqlite3_step(q);
            if (rc == SQLITE_DONE)
                st = CHUTE_OK;
            else if (rc != SQLITE_CONSTRAINT)
                st = db_err(s, "insert pair session");
        }
    }
    if (q)
        sqlite3_reset(q);
    db_unlock(s);
    if (st == CHUTE_ERR_EXISTS)
        st = CHUTE_ERR_LIMIT;       /* no free nameplate found */
    return st;
}

static const char SQL_PAIR_CLAIM[] =
    "UPDATE pair_sessions SET state = 1, joiner_hash = ?2, expires = max(expires, ?4)"
    " WHERE nameplate = ?1 AND state = 0 AND expires > ?3 RETURNING id, expires";
static const char SQL_PAIR_BY_NAMEPLATE[] =
    "SELECT expires, state, joiner_hash IS NULL FROM pair_sessions WHERE nameplate = ?1";

chute_status store_pair_claim(store *s, const char *nameplate,
                              const uint8_t joiner_hash[STORE_HASH_LEN], int64_t now,
                              int64_t run_until,
                              char session[RELAY_ID_CHARS + 1], int64_t *expires)
{
    db_lock(s);
    chute_status st = CHUTE_OK;
    /* One UPDATE guarded by state = 0: of concurrent claims exactly one
     * changes the row. */
    sqlite3_stmt *q = db_stmt(s, SQL_PAIR_CLAIM);
    if (!q) {
        st = CHUTE_ERR_DB;
        goto out;
    }
    db_bind_text(q, 1, nameplate);
    db_bind_blob(q, 2, joiner_hash, STORE_HASH_LEN);
    sqlite3_bind_int64(q, 3, now);
    sqlite3_bind_int64(q, 4, run_until);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        db_copy_text(session, RELAY_ID_CHARS + 1, sqlite3_column_text(q, 0));
        *expires = sqlite3_column_int64(q, 1);
        while (rc == SQLITE_ROW)
            rc = sqlite3_step(q);
        sqlite3_reset(q);
        if (rc != SQLITE_DONE)
            st = db_err(s, "claim");
        goto out;
    }
    sqlite3_reset(q);
    if (rc != SQLITE_DONE) {
        st = db_err(s, "claim");
        goto out;
    }
    q = db_stmt(s, SQL_PAIR_BY_NAMEPLATE);
    if (!q) {
        st = CHUTE_ERR_DB;
        goto out;
    }
    db_bind_text(q, 1, nameplate);
    rc = sqlite3_step(q);
    /* Closed with nobody having claimed it: its inviter gave up on the
     * code, which a joiner should hear, not "already used". */
    if (rc == SQLITE_ROW && sqlite3_column_int64(q, 0) <= now)
        st = CHUTE_ERR_EXPIRED;
    else if (rc == SQLITE_ROW)
        st = sqlite3_column_int(q, 1) == PAIR_CLOSED && sqlite3_column_int(q, 2)
                 ? CHUTE_ERR_REFUSED : CHUTE_ERR_EXISTS;
    else if (rc == SQLITE_DONE)
        st = CHUTE_ERR_NOT_FOUND;
    else
        st = db_err(s, "nameplate");
    sqlite3_reset(q);
out:
    db_unlock(s);
    return st;
}

static const char SQL_PAIR_GET[] =
    "SELECT inviter_hash, joiner_hash, state, expires FROM pair_sessions WHERE id = ?1";

chute_status store_pair_auth(store *s, const char *session,
                             const uint8_t hash[STORE_HASH_LEN], int *side,
                             pair_state *state, int64_t *expires)
{
    db_lock(s);
    chute_status st = CHUTE_ERR_NOT_FOUND;
    sqlite3_stmt *q = db_stmt(s, SQL_PAIR_GET);
    if (!q) {
        st = CHUTE_ERR_DB;
    } else {
        db_bind_text(q, 1, session);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            bool inv = db_hash_eq(sqlite3_column_blob(q, 0), sqlite3_column_bytes(q, 0), hash);
            bool joi = db_hash_eq(sqlite3_column_blob(q, 1), sqlite3_column_bytes(q, 1), hash);
            if (inv || joi) {
                *side = inv ? 0 : 1;
                *state = (pair_state)sqlite3_column_int(q, 2);
                *expires = sqlite3_column_int64(q, 3);
                st = CHUTE_OK;
            }
        } else if (rc != SQLITE_DONE) {
            st = db_err(s, "pair session");
        }
        sqlite3_reset(q);
    }
    db_unlock(s);
    return st;
}

static const char SQL_PAIR_STATE[] =
    "SELECT state, expires, next_seq FROM pair_sessions WHERE id = ?1";
static const char SQL_PAIR_COUNT[] =
    "SELECT count(*) FROM pair_messages WHERE session = ?1";
static const char SQL_PAIR_BUMP[] =
    "UPDATE pair_sessions SET next_seq = next_seq + 1 WHERE id = ?1";
static const char SQL_MSG_INSERT[] =
    "INSERT INTO pair_messages(session, seq, side, body) VALUES (?1, ?2, ?3, ?4)";

chute_status store_pair_send(store *s, const char *session, int side,
                             const uint8_t *body, size_t len, uint64_t max_messages,
                             int64_t now, uint64_t *seq)
{
    db_lock(s);
    chute_status st = db_begin(s);
    if (st != CHUTE_OK)
        goto out;
    sqlite3_stmt *q = db_stmt(s, SQL_PAIR_STATE);
    if (!q) {
        st = db_finish(s, CHUTE_ERR_DB);
        goto out;
    }
    db_bind_text(q, 1, session);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_int(q, 0) != PAIR_CLAIMED || sqlite3_column_int64(q, 1) <= now)
            st = CHUTE_ERR_EXPIRED;
        *seq = (uint64_t)sqlite3_column_int64(q, 2);
    } else {
        st = rc == SQLITE_DONE ? CHUTE_ERR_NOT_FOUND : db_err(s, "pair state");
    }
    sqlite3_reset(q);
    if (st == CHUTE_OK) {
        q = db_stmt(s, SQL_PAIR_COUNT);
        if (!q) {
            st = CHUTE_ERR_DB;
        } else {
            db_bind_text(q, 1, session);
            if (sqlite3_step(q) != SQLITE_ROW)
                st = db_err(s, "count messages");
            else if ((uint64_t)sqlite3_column_int64(q, 0) >= max_messages)
                st = CHUTE_ERR_LIMIT;
            sqlite3_reset(q);
        }
    }
    if (st == CHUTE_OK)
        st = db_run1(s, SQL_PAIR_BUMP, session);
    if (st == CHUTE_OK) {
        q = db_stmt(s, SQL_MSG_INSERT);
        if (!q) {
            st = CHUTE_ERR_DB;
        } else {
            db_bind_text(q, 1, session);
            sqlite3_bind_int64(q, 2, (int64_t)*seq);
            sqlite3_bind_int(q, 3, side);
            db_bind_blob(q, 4, body, len);
            if (sqlite3_step(q) != SQLITE_DONE)
                st = db_err(s, "insert message");
            sqlite3_reset(q);
        }
    }
    st = db_finish(s, st);
out:
    db_unlock(s);
    return st;
}

static const char SQL_MSG_LIST[] =
    "SELECT seq, body FROM pair_messages WHERE session = ?1 AND side = ?2 AND seq > ?3"
    " ORDER BY seq";

chute_status store_pair_receive(store *s, const char *session, int side,
                                uint64_t after, store_message **msgs, size_t *n,
                                pair_state *state, int64_t *expires)
{
    *msgs = NULL;
    *n = 0;
    store_message *arr = NULL;
    size_t k = 0, cap = 0;
    db_lock(s);
    chute_status st = CHUTE_OK;
    sqlite3_stmt *q = db_stmt(s, SQL_PAIR_STATE);
    if (!q) {
        st = CHUTE_ERR_DB;
        goto out;
    }
    db_bind_text(q, 1, session);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *state = (pair_state)sqlite3_column_int(q, 0);
        *expires = sqlite3_column_int64(q, 1);
    } else {
        st = rc == SQLITE_DONE ? CHUTE_ERR_NOT_FOUND : db_err(s, "pair state");
    }
    sqlite3_reset(q);
    if (st != CHUTE_OK)
        goto out;
    q = db_stmt(s, SQL_MSG_LIST);
    if (!q) {
        st = CHUTE_ERR_DB;
        goto out;
    }
    db_bind_text(q, 1, session);
    sqlite3_bind_int(q, 2, 1 - side);
    sqlite3_bind_int64(q, 3, after > INT64_MAX ? INT64_MAX : (int64_t)after);
    while (st == CHUTE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (k == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            store_message *a = realloc(arr, ncap * sizeof *a);
            if (!a) {
                st = CHUTE_ERR_NOMEM;
                break;
            }
            arr = a;
            cap = ncap;
        }
        int len = sqlite3_column_bytes(q, 1);
        arr[k].seq = (uint64_t)sqlite3_column_int64(q, 0);
        arr[k].len = (size_t)len;
        arr[k].body = malloc(len > 0 ? (size_t)len : 1);
        if (!arr[k].body) {
            st = CHUTE_ERR_NOMEM;
            break;
        }
        if (len > 0)
            memcpy(arr[k].body, sqlite3_column_blob(q, 1), (size_t)len);
        k++;
    }
    if (st == CHUTE_OK && rc != SQLITE_DONE)
        st = db_err(s, "list messages");
    sqlite3_reset(q);
out:
    db_unlock(s);
    if (st != CHUTE_OK) {
        store_messages_free(arr, k);
        return st;
    }
    *msgs = arr;
    *n = k;
    return CHUTE_OK;
}

void store_messages_free(store_message *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(m[i].body);
    free(m);
}

static const char SQL_PAIR_CLOSE[] = "UPDATE pair_sessions SET state = 2 WHERE id = ?1";
static const char SQL_MSG_DEL[] = "DELETE FROM pair_messages WHERE session = ?1";

chute_status store_pair_close(store *s, const char *session)
{
    db_lock(s);
    chute_status st = db_begin(s);
    if (st == CHUTE_OK) {
        st = db_run1(s, SQL_PAIR_CLOSE, session);
        if (st == CHUTE_OK && sqlite3_changes(s->db) == 0)
            st = CHUTE_ERR_NOT_FOUND;
        if (st == CHUTE_OK)
            st = db_run1(s, SQL_MSG_DEL, session);
        st = db_finish(s, st);
    }
    db_unlock(s);
    return st;
}
