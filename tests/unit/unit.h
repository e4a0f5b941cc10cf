/* unit.h — the tiny harness every C unit test uses.
 *
 *   static void test_roundtrip_empty(void) { CHECK(x == 0); }
 *   int main(void) { RUN(test_roundtrip_empty); return unit_done(); }
 *
 * A failed CHECK reports file:line and the expression, marks the running
 * test failed and goes on, so one run shows every broken assertion. */
#ifndef CHUTE_UNIT_H
#define CHUTE_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int unit_passed, unit_failed, unit_current_failed;
static const char *unit_current;

#define CHECK(cond) do { \
    if (!(cond)) { \
        fprintf(stderr, "  FAIL %s: %s:%d: %s\n", unit_current, __FILE__, \
                __LINE__, #cond); \
        unit_current_failed = 1; \
    } } while (0)

#define CHECK_EQ_INT(a, b) do { \
    long long unit_a_ = (long long)(a), unit_b_ = (long long)(b); \
    if (unit_a_ != unit_b_) { \
        fprintf(stderr, "  FAIL %s: %s:%d: %s == %s (%lld != %lld)\n", \
                unit_current, __FILE__, __LINE__, #a, #b, unit_a_, unit_b_); \
        unit_current_failed = 1; \
    } } while (0)

#define CHECK_MEM(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)

#define RUN(fn) do { \
    unit_current = #fn; unit_current_failed = 0; \
    fn(); \
    if (unit_current_failed) { unit_failed++; fprintf(stderr, "FAIL %s\n", #fn); } \
    else { unit_passed++; printf("ok   %s\n", #fn); } \
    fflush(stdout); } while (0)

/* Directory of the test vectors (tests/vectors unless CHUTE_VECTORS says). */
static inline const char *unit_vectors_dir(void)
{
    const char *d = getenv("CHUTE_VECTORS");
    return d && *d ? d : "tests/vectors";
}

static inline int unit_done(void)
{
    printf("%d passed, %d failed\n", unit_passed, unit_failed);
    return unit_failed ? 1 : 0;
}

#endif
