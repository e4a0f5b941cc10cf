/* reseal.c — see reseal.h. */
#include "reseal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "names.h"
#include "seal.h"
#include "staging.h"
#include "unqueued.h"

#define FIRST_RETRY_S 1
#define LAST_RETRY_S 30
#define IDLE_WAIT_S 60
#define WALK_TRIES 5

typedef struct entry {
    char *peer, *rel;
    chute_status why;      /* CHUTE_OK: found marked by an earlier run */
    unsigned tries;
    struct timespec due;   /* CLOCK_MONOTONIC */
    struct entry *next;
} entry;

struct resealer {
    chutefs *fs;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    unsigned long moves;   /* renames seen: a retry that lost its file to
                              one keeps the entry (it was moved) */
    entry *list;
};

static struct timespec after_s(unsigned s)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += s;
    return t;
}

static bool before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec != b->tv_sec ? a->tv_sec < b->tv_sec : a->tv_nsec < b->tv_nsec;
}

/* With mu held. */
static entry **find(resealer *r, const char *peer, const char *rel)
{
    for (entry **p = &r->list; *p; p = &(*p)->next)
        if (strcmp((*p)->peer, peer) == 0 && strcmp((*p)->rel, rel) == 0) return p;
    return NULL;
}

static void drop(entry **p)
{
    entry *e = *p;
    *p = e->next;
    free(e->peer);
    free(e->rel);
    free(e);
}

static void note_at(resealer *r, const char *peer, const char *rel, chute_status why,
                    unsigned delay_s)
{
    pthread_mutex_lock(&r->mu);
    entry **p = find(r, peer, rel), *e = p ? *p : calloc(1, sizeof *e);
    if (e && !p) {
        e->peer = strdup(peer);
        e->rel = strdup(rel);
        if (!e->peer || !e->rel) {
            free(e->peer);
            free(e->rel);
            free(e);
            e = NULL;   /* it keeps its mark: the next mount retries it */
        } else {
            e->next = r->list;
            r->list = e;
        }
    }
    if (e) {
        e->why = why;
        e->tries = 0;
        e->due = after_s(delay_s);
        pthread_cond_signal(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
}

void resealer_note(resealer *r, const char *peer, const char *rel, chute_status why)
{
    if (r) note_at(r, peer, rel, why, FIRST_RETRY_S);
}

static const char *why_text(chute_status why)
{
    return why == CHUTE_OK ? "left unqueued by an earlier run" : chute_strstatus(why);
}

void resealer_forget(resealer *r, const char *peer, const char *rel)
{
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    entry **p = find(r, peer, rel);
    if (p) drop(p);
    pthread_mutex_unlock(&r->mu);
}

/* rel is `from` or below it: its new name under `to`, or NULL. */
static char *moved(const char *rel, const char *from, const char *to)
{
    size_t n = strlen(from);
    if (strncmp(rel, from, n) != 0 || (rel[n] != '\0' && rel[n] != '/')) return NULL;
    char *out = NULL;
    return asprintf(&out, "%s%s", to, rel + n) < 0 ? NULL : out;
}

void resealer_move(resealer *r, const char *peer, const char *from, const char *to)
{
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->moves++;
    entry **over = find(r, peer, to);   /* replaced by the rename */
    if (over) drop(over);
    for (entry *e = r->list; e; e = e->next) {
        if (strcmp(e->peer, peer) != 0) continue;
        char *now = moved(e->rel, from, to);
        if (!now) continue;
        free(e->rel);
        e->rel = now;
    }
    pthread_mutex_unlock(&r->mu);
}

bool resealer_error(resealer *r, const char *peer, const char *rel, char *out, size_t cap)
{
    if (!r) return false;
    pthread_mutex_lock(&r->mu);
    entry **p = find(r, peer, rel);
    if (p) snprintf(out, cap, "not queued: %s; retrying", why_text((*p)->why));
    pthread_mutex_unlock(&r->mu);
    return p != NULL;
}

chute_status resealer_text(resealer *r, char **out)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return CHUTE_ERR_NOMEM;
    bool any = false;
    if (r) {
        pthread_mutex_lock(&r->mu);
        for (entry *e = r->list; e; e = e->next) {
            char path[PATH_MAX];
            struct stat sb;
            /* Written again or sealed since: its close or the queue tells.
             * (Not staging_path: that makes a missing peer folder.) */
            int n = snprintf(path, sizeof path, "%s/%s/%s", r->fs->staging, e->peer, e->rel);
            if (n < 0 || (size_t)n >= sizeof path || lstat(path, &sb) != 0 ||
                !staging_is_unsealed_at(path))
                continue;
            if (!any) fputs("\nnot queued (closed, but the queue could not take them; retried):\n", f);
            any = true;
            fprintf(f, "%s/%s\tnot queued\t%llu bytes", e->peer, e->rel,
                    (unsigned long long)sb.st_size);
            if (e->tries) fprintf(f, "\tattempts %u", e->tries);
            fprintf(f, "\tlast error: %s\n", why_text(e->why));
        }
        pthread_mutex_unlock(&r->mu);
    }
    if (fclose(f) != 0) { free(text); return CHUTE_ERR_NOMEM; }
    *out = text;
    return CHUTE_OK;
}

/* ---- the thread ------------------------------------------------------ */

/* One marked file the walk found (unqueued.h). */
static int found(const char *peer, const char *rel, const struct stat *sb, void *arg)
{
    resealer *r = arg;
    pthread_mutex_lock(&r->mu);
    bool stop = r->stop;
    pthread_mutex_unlock(&r->mu);
    if (stop) return 1;
    if (sb->st_nlink > 1) {   /* queued (a kill came before the mark went) */
        char path[PATH_MAX];
        int n = snprintf(path, sizeof path, "%s/%s/%s", r->fs->staging, peer, rel);
        if (n > 0 && (size_t)n < sizeof path) staging_clear_unsealed_at(path);
        return 0;
    }
    note_at(r, peer, rel, CHUTE_OK, 0);
    return 0;
}

/* Seal e's file once; with mu held, released meanwhile. */
static void retry(resealer *r, entry *e)
{
    char *peer = strdup(e->peer), *rel = strdup(e->rel);
    if (!peer || !rel) {
        free(peer);
        free(rel);
        e->due = after_s(LAST_RETRY_S);
        return;
    }
    unsigned long moves = r->moves;
    pthread_mutex_unlock(&r->mu);
    /* Renamed to a temporary name: never sealed (a rename back seals it). */
    chute_status st = names_is_temporary_path(rel) ? CHUTE_ERR_REFUSED
                                                   : seal_file_marked(r->fs, peer, rel);
    pthread_mutex_lock(&r->mu);
    /* Moved, forgotten or noted again meanwhile: as it is now. */
    entry **p = find(r, peer, rel);
    /* Gone under a rename that had not told us yet: moved, not dropped. */
    bool lost_to_move = st == CHUTE_ERR_NOT_FOUND && moves != r->moves;
    if (p && !lost_to_move && (st == CHUTE_OK || !seal_failure_passes(st))) {
        drop(p);
    } else if (p) {
        entry *x = *p;
        x->why = st;
        x->tries++;
        unsigned wait = x->tries >= 5 ? LAST_RETRY_S : FIRST_RETRY_S << x->tries;
        x->due = after_s(wait < LAST_RETRY_S ? wait : LAST_RETRY_S);
    }
    free(peer);
    free(rel);
}

static void *reseal_main(void *arg)
{
    resealer *r = arg;
    /* A walk gives up on a folder that goes away under it (a user's rm or
     * mv right after the mount): it starts over, a few times. */
    for (int tries = 1; unqueued_each(r->fs->staging, found, r) != CHUTE_OK; tries++) {
        int e = errno;
        if (tries == WALK_TRIES || (e == ENOENT && access(r->fs->staging, F_OK) != 0)) {
            fprintf(stderr, "chutefs: cannot look for files left unqueued: %s\n", strerror(e));
            break;
        }
        pthread_mutex_lock(&r->mu);
        struct timespec until = after_s(1);
        while (!r->stop && pthread_cond_timedwait(&r->cv, &r->mu, &until) == 0) {}
        bool stop = r->stop;
        pthread_mutex_unlock(&r->mu);
        if (stop) break;
    }
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        entry *next = NULL;
        for (entry *e = r->list; e; e = e->next)
            if (!next || before(&e->due, &next->due)) next = e;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (next && !before(&now, &next->due)) {
            retry(r, next);
            continue;
        }
        struct timespec until = next ? next->due : after_s(IDLE_WAIT_S);
        pthread_cond_timedwait(&r->cv, &r->mu, &until);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

chute_status resealer_start(chutefs *fs, resealer **out)
{
    *out = NULL;
    resealer *r = calloc(1, sizeof *r);
    if (!r) return CHUTE_ERR_NOMEM;
    r->fs = fs;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) { free(r); return CHUTE_ERR_NOMEM; }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) { free(r); return CHUTE_ERR_NOMEM; }
    pthread_mutex_init(&r->mu, NULL);
    if (pthread_create(&r->thread, NULL, reseal_main, r) != 0) {
        pthread_cond_destroy(&r->cv);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return CHUTE_ERR_NOMEM;
    }
    *out = r;
    return CHUTE_OK;
}

void resealer_stop(resealer *r)
{
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    while (r->list) drop(&r->list);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
