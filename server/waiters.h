/* waiters.h — suspended long-poll requests and what wakes them.
 *
 * A long-poll that finds nothing suspends its connection (no thread is held)
 * and registers here under a key: an inbox or a pairing session. A commit,
 * a message or a close wakes the waiters of its key; a watcher thread wakes
 * those whose deadline passed or whose client hung up (libmicrohttpd does
 * not watch suspended sockets, and an abandoned poll would otherwise hold
 * its connection slot until its deadline); shutdown wakes everyone. A woken
 * request is resumed once and answers with whatever there is then.
 *
 * To not miss a wake-up, a lister checks for data and suspends while holding
 * the registry lock (waiters_lock … waiters_suspend … waiters_unlock), and
 * a waker wakes only after its data is committed. */
#ifndef CHUTED_WAITERS_H
#define CHUTED_WAITERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "status.h"

struct MHD_Connection;

#define WAITER_KEY_LEN 80

/* What happened to a key. */
typedef enum {
    WAKE_COMMIT,    /* an item committed / a message arrived / a state change */
    WAKE_CREATE,    /* an item was created: only partial listers care */
} wake_kind;

typedef struct waiter {
    struct MHD_Connection *conn;
    int fd;                     /* the connection's socket, watched for hangup */
    uint64_t id;                /* unique while registered */
    char key[WAITER_KEY_LEN];
    bool wants_create;          /* woken by WAKE_CREATE too */
    struct timespec deadline;   /* CLOCK_MONOTONIC */
    bool registered;            /* in the registry now */
    bool suspended_once;        /* it has waited; do not wait again */
    struct waiter *prev, *next;
} waiter;

typedef struct waiters waiters;

chute_status waiters_create(waiters **out);
/* Stop the timer thread; every waiter must be gone (see waiters_shutdown). */
void waiters_destroy(waiters *ws);

void waiters_lock(waiters *ws);
void waiters_unlock(waiters *ws);
/* With the lock held: register w and suspend its connection for at most
 * wait_ms. false (nothing done) when shutting down: answer at once. */
bool waiters_suspend(waiters *ws, waiter *w, struct MHD_Connection *conn,
                     const char *key, bool wants_create, unsigned wait_ms);
/* Wake the waiters of key. */
void waiters_wake(waiters *ws, const char *key, wake_kind kind);
/* Take w out if it is still in (its request ended). */
void waiters_forget(waiters *ws, waiter *w);
/* Wake everyone and refuse new waiters. */
void waiters_shutdown(waiters *ws);
size_t waiters_count(waiters *ws);

#endif
