/* test_relay_client.c — the relay client without a relay: errors are
 * values, URLs are checked. (The system tests drive it against chuted.) */
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
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

/* ---- a one-answer relay -------------------------------------------------- */

/* Answers one request on a loopback socket with a canned reply, after
 * reading the request's headers and its Content-Length bytes. */
typedef struct {
    int lfd;
    const char *reply;
    pthread_t t;
} fake_relay;

static size_t read_headers(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t got = read(fd, buf + n, 1);
        if (got <= 0) break;
        n++;
        if (n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0) break;
    }
    buf[n] = '\0';
    return n;
}

static void *fake_serve(void *arg)
{
    fake_relay *f = arg;
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0) return NULL;
    char hdr[4096];
    read_headers(fd, hdr, sizeof hdr);
    const char *cl = strcasestr(hdr, "Content-Length:");
    long left = cl ? strtol(cl + 15, NULL, 10) : 0;
    char sink[4096];
    while (left > 0) {
        ssize_t got = read(fd, sink, left < (long)sizeof sink ? (size_t)left : sizeof sink);
        if (got <= 0) break;
        left -= got;
    }
    size_t len = strlen(f->reply);
    if (write(fd, f->reply, len) != (ssize_t)len) { /* the client sees it */ }
    close(fd);
    return NULL;
}

static int fake_start(fake_relay *f, const char *reply)
{
    f->reply = reply;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(f->lfd, 1) != 0 || getsockname(f->lfd, (struct sockaddr *)&a, &len) != 0 ||
        pthread_create(&f->t, NULL, fake_serve, f) != 0)
        abort();
    return ntohs(a.sin_port);
}

static void fake_stop(fake_relay *f)
{
    pthread_join(f->t, NULL);
    close(f->lfd);
}

/* A client of a fake relay that answers its one request with reply. */
static relay_client *client_of(fake_relay *f, const char *reply)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", fake_start(f, reply));
    relay_config cfg = { .base_url = url, .connect_timeout_ms = 2000, .timeout_ms = 5000 };
    relay_client *c = NULL;
    CHECK_EQ_INT(relay_client_new(&cfg, &c), CHUTE_OK);
    return c;
}

static int fill_zeros(void *ctx, uint64_t pos, uint8_t *buf, size_t len)
{
    (void)ctx; (void)pos;
    memset(buf, 0, len);
    return 0;
}

/* A PATCH of len bytes at offset, answered 204 with Upload-Offset `answer`. */
static chute_status patch_answered(const char *answer, uint64_t offset, uint64_t len,
                                   uint64_t *new_offset)
{
    char reply[256];
    snprintf(reply, sizeof reply, "HTTP/1.1 204 No Content\r\nUpload-Offset: %s\r\n"
                                  "Connection: close\r\n\r\n", answer);
    fake_relay f;
    relay_client *c = client_of(&f, reply);
    chute_status st = relay_item_append_source(c, "inbox", "tok", "item", offset, len,
                                               fill_zeros, NULL, new_offset);
    if (st == CHUTE_ERR_PROTOCOL) CHECK(strstr(relay_client_error(c), "Upload-Offset") != NULL);
    relay_client_free(c);
    fake_stop(&f);
    return st;
}

/* The sender resumes from the offset a PATCH's answer says: one that is
 * not past the request's offset would resend the same bytes for ever, one
 * past its end would count bytes never sent. Both break the protocol. */
static void test_a_patch_answer_must_move_the_offset_within_the_request(void)
{
    uint64_t got = 7;
    CHECK_EQ_INT(patch_answered("1100", 1000, 100, &got), CHUTE_OK);
    CHECK(got == 1100);
    CHECK_EQ_INT(patch_answered("1001", 1000, 100, &got), CHUTE_OK);   /* a prefix kept */
    CHECK(got == 1001);
    got = 7;
    CHECK_EQ_INT(patch_answered("1000", 1000, 100, &got), CHUTE_ERR_PROTOCOL);
    CHECK_EQ_INT(patch_answered("999", 1000, 100, &got), CHUTE_ERR_PROTOCOL);
    CHECK_EQ_INT(patch_answered("0", 1000, 100, &got), CHUTE_ERR_PROTOCOL);
    CHECK_EQ_INT(patch_answered("1101", 1000, 100, &got), CHUTE_ERR_PROTOCOL);
    CHECK_EQ_INT(patch_answered("99999999", 1000, 100, &got), CHUTE_ERR_PROTOCOL);
    CHECK(got == 7);   /* left alone */
    /* O = size, L = 0 (commit a complete item): the offset stays */
    CHECK_EQ_INT(patch_answered("1000", 1000, 0, &got), CHUTE_OK);
    CHECK(got == 1000);
}

/* The answer to a GET /v1/health, with the given status line and body. */
static chute_status health_answered(const char *status_line, const char *body,
                                    char *error, size_t cap)
{
    char reply[4096];
    snprintf(reply, sizeof reply, "HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                                  "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
             status_line, strlen(body), body);
    fake_relay f;
    relay_client *c = client_of(&f, reply);
    chute_status st = relay_health(c);
    snprintf(error, cap, "%s", relay_client_error(c));
    relay_client_free(c);
    fake_stop(&f);
    return st;
}

/* The relay is not trusted: its error text reaches terminals (pairtool)
 * and the status file, and must not carry escapes or line breaks. */
static void test_a_relays_error_text_reaches_no_terminal_raw(void)
{
    char err[512];
    CHECK_EQ_INT(health_answered("500 Oops",
                                 "{\"error\": \"bad\\u001b[2J\\u001b]0;title\\u0007 day\\n"
                                 "SAS OK\\r\\u009b31m \\u00e9t\\u00e9 \\u2713\\u007f\"}",
                                 err, sizeof err), CHUTE_ERR_NETWORK);
    CHECK(strcmp(err, "bad?[2J?]0;title? day?SAS OK??31m \u00e9t\u00e9 \u2713?") == 0);
    if (strcmp(err, "bad?[2J?]0;title? day?SAS OK??31m \u00e9t\u00e9 \u2713?") != 0)
        fprintf(stderr, "  got: %s\n", err);
    /* a long text is cut between characters, never inside one */
    char body[3000] = "{\"error\": \"";
    for (int i = 0; i < 400; i++) strcat(body, "\\u00e9");
    strcat(body, "\"}");
    CHECK_EQ_INT(health_answered("500 Oops", body, err, sizeof err), CHUTE_ERR_NETWORK);
    size_t n = strlen(err);
    CHECK(n > 0 && n % 2 == 0);
    for (size_t i = 0; i < n; i += 2)
        CHECK((unsigned char)err[i] == 0xc3 && (unsigned char)err[i + 1] == 0xa9);
}

/* An item's state from the relay lands in the status file: a word, or
 * the answer is broken. */
static void test_a_state_that_is_not_a_word_is_a_protocol_error(void)
{
    static const char *states[] = { "\\u001b[2Juploading", "on relay", "pending\\n" };
    for (size_t i = 0; i < sizeof states / sizeof *states; i++) {
        char body[256], reply[512];
        snprintf(body, sizeof body, "{\"item\": \"item\", \"state\": \"%s\", \"size\": 10,"
                                    " \"offset\": 0}", states[i]);
        snprintf(reply, sizeof reply, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                      "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                 strlen(body), body);
        fake_relay f;
        relay_client *c = client_of(&f, reply);
        relay_item_state rs;
        CHECK_EQ_INT(relay_item_status(c, "inbox", "tok", "item", &rs), CHUTE_ERR_PROTOCOL);
        relay_client_free(c);
        fake_stop(&f);
    }
}

/* "Upload-Offset: 12abc" is no offset (it read as 12). */
static void test_an_offset_with_trailing_junk_is_refused(void)
{
    uint64_t got = 7;
    CHECK_EQ_INT(patch_answered("1050abc", 1000, 100, &got), CHUTE_ERR_PROTOCOL);
    CHECK_EQ_INT(patch_answered("1050 7", 1000, 100, &got), CHUTE_ERR_PROTOCOL);
    CHECK(got == 7);
    CHECK_EQ_INT(patch_answered("1050  ", 1000, 100, &got), CHUTE_OK);
    CHECK(got == 1050);
}

int main(void)
{
    RUN(test_nothing_listening_is_a_network_error);
    RUN(test_bad_path_segments_are_refused_before_sending);
    RUN(test_relay_urls);
    RUN(test_a_patch_answer_must_move_the_offset_within_the_request);
    RUN(test_a_relays_error_text_reaches_no_terminal_raw);
    RUN(test_an_offset_with_trailing_junk_is_refused);
    RUN(test_a_state_that_is_not_a_word_is_a_protocol_error);
    return unit_done();
}
