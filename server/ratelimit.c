/* ratelimit.c — token buckets keyed by client address (see ratelimit.h). */
#include "ratelimit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLOTS 4096          /* buckets kept */
#define PROBE 8             /* slots looked at per address */

typedef struct {
    uint8_t key[17];        /* 16 address bytes (v4 mapped) + kind */
    bool used;
    double tokens;
    double stamp;           /* monotonic seconds of the last refill */
} bucket;

struct ratelimit {
    pthread_mutex_t mu;
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    bucket slots[SLOTS];
};

chute_status ratelimit_create(ratelimit **out)
{
    ratelimit *rl = calloc(1, sizeof *rl);
    if (!rl)
        return CHUTE_ERR_NOMEM;
    if (pthread_mutex_init(&rl->mu, NULL) != 0) {
        free(rl);
        return CHUTE_ERR_NOMEM;
    }
    /* A keyed hash, so nobody can aim addresses at one slot. */
    crypto_shorthash_keygen(rl->hash_key);
    *out = rl;
    return CHUTE_OK;
}

void ratelimit_destroy(ratelimit *rl)
{
    if (!rl)
        return;
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

static void make_key(const struct sockaddr *addr, rl_kind kind, uint8_t key[17])
{
    memset(key, 0, 17);
    if (addr && addr->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &a->sin_addr, 4);
    } else if (addr && addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
            /* An IPv4 client of a dual-stack socket: its /64 would be
             * every IPv4 client's. It is its IPv4 address, as above. */
            memcpy(key, &a->sin6_addr, 16);
        else
            /* A /64 is what one client usually has. */
            memcpy(key, &a->sin6_addr, 8);
    }
    key[16] = (uint8_t)kind;
}

bool ratelimit_take(ratelimit *rl, const struct sockaddr *addr, rl_kind kind,
                    uint64_t per_min, uint64_t *retry_after)
{
    if (per_min == 0)
        return true;
    uint8_t key[17];
    make_key(addr, kind, key);
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key, sizeof key, rl->hash_key);
    size_t base = ((size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16) % SLOTS;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    double cap = (double)per_min, rate = cap / 60.0;

    pthread_mutex_lock(&rl->mu);
    bucket *b = NULL, *oldest = NULL;
    for (size_t i = 0; i < PROBE && !b; i++) {
        bucket *s = &rl->slots[(base + i) % SLOTS];
        if (s->used && memcmp(s->key, key, sizeof key) == 0)
            b = s;
        else if (!oldest || !s->used || (oldest->used && s->stamp < oldest->stamp))
            oldest = s;
    }
    if (!b) {
        b = oldest;
        memcpy(b->key, key, sizeof key);
        b->used = true;
        b->tokens = cap;
        b->stamp = now;
    }
    b->tokens += (now - b->stamp) * rate;
    if (b->tokens > cap)
        b->tokens = cap;
    b->stamp = now;
    bool ok = b->tokens >= 1.0;
    if (ok)
        b->tokens -= 1.0;
    else
    {
        double need = (1.0 - b->tokens) / rate;
        *retry_after = (uint64_t)need;
        if ((double)*retry_after < need)
            (*retry_after)++;
    }
    pthread_mutex_unlock(&rl->mu);
    if (!ok && *retry_after < 1)
        *retry_after = 1;
    return ok;
}
