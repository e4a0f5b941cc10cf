/* sweeper.c — see sweeper.h. One pass a second is cheap (indexed queries)
 * and keeps expiry within a second of the configured lifetimes. */
#include "sweeper.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define SWEEP_SECONDS 1
#define ORPHAN_SECONDS 600
/* Expired pairing sessions are kept this long, so a late claim hears
 * "expired" (410) rather than "unknown" (404). */
#define PAIR_GRACE_SECONDS 3600

struct sweeper {
    store *st;
    blobs *bl;
    const relay_config *cfg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stop;
};

typedef struct {
    store *st;
    blobs *bl;
} parts;

static void remove_body(void *cls, const char *inbox, const char *item)
{
    blob_remove(cls, inbox, item);
}

static bool body_is_live(void *cls, const char *inbox, const char *item)
{
    bool live = true;               /* when in doubt, keep */
    store_item_live(cls, inbox, item, &live);
    return live;
}

static void rewound(chute_status st, uint64_t have)
{
    if (st == CHUTE_OK)
        log_warn("an item's body was short at start: its sender resumes it from byte %llu",
                 (unsigned long long)have);
}

/* An item still uploading: a body shorter than its committed offset (a
 * crash of the disk's, not ours) takes the offset back to what is there,
 * and its sender sends the rest; PATCHes at the old offset could never
 * go on. */
static void check_upload(parts *p, const char *inbox, const char *item, uint64_t offset)
{
    uint64_t have;
    if (blob_part_length(p->bl, inbox, item, &have) == CHUTE_OK && have < offset)
        rewound(store_item_rewind_offset(p->st, inbox, item, have), have);
}

static void finish_item(void *cls, const char *inbox, const char *item)
{
    parts *p = cls;
    uint64_t seq, have = 0;
    store_item it;
    if (store_item_get(p->st, inbox, item, &it) != CHUTE_OK)
        return;
    bool whole = !it.deferred && it.offset == it.size;
    uint64_t size = it.size, offset = it.offset;
    store_item_clear(&it);
    if (!whole) {
        check_upload(p, inbox, item, offset);
        return;
    }
    chute_status st = blob_finish(p->bl, inbox, item, size, &have);
    if (st == CHUTE_OK && store_item_commit(p->st, inbox, item, &seq) == CHUTE_OK)
        log_info("recovered an item whose commit was interrupted");
    /* Its bytes did not all survive: as check_upload. */
    else if (st == CHUTE_ERR_TRUNCATED)
        rewound(store_item_rewind_offset(p->st, inbox, item, have), have);
}

chute_status sweeper_recover(store *st, blobs *bl)
{
    parts p = { st, bl };
    chute_status rc = store_unfinished(st, finish_item, &p);
    if (rc != CHUTE_OK)
        return rc;
    blobs_remove_orphans(bl, body_is_live, st);
    return CHUTE_OK;
}

static void *sweeper_main(void *arg)
{
    sweeper *sw = arg;
    time_t last_orphans = time(NULL);
    pthread_mutex_lock(&sw->mu);
    while (!sw->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += SWEEP_SECONDS;
        pthread_cond_timedwait(&sw->cond, &sw->mu, &until);
        if (sw->stop)
            break;
        pthread_mutex_unlock(&sw->mu);
        time_t now = time(NULL);
        if (store_sweep(sw->st, (int64_t)now, sw->cfg->tombstone_ttl, PAIR_GRACE_SECONDS,
                        remove_body, sw->bl) != CHUTE_OK)
            log_warn("sweep failed; will retry");
        if (now - last_orphans >= ORPHAN_SECONDS) {
            blobs_remove_orphans(sw->bl, body_is_live, sw->st);
            last_orphans = now;
        }
        pthread_mutex_lock(&sw->mu);
    }
    pthread_mutex_unlock(&sw->mu);
    return NULL;
}

chute_status sweeper_start(store *st, blobs *bl, const relay_config *cfg, sweeper **out)
{
    sweeper *sw = calloc(1, sizeof *sw);
    if (!sw)
        return CHUTE_ERR_NOMEM;
    sw->st = st;
    sw->bl = bl;
    sw->cfg = cfg;
    pthread_condattr_t ca;
    if (pthread_mutex_init(&sw->mu, NULL) != 0) {
        free(sw);
        return CHUTE_ERR_NOMEM;
    }
    if (pthread_condattr_init(&ca) != 0 ||
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&sw->cond, &ca) != 0) {
        pthread_mutex_destroy(&sw->mu);
        free(sw);
        return CHUTE_ERR_NOMEM;
    }
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&sw->thread, NULL, sweeper_main, sw);
    if (rc != 0) {
        log_error("cannot start the sweeper: %s", strerror(rc));
        pthread_cond_destroy(&sw->cond);
        pthread_mutex_destroy(&sw->mu);
        free(sw);
        return CHUTE_ERR_NOMEM;
    }
    *out = sw;
    return CHUTE_OK;
}

void sweeper_stop(sweeper *sw)
{
    if (!sw)
        return;
    pthread_mutex_lock(&sw->mu);
    sw->stop = true;
    pthread_cond_signal(&sw->cond);
    pthread_mutex_unlock(&sw->mu);
    pthread_join(sw->thread, NULL);
    pthread_cond_destroy(&sw->cond);
    pthread_mutex_destroy(&sw->mu);
    free(sw);
}
