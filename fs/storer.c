/* storer.c — see storer.h. */
#include "storer.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

/* 8 MiB in flight: the downloader goes on decrypting while the storer
 * waits on a write or a batch's commit (with 4 MiB the downloader spent
 * ~2 s of a 1 GiB transfer waiting for a slot). */
#define SLOTS 128
/* The download stalled (a relay that paused, an upload being followed):
 * after this long without a slot, what is stored is committed — durable
 * for a resume, and the chunk file no longer locked (chunkstore.h). */
#define IDLE_CHECKPOINT_MS 100

struct storer {
    cache_txn *t;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* any change below */
    uint8_t *mem;                 /* SLOTS × STORER_SLOT_BYTES, mapped */
    unsigned used;                /* slots [0, used) were ever handed out */
    size_t len[SLOTS];
    unsigned head, tail, count;   /* filled slots: [head, head+count) mod SLOTS */
    bool taken;                   /* the caller holds slot tail */
    bool checkpointing;           /* the thread commits, mu released */
    bool stopping;
    chute_status failed;
};

static uint8_t *slot_mem(storer *s, unsigned i)
{
    return s->mem + (size_t)i * STORER_SLOT_BYTES;
}

/* Wait (mu held) for a slot or the stop; if none comes for
 * IDLE_CHECKPOINT_MS after something was stored, checkpoint once. */
static void wait_for_work(storer *s, bool *stored_since)
{
    while (!s->count && !s->stopping) {
        if (!*stored_since || s->failed) { pthread_cond_wait(&s->cv, &s->mu); continue; }
        struct timespec at;
        clock_gettime(CLOCK_MONOTONIC, &at);
        at.tv_nsec += IDLE_CHECKPOINT_MS * 1000000L;
        if (at.tv_nsec >= 1000000000L) { at.tv_sec++; at.tv_nsec -= 1000000000L; }
        while (!s->count && !s->stopping &&
               pthread_cond_timedwait(&s->cv, &s->mu, &at) != ETIMEDOUT) {
        }
        if (s->count || s->stopping) return;
        *stored_since = false;
        s->checkpointing = true;
        pthread_mutex_unlock(&s->mu);
        chute_status st = cache_item_checkpoint(s->t);
        pthread_mutex_lock(&s->mu);
        s->checkpointing = false;
        if (st && !s->failed) s->failed = st;
        pthread_cond_broadcast(&s->cv);   /* a drain waits for it */
    }
}

static void *store_loop(void *arg)
{
    storer *s = arg;
    bool stored_since = false;   /* appended since the last checkpoint */
    pthread_mutex_lock(&s->mu);
    for (;;) {
        wait_for_work(s, &stored_since);
        if (!s->count) break;
        unsigned i = s->head;
        size_t n = s->len[i];
        bool skip = s->failed != CHUTE_OK;
        pthread_mutex_unlock(&s->mu);
        chute_status st = skip ? CHUTE_OK : cache_item_append(s->t, slot_mem(s, i), n);
        pthread_mutex_lock(&s->mu);
        stored_since = true;
        if (st && !s->failed) s->failed = st;
        s->head = (s->head + 1) % SLOTS;
        s->count--;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

chute_status storer_start(cache_txn *t, storer **out)
{
    *out = NULL;
    storer *s = calloc(1, sizeof *s);
    if (!s) return CHUTE_ERR_NOMEM;
    /* Mapped, not malloc'd: the pool goes back to the system when the item
     * ends (glibc would keep a freed 8 MiB in its heap), and a small item
     * touches only the pages of the slots it uses. */
    void *mem = mmap(NULL, (size_t)SLOTS * STORER_SLOT_BYTES, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) { free(s); return CHUTE_ERR_NOMEM; }
    s->mem = mem;
    s->t = t;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&s->thread, NULL, store_loop, s) != 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        munmap(s->mem, (size_t)SLOTS * STORER_SLOT_BYTES);
        free(s);
        return CHUTE_ERR_NOMEM;
    }
    *out = s;
    return CHUTE_OK;
}

chute_status storer_slot(storer *s, uint8_t **buf)
{
    pthread_mutex_lock(&s->mu);
    while (s->count == SLOTS && !s->failed) pthread_cond_wait(&s->cv, &s->mu);
    chute_status st = s->failed;
    if (!st) {
        s->taken = true;
        if (s->tail >= s->used) s->used = s->tail + 1;
        *buf = slot_mem(s, s->tail);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

chute_status storer_put(storer *s, size_t n)
{
    pthread_mutex_lock(&s->mu);
    chute_status st = s->failed;
    if (!s->taken || n > STORER_SLOT_BYTES) st = CHUTE_ERR_ARG;
    s->taken = false;
    if (!st && n) {
        s->len[s->tail] = n;
        s->tail = (s->tail + 1) % SLOTS;
        s->count++;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

chute_status storer_drain(storer *s)
{
    pthread_mutex_lock(&s->mu);
    /* and for a checkpoint under way: the caller commits next, on the
     * same connection, and must learn if the checkpoint failed */
    while (s->count || s->checkpointing) pthread_cond_wait(&s->cv, &s->mu);
    chute_status st = s->failed;
    pthread_mutex_unlock(&s->mu);
    return st;
}

void storer_free(storer *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);   /* it stores what was put, then ends */
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    sodium_memzero(s->mem, (size_t)s->used * STORER_SLOT_BYTES);   /* plaintext */
    munmap(s->mem, (size_t)SLOTS * STORER_SLOT_BYTES);
    free(s);
}
