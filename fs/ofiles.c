/* ofiles.c — see ofiles.h. A list: the number of files open at once in an
 * outbox is small. */
#include "ofiles.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct ofiles {
    pthread_mutex_t mu;
    pthread_cond_t released;   /* a release has begun (ofiles_note_release) */
    pthread_rwlock_t content;
    ofile *head;
};

chute_status ofiles_new(ofiles **out)
{
    ofiles *o = calloc(1, sizeof *o);
    if (!o) return CHUTE_ERR_NOMEM;
    pthread_mutex_init(&o->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&o->released, &ca);
    pthread_condattr_destroy(&ca);
    /* Writes hold it shared almost all the time while a copy runs: a
     * seal waiting for it must not starve behind them. */
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&o->content, &a);
    pthread_rwlockattr_destroy(&a);
    *out = o;
    return CHUTE_OK;
}

static void drop(ofile *f)
{
    if (f->orphan_fd >= 0) close(f->orphan_fd);
    free(f->peer);
    free(f->path);
    free(f);
}

void ofiles_free(ofiles *o)
{
    if (!o) return;
    for (ofile *f = o->head, *n; f; f = n) { n = f->next; drop(f); }
    pthread_mutex_destroy(&o->mu);
    pthread_rwlock_destroy(&o->content);
    free(o);
}

void ofiles_lock(ofiles *o) { pthread_mutex_lock(&o->mu); }

void ofiles_note_release(ofiles *o) { pthread_cond_broadcast(&o->released); }

bool ofiles_wait_release(ofiles *o, const struct timespec *until)
{
    return pthread_cond_timedwait(&o->released, &o->mu, until) == 0;
}
void ofiles_unlock(ofiles *o) { pthread_mutex_unlock(&o->mu); }
void ofiles_content_shared(ofiles *o) { pthread_rwlock_rdlock(&o->content); }
void ofiles_content_excl(ofiles *o) { pthread_rwlock_wrlock(&o->content); }
void ofiles_content_unlock(ofiles *o) { pthread_rwlock_unlock(&o->content); }

ofile *ofiles_find(ofiles *o, const char *peer, const char *path)
{
    for (ofile *f = o->head; f; f = f->next)
        if (!f->unlinked && strcmp(f->peer, peer) == 0 && strcmp(f->path, path) == 0)
            return f;
    return NULL;
}

ofile *ofiles_acquire(ofiles *o, const char *peer, const char *path)
{
    ofile *f = ofiles_find(o, peer, path);
    if (f) { f->opens++; return f; }
    f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->peer = strdup(peer);
    f->path = strdup(path);
    f->orphan_fd = -1;
    if (!f->peer || !f->path) { drop(f); return NULL; }
    f->opens = 1;
    f->next = o->head;
    o->head = f;
    return f;
}

int ofiles_release(ofiles *o, ofile *f)
{
    if (--f->opens > 0) return f->opens;
    for (ofile **pp = &o->head; *pp; pp = &(*pp)->next) {
        if (*pp == f) { *pp = f->next; break; }
    }
    drop(f);
    return 0;
}

chute_status ofiles_move(ofiles *o, const char *peer, const char *from, const char *to)
{
    size_t fl = strlen(from);
    for (ofile *f = o->head; f; f = f->next) {
        if (f->unlinked || strcmp(f->peer, peer) != 0) continue;
        if (strncmp(f->path, from, fl) != 0 || (f->path[fl] && f->path[fl] != '/'))
            continue;
        char *np;
        if (asprintf(&np, "%s%s", to, f->path + fl) < 0) return CHUTE_ERR_NOMEM;
        free(f->path);
        f->path = np;
    }
    return CHUTE_OK;
}
