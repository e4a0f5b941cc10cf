/* test_status.c — every status has its own description. */
#include "status.h"
#include "unit.h"

static void test_every_status_has_a_distinct_description(void)
{
    for (int i = 0; i < CHUTE_STATUS_COUNT; i++) {
        const char *a = chute_strstatus((chute_status)i);
        CHECK(a != NULL && *a != '\0');
        for (int j = 0; j < i; j++)
            CHECK(strcmp(a, chute_strstatus((chute_status)j)) != 0);
    }
    CHECK(strcmp(chute_strstatus(CHUTE_STATUS_COUNT), "unknown status") == 0);
}

int main(void)
{
    RUN(test_every_status_has_a_distinct_description);
    return unit_done();
}
