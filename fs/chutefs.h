/* chutefs.h — the mount's shared context, reachable from every FUSE call.
 *
 * Data flows one way: FUSE op → staging (outbox.c, staging.c) → seal
 * (seal.c) → queue (lib/queue.c) → [uploader, relay] → downloader
 * (downloader.c, receive.c) → cache (lib/cache.c) → FUSE read (inbox.c).
 * FUSE calls answer from local state; only the background threads touch
 * the network. */
#ifndef CHUTEFS_H
#define CHUTEFS_H

#include <limits.h>
#include <pthread.h>
#include <time.h>

#include "reach.h"

#include "cache.h"
#include "devstate.h"
#include "queue.h"

typedef struct peers peers;
typedef struct ofiles ofiles;
typedef struct uploader uploader;
typedef struct downloader downloader;
typedef struct resealer resealer;
typedef struct growing_table growing_table;

typedef struct {
    char home[PATH_MAX];      /* the device state folder */
    char spool[PATH_MAX];     /* home/spool */
    char staging[PATH_MAX];   /* spool/staging/<peer>/<path>: files as written */
    char sealed[PATH_MAX];    /* spool/sealed/<id>.plain: queued plaintexts (hard links) */
    devstate *ds;
    peers *peers;
    ofiles *open;
    queue *q;
    cache *c;
    /* One seal at a time: orders replacements of the same path, and the
     * orphan sweep never sees a link whose row is not inserted yet. */
    pthread_mutex_t seal_mu;
    int lock_fd;              /* flock on home/chutefs.lock: one mount per home */
    time_t started;           /* the fixed folders date from the mount's start */
    uploader *up;             /* background sender (fs/uploader.h); NULL if off */
    growing_table *growing;   /* files sent while written (fs/growing.h) */
    relay_reach reach;        /* does the relay answer? both workers report */
    downloader *dl;           /* the background downloader (fs/downloader.h) */
    resealer *reseal;         /* closed files owed a seal (fs/reseal.h) */
} chutefs;

/* The context of the running mount (fuse_get_context()->private_data). */
chutefs *chutefs_get(void);

/* Map a status to a negative errno for a FUSE reply. */
int chutefs_errno(chute_status st);

#endif
