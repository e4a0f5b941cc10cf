/* waiters.c — the long-poll registry and its timer thread (see waiters.h). */
#include "waiters.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct waiters {
    pthread_mutex_t mu;
    pthread_cond_t cond;        /* the timer sleeps on it (CLOCK_MONOTONIC) */
    pthread_t timer;
    bool timer_started, stopping, timer_exit;
    waiter *head;
    size_t count;
};

static bool before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Unlink and resume (lock held). */
static void resume_locked(waiters *ws, waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        ws->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->registered = false;
    ws->count--;
    MHD_resume_connection(w->conn);
}

static void *timer_main(void *arg)
{
    waiters *ws = arg;
    pthread_mutex_lock(&ws->mu);
    while (!ws->timer_exit) {
        struct timespec now, next;
        clock_gettime(CLOCK_MONOTONIC, &now);
        next = now;
        next.tv_sec += 1;           /* look again at least once a second */
        for (waiter *w = ws->head, *n; w; w = n) {
            n = w->next;
            if (!before(&now, &w->deadline))
                resume_locked(ws, w);
            else if (before(&w->deadline, &next))
                next = w->deadline;
        }
        pthread_cond_timedwait(&ws->cond, &ws->mu, &next);
    }
    pthread_mutex_unlock(&ws->mu);
    return NULL;
}

chute_status waiters_create(waiters **out)
{
    waiters *ws = calloc(1, sizeof *ws);
    if (!ws)
        return CHUTE_ERR_NOMEM;
    pthread_condattr_t ca;
    if (pthread_mutex_init(&ws->mu, NULL) != 0) {
        free(ws);
        return CHUTE_ERR_NOMEM;
    }
    if (pthread_condattr_init(&ca) != 0 ||
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&ws->cond, &ca) != 0) {
        pthread_mutex_destroy(&ws->mu);
        free(ws);
        return CHUTE_ERR_NOMEM;
    }
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&ws->timer, NULL, timer_main, ws);
    if (rc != 0) {
        log_error("cannot start the long-poll timer: %s", strerror(rc));
        pthread_cond_destroy(&ws->cond);
        pthread_mutex_destroy(&ws->mu);
        free(ws);
        return CHUTE_ERR_NOMEM;
    }
    ws->timer_started = true;
    *out = ws;
    return CHUTE_OK;
}

void waiters_destroy(waiters *ws)
{
    if (!ws)
        return;
    pthread_mutex_lock(&ws->mu);
    ws->timer_exit = true;
    pthread_cond_signal(&ws->cond);
    pthread_mutex_unlock(&ws->mu);
    if (ws->timer_started)
        pthread_join(ws->timer, NULL);
    pthread_cond_destroy(&ws->cond);
    pthread_mutex_destroy(&ws->mu);
    free(ws);
}

void waiters_lock(waiters *ws) { pthread_mutex_lock(&ws->mu); }
void waiters_unlock(waiters *ws) { pthread_mutex_unlock(&ws->mu); }

bool waiters_suspend(waiters *ws, waiter *w, struct MHD_Connection *conn,
                     const char *key, bool wants_create, unsigned wait_ms)
{
    if (ws->stopping || w->suspended_once)
        return false;
    w->conn = conn;
    snprintf(w->key, sizeof w->key, "%s", key);
    w->wants_create = wants_create;
    clock_gettime(CLOCK_MONOTONIC, &w->deadline);
    w->deadline.tv_sec += wait_ms / 1000;
    w->deadline.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (w->deadline.tv_nsec >= 1000000000L) {
        w->deadline.tv_sec++;
        w->deadline.tv_nsec -= 1000000000L;
    }
    w->prev = NULL;
    w->next = ws->head;
    if (ws->head)
        ws->head->prev = w;
    ws->head = w;
    w->registered = true;
    w->suspended_once = true;
    ws->count++;
    /* Suspend under our lock, so no waker can resume it before this. */
    MHD_suspend_connection(conn);
    pthread_cond_signal(&ws->cond);     /* the timer may need to wake sooner */
    return true;
}

void waiters_wake(waiters *ws, const char *key, wake_kind kind)
{
    pthread_mutex_lock(&ws->mu);
    for (waiter *w = ws->head, *n; w; w = n) {
        n = w->next;
        if (strcmp(w->key, key) == 0 && (kind == WAKE_COMMIT || w->wants_create))
            resume_locked(ws, w);
    }
    pthread_mutex_unlock(&ws->mu);
}

void waiters_forget(waiters *ws, waiter *w)
{
    pthread_mutex_lock(&ws->mu);
    if (w->registered) {
        if (w->prev)
            w->prev->next = w->next;
        else
            ws->head = w->next;
        if (w->next)
            w->next->prev = w->prev;
        w->registered = false;
        ws->count--;
    }
    pthread_mutex_unlock(&ws->mu);
}

void waiters_shutdown(waiters *ws)
{
    pthread_mutex_lock(&ws->mu);
    ws->stopping = true;
    while (ws->head)
        resume_locked(ws, ws->head);
    pthread_mutex_unlock(&ws->mu);
}

size_t waiters_count(waiters *ws)
{
    pthread_mutex_lock(&ws->mu);
    size_t n = ws->count;
    pthread_mutex_unlock(&ws->mu);
    return n;
}
