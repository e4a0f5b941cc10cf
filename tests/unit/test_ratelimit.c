/* test_ratelimit.c — the relay's per-client buckets (server/ratelimit.c):
 * which addresses count as one client. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sodium.h>

#include "../../server/ratelimit.h"
#include "unit.h"

static struct sockaddr_in v4(const char *a)
{
    struct sockaddr_in s;
    memset(&s, 0, sizeof s);
    s.sin_family = AF_INET;
    inet_pton(AF_INET, a, &s.sin_addr);
    return s;
}

static struct sockaddr_in6 v6(const char *a)
{
    struct sockaddr_in6 s;
    memset(&s, 0, sizeof s);
    s.sin6_family = AF_INET6;
    inet_pton(AF_INET6, a, &s.sin6_addr);
    return s;
}

/* One token a minute: a second take from the same client fails. */
static bool take(ratelimit *rl, const void *addr)
{
    uint64_t retry = 0;
    return ratelimit_take(rl, addr, RL_PAIR_CLAIM, 1, &retry);
}

static void test_ipv4_clients_on_a_dual_stack_listener_are_apart(void)
{
    /* A dual-stack socket sees 10.0.0.1 as ::ffff:10.0.0.1: its first 64
     * bits are those of every IPv4 client. */
    ratelimit *rl;
    CHECK(ratelimit_create(&rl) == CHUTE_OK);
    struct sockaddr_in6 a = v6("::ffff:10.0.0.1"), b = v6("::ffff:10.0.0.2");
    CHECK(take(rl, &a));
    CHECK(!take(rl, &a));
    CHECK(take(rl, &b));
    ratelimit_destroy(rl);
}

static void test_a_mapped_address_is_its_ipv4_address(void)
{
    ratelimit *rl;
    CHECK(ratelimit_create(&rl) == CHUTE_OK);
    struct sockaddr_in plain = v4("192.0.2.7"), other = v4("192.0.2.8");
    struct sockaddr_in6 mapped = v6("::ffff:192.0.2.7");
    CHECK(take(rl, &plain));
    CHECK(!take(rl, &mapped));
    CHECK(take(rl, &other));
    ratelimit_destroy(rl);
}

static void test_an_ipv6_client_is_its_64(void)
{
    ratelimit *rl;
    CHECK(ratelimit_create(&rl) == CHUTE_OK);
    struct sockaddr_in6 a = v6("2001:db8:1:2::1"), same = v6("2001:db8:1:2:ffff::9"),
                        other = v6("2001:db8:1:3::1");
    CHECK(take(rl, &a));
    CHECK(!take(rl, &same));
    CHECK(take(rl, &other));
    ratelimit_destroy(rl);
}

static void test_kinds_have_buckets_of_their_own(void)
{
    ratelimit *rl;
    CHECK(ratelimit_create(&rl) == CHUTE_OK);
    struct sockaddr_in a = v4("198.51.100.1");
    uint64_t retry = 0;
    CHECK(ratelimit_take(rl, (const struct sockaddr *)&a, RL_PAIR_ALLOC, 1, &retry));
    CHECK(!ratelimit_take(rl, (const struct sockaddr *)&a, RL_PAIR_ALLOC, 1, &retry));
    CHECK(retry >= 1);
    CHECK(ratelimit_take(rl, (const struct sockaddr *)&a, RL_INBOX_CREATE, 1, &retry));
    ratelimit_destroy(rl);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    RUN(test_ipv4_clients_on_a_dual_stack_listener_are_apart);
    RUN(test_a_mapped_address_is_its_ipv4_address);
    RUN(test_an_ipv6_client_is_its_64);
    RUN(test_kinds_have_buckets_of_their_own);
    return unit_done();
}
