/* backoff.c — see backoff.h. */
#include "backoff.h"

uint64_t backoff_delay_ms(uint32_t attempt, uint64_t base_ms, uint64_t cap_ms,
                          uint32_t rnd)
{
    if (attempt == 0 || base_ms == 0 || cap_ms == 0) return 0;
    uint64_t ceiling = base_ms < cap_ms ? base_ms : cap_ms;
    /* Double attempt-1 times, stopping at the cap (and before overflow). */
    for (uint32_t i = 1; i < attempt && ceiling < cap_ms; i++)
        ceiling = ceiling > cap_ms / 2 ? cap_ms : ceiling * 2;
    uint64_t half = ceiling / 2;
    return half + (uint64_t)rnd % (ceiling - half + 1);
}
