/* backoff.h — how long to wait before trying again.
 *
 * Exponential backoff with "equal jitter": the ceiling doubles with each
 * attempt from base up to cap, and the delay is drawn from the upper half
 * [ceiling/2, ceiling]. The half that is fixed keeps a retry from coming
 * too soon; the half that is random keeps many items that failed together
 * (a relay that went down) from all coming back in the same instant.
 *
 * A pure function: the caller passes the random draw, so tests can pin it. */
#ifndef CHUTE_BACKOFF_H
#define CHUTE_BACKOFF_H

#include <stdint.h>

/* The delay before attempt number attempt+1 after `attempt` failures
 * (attempt 0: no failure yet, no delay). rnd is any uniformly random
 * 32-bit value. Never exceeds cap_ms; never overflows. */
uint64_t backoff_delay_ms(uint32_t attempt, uint64_t base_ms, uint64_t cap_ms,
                          uint32_t rnd);

#endif
