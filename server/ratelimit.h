/* ratelimit.h — per-client-IP token buckets for pairing attempts and
 * inbox creation.
 *
 * Each (IP, kind) has a bucket of `per_min` tokens refilled continuously at
 * per_min per minute. The table has a fixed size: a flood of addresses
 * evicts old buckets rather than growing memory. */
#ifndef CHUTED_RATELIMIT_H
#define CHUTED_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "status.h"

typedef enum { RL_PAIR_ALLOC = 0, RL_PAIR_CLAIM, RL_INBOX_CREATE } rl_kind;
typedef struct ratelimit ratelimit;

chute_status ratelimit_create(ratelimit **out);
void ratelimit_destroy(ratelimit *rl);
/* Take one token. false when none is left: *retry_after (seconds, >= 1)
 * says when one will be. A per_min of 0 disables the limit. */
bool ratelimit_take(ratelimit *rl, const struct sockaddr *addr, rl_kind kind,
                    uint64_t per_min, uint64_t *retry_after);

#endif
