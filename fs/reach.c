/* reach.c — see reach.h. */
#include "reach.h"

#include <stdio.h>
#include <string.h>

void relay_reach_init(relay_reach *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
}

void relay_reach_destroy(relay_reach *r)
{
    pthread_mutex_destroy(&r->mu);
}

void relay_reach_note(relay_reach *r, bool reachable, const char *error)
{
    int now = reachable ? 1 : 2;
    pthread_mutex_lock(&r->mu);
    if (r->state != now) {
        r->state = now;
        r->since = time(NULL);
    }
    if (!reachable)
        snprintf(r->error, sizeof r->error, "%s", error && *error ? error : "no answer");
    pthread_mutex_unlock(&r->mu);
}

const char *relay_reach_text(relay_reach *r, char *buf, size_t cap)
{
    pthread_mutex_lock(&r->mu);
    int state = r->state;
    time_t since = r->since;
    char error[RELAY_REACH_ERROR_MAX];
    memcpy(error, r->error, sizeof error);
    pthread_mutex_unlock(&r->mu);

    if (state == 0) {
        snprintf(buf, cap, "unknown");
        return buf;
    }
    char when[32];
    struct tm tm;
    if (!gmtime_r(&since, &tm) || !strftime(when, sizeof when, "%Y-%m-%d %H:%M:%SZ", &tm))
        snprintf(when, sizeof when, "%lld", (long long)since);
    if (state == 1)
        snprintf(buf, cap, "reachable since %s", when);
    else
        snprintf(buf, cap, "unreachable since %s (%s)", when, error);
    return buf;
}
