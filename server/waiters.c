/* waiters.c — the long-poll registry and its timer thread (see waiters.h). */
#include "waiters.h"

#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct waiters {
    pthread_mutex_t mu;
    int wakefd;                 /* eventfd: the watcher rebuilds its poll set */
    pthread_t timer;
    bool timer_started, stopping, timer_exit;
    waiter *head;
    size_t count;
    uint64_t next_id;
};

static void poke(waiters *ws)
{
    uint64_t one = 1;
    if (write(ws->wakefd, &one, sizeof one) < 0 && errno != EAGAIN)
        log_warn("cannot wake the long-poll watcher: %s", strerror(errno));
}

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

static long ms_until(const struct timespec *now, const struct timespec *t)
{
    long ms = (long)(t->tv_sec - now->tv_sec) * 1000 + (t->tv_nsec - now->tv_nsec) / 1000000;
    return ms < 0 ? 0 : ms + 1;
}

/* The watcher: sleeps in poll() on the wake eventfd and every waiter's
 * socket (for hangup only, so pipelined bytes do not spin it) until the
 * nearest deadline, then resumes the expired and the hung up. */
static void *timer_main(void *arg)
{
    waiters *ws = arg;
    struct pollfd *fds = NULL;
    uint64_t *ids = NULL;
    size_t cap = 0;
    pthread_mutex_lock(&ws->mu);
    while (!ws->timer_exit) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long timeout = 1000;            /* look again at least once a second */
        for (waiter *w = ws->head, *n; w; w = n) {
            n = w->next;
            if (!before(&now, &w->deadline))
                resume_locked(ws, w);
            else if (ms_until(&now, &w->deadline) < timeout)
                timeout = ms_until(&now, &w->deadline);
        }
        if (ws->count + 1 > cap) {
            size_t ncap = (ws->count + 1) * 2;
            struct pollfd *f = realloc(fds, ncap * sizeof *f);
            uint64_t *i = f ? realloc(ids, ncap * sizeof *i) : NULL;
            if (f)
                fds = f;
            if (i) {
                ids = i;
                cap = ncap;
            }
        }
        size_t n = 0;
        if (cap > 0) {
            fds[n++] = (struct pollfd){ .fd = ws->wakefd, .events = POLLIN };
            for (waiter *w = ws->head; w && n < cap; w = w->next) {
                fds[n] = (struct pollfd){ .fd = w->fd, .events = POLLRDHUP };
                ids[n++] = w->id;
            }
        }
        pthread_mutex_unlock(&ws->mu);
        if (n > 0) {
            if (poll(fds, n, (int)timeout) < 0 && errno != EINTR)
                log_warn("poll: %s", strerror(errno));
        } else {
            struct timespec nap = { 0, 100 * 1000 * 1000 };   /* out of memory */
            nanosleep(&nap, NULL);
        }
        pthread_mutex_lock(&ws->mu);
        uint64_t drained;
        if (n > 0 && (fds[0].revents & POLLIN) &&
            read(ws->wakefd, &drained, sizeof drained) < 0 && errno != EAGAIN)
            log_warn("read eventfd: %s", strerror(errno));
        /* Hung up: resume by id, since the waiter may have gone meanwhile. */
        for (size_t k = 1; k < n; k++) {
            if (!(fds[k].revents & (POLLRDHUP | POLLHUP | POLLERR)))
                continue;
            for (waiter *w = ws->head; w; w = w->next)
                if (w->id == ids[k]) {
                    resume_locked(ws, w);
                    break;
                }
        }
    }
    pthread_mutex_unlock(&ws->mu);
    free(fds);
    free(ids);
    return NULL;
}

chute_status waiters_create(waiters **out)
{
    waiters *ws = calloc(1, sizeof *ws);
    if (!ws)
        return CHUTE_ERR_NOMEM;
    if (pthread_mutex_init(&ws->mu, NULL) != 0) {
        free(ws);
        return CHUTE_ERR_NOMEM;
    }
    ws->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ws->wakefd < 0) {
        log_error("eventfd: %s", strerror(errno));
        pthread_mutex_destroy(&ws->mu);
        free(ws);
        return CHUTE_ERR_IO;
    }
    int rc = pthread_create(&ws->timer, NULL, timer_main, ws);
    if (rc != 0) {
        log_error("cannot start the long-poll watcher: %s", strerror(rc));
        close(ws->wakefd);
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
    poke(ws);
    pthread_mutex_unlock(&ws->mu);
    if (ws->timer_started)
        pthread_join(ws->timer, NULL);
    close(ws->wakefd);
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
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    w->conn = conn;
    w->fd = ci ? ci->connect_fd : -1;
    w->id = ++ws->next_id;
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
    poke(ws);                           /* watch its socket and deadline too */
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
