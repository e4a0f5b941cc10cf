/* growing.c — see growing.h. */
#include "growing.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The table's lock guards every entry: entries are few and their changes
 * short. */
struct growing {
    struct growing_table *table;
    char id[QUEUE_ID_LEN + 1];
    int fd;
    int refs;
    uint64_t size;
    growing_end end;
    struct growing *next;
};

struct growing_table {
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* any entry grew or ended */
    growing *head;
};

chute_status growing_table_new(growing_table **out)
{
    growing_table *t = calloc(1, sizeof *t);
    if (!t) return CHUTE_ERR_NOMEM;
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, &a);
    pthread_condattr_destroy(&a);
    *out = t;
    return CHUTE_OK;
}

void growing_table_free(growing_table *t)
{
    if (!t) return;
    while (t->head) {   /* only after both sides let go; defensive */
        growing *g = t->head;
        t->head = g->next;
        close(g->fd);
        free(g);
    }
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

chute_status growing_add(growing_table *t, const char *id, int fd, uint64_t size,
                         growing **out)
{
    growing *g = calloc(1, sizeof *g);
    if (!g) return CHUTE_ERR_NOMEM;
    strncpy(g->id, id, QUEUE_ID_LEN);
    g->table = t;
    g->fd = fd;
    g->refs = 1;
    g->size = size;
    g->end = GROWING_OPEN;
    pthread_mutex_lock(&t->mu);
    g->next = t->head;
    t->head = g;
    pthread_mutex_unlock(&t->mu);
    *out = g;
    return CHUTE_OK;
}

growing *growing_find(growing_table *t, const char *id)
{
    pthread_mutex_lock(&t->mu);
    growing *g = t->head;
    while (g && strcmp(g->id, id) != 0) g = g->next;
    if (g) g->refs++;
    pthread_mutex_unlock(&t->mu);
    return g;
}

void growing_ref(growing *g)
{
    pthread_mutex_lock(&g->table->mu);
    g->refs++;
    pthread_mutex_unlock(&g->table->mu);
}

void growing_release(growing_table *t, growing *g)
{
    if (!g) return;
    pthread_mutex_lock(&t->mu);
    bool last = --g->refs == 0;
    if (last) {
        growing **p = &t->head;
        while (*p && *p != g) p = &(*p)->next;
        if (*p) *p = g->next;
    }
    pthread_mutex_unlock(&t->mu);
    if (!last) return;
    close(g->fd);
    free(g);
}

const char *growing_id(const growing *g) { return g->id; }
int growing_fd(const growing *g) { return g->fd; }

void growing_grew(growing *g, uint64_t size)
{
    growing_table *t = g->table;
    pthread_mutex_lock(&t->mu);
    if (g->end == GROWING_OPEN && size > g->size) {
        g->size = size;
        pthread_cond_broadcast(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
}

void growing_finish(growing *g, growing_end how, uint64_t size)
{
    growing_table *t = g->table;
    pthread_mutex_lock(&t->mu);
    if (g->end == GROWING_OPEN) {
        g->end = how;
        if (how == GROWING_SEALED) g->size = size;
    }
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

growing_end growing_wait(growing *g, uint64_t want, int timeout_ms, uint64_t *size)
{
    growing_table *t = g->table;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    pthread_mutex_lock(&t->mu);
    while (g->end == GROWING_OPEN && g->size < want)
        if (pthread_cond_timedwait(&t->cv, &t->mu, &ts) != 0) break;
    growing_end end = g->end;
    *size = g->size;
    pthread_mutex_unlock(&t->mu);
    return end;
}
