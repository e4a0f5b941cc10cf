/* test_backoff.c — the retry delay: grows, stays in its jitter band, caps. */
#include <stdint.h>

#include "backoff.h"
#include "unit.h"

#define S 1000ull
#define CAP (300 * S)

static void test_no_failure_no_delay(void)
{
    CHECK_EQ_INT(backoff_delay_ms(0, S, CAP, 12345), 0);
    CHECK_EQ_INT(backoff_delay_ms(3, 0, CAP, 12345), 0);
    CHECK_EQ_INT(backoff_delay_ms(3, S, 0, 12345), 0);
}

static void test_band_of_each_attempt(void)
{
    /* attempt n: ceiling = min(cap, base * 2^(n-1)), delay in [ceiling/2, ceiling] */
    uint64_t ceiling = S;
    for (uint32_t n = 1; n <= 12; n++) {
        uint64_t lo = backoff_delay_ms(n, S, CAP, 0);
        uint64_t hi = backoff_delay_ms(n, S, CAP, UINT32_MAX);
        CHECK(lo == ceiling / 2);
        CHECK(hi >= lo && hi <= ceiling);
        for (uint32_t r = 0; r < 1000; r += 37) {
            uint64_t d = backoff_delay_ms(n, S, CAP, r * 2654435761u);
            CHECK(d >= ceiling / 2 && d <= ceiling);
        }
        ceiling = ceiling * 2 > CAP ? CAP : ceiling * 2;
    }
}

static void test_exact_values(void)
{
    CHECK_EQ_INT(backoff_delay_ms(1, S, CAP, 0), 500);
    CHECK_EQ_INT(backoff_delay_ms(1, S, CAP, 500), 1000);       /* top of the band */
    CHECK_EQ_INT(backoff_delay_ms(1, S, CAP, 501), 500);        /* wraps into it */
    CHECK_EQ_INT(backoff_delay_ms(2, S, CAP, 0), 1000);
    CHECK_EQ_INT(backoff_delay_ms(4, S, CAP, 0), 4000);
    CHECK_EQ_INT(backoff_delay_ms(4, S, CAP, 4000), 8000);
}

static void test_capped_and_no_overflow(void)
{
    for (uint32_t n = 9; n < 100; n++)
        CHECK(backoff_delay_ms(n, S, CAP, UINT32_MAX) <= CAP);
    CHECK_EQ_INT(backoff_delay_ms(UINT32_MAX, S, CAP, 0), CAP / 2);
    CHECK(backoff_delay_ms(UINT32_MAX, UINT64_MAX / 3, UINT64_MAX, UINT32_MAX) <= UINT64_MAX);
    CHECK_EQ_INT(backoff_delay_ms(70, 1, UINT64_MAX, 0), UINT64_MAX / 2);
    /* a base above the cap starts at the cap */
    CHECK_EQ_INT(backoff_delay_ms(1, 10 * CAP, CAP, 0), CAP / 2);
}

static void test_grows_monotonically_at_fixed_draw(void)
{
    uint64_t prev = 0;
    for (uint32_t n = 1; n < 40; n++) {
        uint64_t d = backoff_delay_ms(n, S, CAP, 0);
        CHECK(d >= prev);
        prev = d;
    }
    CHECK_EQ_INT(prev, CAP / 2);
}

int main(void)
{
    RUN(test_no_failure_no_delay);
    RUN(test_band_of_each_attempt);
    RUN(test_exact_values);
    RUN(test_capped_and_no_overflow);
    RUN(test_grows_monotonically_at_fixed_draw);
    return unit_done();
}
