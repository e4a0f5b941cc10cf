/* test_relay_client.c — the relay client without a relay: errors are
 * values, URLs are checked. (The system tests drive it against chuted.) */
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay_client.h"
#include "relay_url.h"
#include "unit.h"

/* A loopback port with nothing listening: bind one, learn it, close it. */
static int dead_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(s, (struct sockaddr *)&a, &len) != 0)
        abort();
    close(s);
    return ntohs(a.sin_port);
}

static void test_nothing_listening_is_a_network_error(void)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", dead_port());
    relay_config cfg = { .base_url = url, .connect_timeout_ms = 2000, .timeout_ms = 2000 };
    relay_client *c;
    CHECK_EQ_INT(relay_client_new(&cfg, &c), CHUTE_OK);
    CHECK_EQ_INT(relay_health(c), CHUTE_ERR_NETWORK);
    CHECK_EQ_INT(relay_client_http_status(c), 0);
    CHECK(strlen(relay_client_error(c)) > 0);
    relay_inbox ib;
    CHECK_EQ_INT(relay_inbox_create(c, &ib), CHUTE_ERR_NETWORK);
    relay_pair_side side;
    CHECK_EQ_INT(relay_pair_allocate(c, 60, &side), CHUTE_ERR_NETWORK);
    CHECK_EQ_INT(relay_pair_claim(c, "123", &side), CHUTE_ERR_NETWORK);
    /* a nameplate of 16 characters, the most a code carries, is sent */
    CHECK_EQ_INT(relay_pair_claim(c, "0123456789abcdef", &side), CHUTE_ERR_NETWORK);
    CHECK_EQ_INT(relay_pair_claim(c, "0123456789abcdefg", &side), CHUTE_ERR_ARG);
    relay_client_free(c);
}

static void test_bad_path_segments_are_refused_before_sending(void)
{
    relay_config cfg = { .base_url = "http://127.0.0.1:1" };
    relay_client *c;
    CHECK_EQ_INT(relay_client_new(&cfg, &c), CHUTE_OK);
    relay_sender s;
    CHECK_EQ_INT(relay_sender_add(c, "../x", "tok", &s), CHUTE_ERR_ARG);
    CHECK_EQ_INT(relay_sender_revoke(c, "inbox", "tok", "a/b"), CHUTE_ERR_ARG);
    relay_pair_side side;
    CHECK_EQ_INT(relay_pair_claim(c, "12?x", &side), CHUTE_ERR_ARG);
    relay_client_free(c);
    CHECK_EQ_INT(relay_client_new(&(relay_config){ .base_url = "" }, &c), CHUTE_ERR_ARG);
}

static void test_relay_urls(void)
{
    char origin[128];
    const char *why;
    CHECK_EQ_INT(relay_url_check("https://Relay.Example", origin, sizeof origin, &why), CHUTE_OK);
    CHECK(strcmp(origin, "https://relay.example") == 0);
    CHECK_EQ_INT(relay_url_check("https://relay.example:8443/", origin, sizeof origin, &why), CHUTE_OK);
    CHECK(strcmp(origin, "https://relay.example:8443") == 0);
    CHECK_EQ_INT(relay_url_check("HTTP://LOCALHOST:80", origin, sizeof origin, &why), CHUTE_OK);
    CHECK(strcmp(origin, "http://localhost") == 0);
    CHECK_EQ_INT(relay_url_check("http://127.0.0.1:8080/", origin, sizeof origin, &why), CHUTE_OK);
    CHECK(strcmp(origin, "http://127.0.0.1:8080") == 0);
    CHECK_EQ_INT(relay_url_check("http://127.9.9.9:1", origin, sizeof origin, &why), CHUTE_OK);
    CHECK_EQ_INT(relay_url_check("http://localhost:1", origin, sizeof origin, &why), CHUTE_OK);
    CHECK_EQ_INT(relay_url_check("http://[::1]:8080", origin, sizeof origin, &why), CHUTE_OK);
    CHECK(strcmp(origin, "http://[::1]:8080") == 0);
    CHECK_EQ_INT(relay_url_check("http://192.168.1.2:8080", origin, sizeof origin, &why),
                 CHUTE_ERR_UNSUPPORTED);
    CHECK(strstr(why, "loopback") != NULL);
    CHECK_EQ_INT(relay_url_check("http://relay.example", origin, sizeof origin, &why),
                 CHUTE_ERR_UNSUPPORTED);
    CHECK_EQ_INT(relay_url_check("http://128.0.0.1", origin, sizeof origin, &why),
                 CHUTE_ERR_UNSUPPORTED);
    CHECK_EQ_INT(relay_url_check("ftp://relay.example", origin, sizeof origin, &why), CHUTE_ERR_ARG);
    CHECK_EQ_INT(relay_url_check("https://relay.example/sub", origin, sizeof origin, &why), CHUTE_ERR_ARG);
    CHECK_EQ_INT(relay_url_check("https://u:p@relay.example", origin, sizeof origin, &why), CHUTE_ERR_ARG);
    CHECK_EQ_INT(relay_url_check("not a url", origin, sizeof origin, &why), CHUTE_ERR_ARG);
    CHECK_EQ_INT(relay_url_check("", origin, sizeof origin, &why), CHUTE_ERR_ARG);
}

int main(void)
{
    RUN(test_nothing_listening_is_a_network_error);
    RUN(test_bad_path_segments_are_refused_before_sending);
    RUN(test_relay_urls);
    return unit_done();
}
