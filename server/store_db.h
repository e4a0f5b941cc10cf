/* store_db.h — what the store_*.c files share: the connection, its lock,
 * the statement cache and small SQLite helpers. Private to the store; the
 * rest of chuted uses store.h. */
#ifndef CHUTED_STORE_DB_H
#define CHUTED_STORE_DB_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>

#include "store.h"

#define MAX_STMTS 64

struct store {
    sqlite3 *db;
    pthread_mutex_t mu;
    struct { const char *sql; sqlite3_stmt *st; } cache[MAX_STMTS];
    int ncache;
};

void db_lock(store *s);
void db_unlock(store *s);
/* Log SQLite's message for `what`; returns CHUTE_ERR_DB. */
chute_status db_err(store *s, const char *what);
/* The cached statement for `sql` (a static string, cached by its address),
 * reset and unbound; NULL on error. */
sqlite3_stmt *db_stmt(store *s, const char *sql);
bool db_exec(store *s, const char *sql);
/* BEGIN IMMEDIATE; then COMMIT if st is CHUTE_OK, else ROLLBACK. */
chute_status db_begin(store *s);
chute_status db_finish(store *s, chute_status st);
void db_bind_text(sqlite3_stmt *st, int i, const char *v);
void db_bind_blob(sqlite3_stmt *st, int i, const void *v, size_t n);
void db_copy_text(char *dst, size_t cap, const unsigned char *src);
/* Constant-time equality of a stored hash and a computed one. */
bool db_hash_eq(const void *stored, int stored_len, const uint8_t *h);
/* Run a one-text-parameter statement to completion. */
chute_status db_run1(store *s, const char *sql, const char *arg);

/* A growing list of item ids whose bodies go once a transaction commits. */
typedef struct {
    char (*ids)[RELAY_ITEM_ID_MAX + 1];
    char (*inboxes)[RELAY_ID_CHARS + 1];
    size_t n, cap;
} id_list;

chute_status id_list_add(id_list *l, const unsigned char *inbox, const unsigned char *id);
/* Run `each` over the list if `run`, then empty it. */
void id_list_run(id_list *l, bool run, store_body_fn each, void *cls);

#endif
