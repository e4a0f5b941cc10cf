/* syncer.c — see syncer.h. */
#include "syncer.h"

#include <pthread.h>
#include <stdlib.h>

struct body_syncer {
    syncer_checkpoint_fn checkpoint;
    void *arg;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* a request, its end, or stopping */
    uint64_t wanted;          /* the checkpoint asked or in progress; 0: none */
    bool stopping;
};

static void *sync_loop(void *arg)
{
    body_syncer *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->wanted && !s->stopping) pthread_cond_wait(&s->cv, &s->mu);
        if (!s->wanted) break;
        uint64_t off = s->wanted;
        pthread_mutex_unlock(&s->mu);
        /* failed: no later checkpoint succeeds either (blob_writer_sync),
         * and the PATCH ends with the last offset that was made durable */
        (void)s->checkpoint(s->arg, off);
        pthread_mutex_lock(&s->mu);
        s->wanted = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

chute_status body_syncer_new(syncer_checkpoint_fn checkpoint, void *arg, body_syncer **out)
{
    *out = NULL;
    body_syncer *s = calloc(1, sizeof *s);
    if (!s) return CHUTE_ERR_NOMEM;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return CHUTE_ERR_NOMEM;
    }
    if (pthread_cond_init(&s->cv, NULL) != 0) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return CHUTE_ERR_NOMEM;
    }
    s->checkpoint = checkpoint;
    s->arg = arg;
    *out = s;
    return CHUTE_OK;
}

bool body_syncer_offer(body_syncer *s, uint64_t offset)
{
    if (!offset) return false;
    if (!s->started && pthread_create(&s->thread, NULL, sync_loop, s) == 0)
        s->started = true;
    if (!s->started) {
        /* no thread to be had: checkpoint here, as before there was one */
        return s->checkpoint(s->arg, offset) == CHUTE_OK;
    }
    pthread_mutex_lock(&s->mu);
    bool taken = !s->wanted;
    if (taken) {
        s->wanted = offset;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return taken;
}

void body_syncer_free(body_syncer *s)
{
    if (!s) return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
