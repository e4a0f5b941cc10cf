/* reach.h — whether the relay answers, as the mount's workers last saw it.
 *
 * The uploader and the downloader both report every request's outcome
 * here and the latest observation wins: the downloader long-polls all the
 * time, the uploader only when it has work, so neither alone is fresh. */
#ifndef CHUTE_FS_REACH_H
#define CHUTE_FS_REACH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define RELAY_REACH_ERROR_MAX 256

typedef struct {
    pthread_mutex_t mu;
    int state;                    /* 0 unknown, 1 reachable, 2 unreachable */
    time_t since;                 /* when state last changed */
    char error[RELAY_REACH_ERROR_MAX];  /* the last failure's text */
} relay_reach;

void relay_reach_init(relay_reach *r);
void relay_reach_destroy(relay_reach *r);

/* One request's outcome; error is the failure's text (NULL if none). */
void relay_reach_note(relay_reach *r, bool reachable, const char *error);

/* For the status file: "unknown", "reachable since <UTC>" or
 * "unreachable since <UTC> (<last error>)"; returns buf. */
const char *relay_reach_text(relay_reach *r, char *buf, size_t cap);

#endif
