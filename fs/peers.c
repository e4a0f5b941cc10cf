/* peers.c — see peers.h. */
#include "peers.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct peers {
    devstate *ds;
    pthread_mutex_t mu;      /* guards list and the devstate handle */
    devstate_peer *list;
    size_t n;
    long long version;       /* PRAGMA data_version at the last read */
    bool loaded;
};

static long long data_version(devstate *ds)
{
    sqlite3_stmt *s;
    long long v = -1;
    if (sqlite3_prepare_v2(devstate_db(ds), "PRAGMA data_version", -1, &s, NULL) == SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
    }
    return v;
}

/* Caller holds mu. On failure keep the old list: a busy DB must not make
 * every peer folder vanish. */
static void reload(peers *p)
{
    long long v = data_version(p->ds);
    if (p->loaded && v == p->version && v != -1) return;
    devstate_peer *list;
    size_t n;
    if (devstate_list_peers(p->ds, &list, &n) != CHUTE_OK) return;
    devstate_peers_free(p->list, p->n);
    p->list = list;
    p->n = n;
    p->version = v;
    p->loaded = true;
}

chute_status peers_open(devstate *ds, peers **out)
{
    if (!ds || !out) return CHUTE_ERR_ARG;
    peers *p = calloc(1, sizeof *p);
    if (!p) return CHUTE_ERR_NOMEM;
    p->ds = ds;
    pthread_mutex_init(&p->mu, NULL);
    reload(p);
    *out = p;
    return CHUTE_OK;
}

void peers_close(peers *p)
{
    if (!p) return;
    devstate_peers_free(p->list, p->n);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void peers_refresh(peers *p)
{
    pthread_mutex_lock(&p->mu);
    reload(p);
    pthread_mutex_unlock(&p->mu);
}

static devstate_peer *find(peers *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->list[i].name, name) == 0) return &p->list[i];
    return NULL;
}

bool peers_has(peers *p, const char *name)
{
    pthread_mutex_lock(&p->mu);
    reload(p);
    bool yes = find(p, name) != NULL;
    pthread_mutex_unlock(&p->mu);
    return yes;
}

chute_status peers_get(peers *p, const char *name, devstate_peer *out)
{
    pthread_mutex_lock(&p->mu);
    reload(p);
    devstate_peer *f = find(p, name);
    if (f) *out = *f;
    pthread_mutex_unlock(&p->mu);
    return f ? CHUTE_OK : CHUTE_ERR_NOT_FOUND;
}

void peers_each(peers *p, void (*fn)(const char *name, void *arg), void *arg)
{
    pthread_mutex_lock(&p->mu);
    reload(p);
    for (size_t i = 0; i < p->n; i++) fn(p->list[i].name, arg);
    pthread_mutex_unlock(&p->mu);
}

void peers_each_relay(peers *p, void (*fn)(const char *name, const char *relay_url, void *arg),
                      void *arg)
{
    pthread_mutex_lock(&p->mu);
    reload(p);
    for (size_t i = 0; i < p->n; i++) fn(p->list[i].name, p->list[i].relay_url, arg);
    pthread_mutex_unlock(&p->mu);
}
