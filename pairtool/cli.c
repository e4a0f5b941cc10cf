/* cli.c — helpers shared by the pairtool commands. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#ifdef HAVE_LIBQRENCODE
#include <qrencode.h>
#endif

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pairtool: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_state_dir(const cli_globals *g, char *dir, size_t cap)
{
    if (devstate_resolve_dir(g->home, dir, cap) != CHUTE_OK) {
        cli_error("cannot tell where the state folder is: give -H DIR or set CHUTE_HOME");
        return -1;
    }
    return 0;
}

void cli_state_error(const char *dir, chute_status st)
{
    if (st == CHUTE_ERR_NOT_FOUND)
        cli_error("this device is not set up yet (no state in %s): run "
                  "`pairtool init --relay URL` first", dir);
    else if (st == CHUTE_ERR_UNSUPPORTED)
        cli_error("the state in %s was written by a newer Chute; upgrade pairtool", dir);
    else if (st == CHUTE_ERR_REFUSED)
        cli_error("refusing to keep this device's keys in %s: other users can write to it "
                  "(or it is not yours). Give -H a folder of your own, or one that does "
                  "not exist yet; pairtool will not change the mode of %s", dir, dir);
    else
        cli_error("cannot open the state in %s: %s%s%s", dir, chute_strstatus(st),
                  st == CHUTE_ERR_IO ? ": " : "", st == CHUTE_ERR_IO ? strerror(errno) : "");
}

devstate *cli_open_state(const cli_globals *g, int create)
{
    char dir[DEVSTATE_PATH_MAX];
    if (cli_state_dir(g, dir, sizeof dir) != 0)
        return NULL;
    devstate *ds;
    chute_status st = devstate_open(dir, create, &ds);
    if (st != CHUTE_OK) {
        cli_state_error(dir, st);
        return NULL;
    }
    return ds;
}

devstate *cli_open_device(const cli_globals *g, devstate_device *me)
{
    devstate *ds = cli_open_state(g, 0);
    if (!ds)
        return NULL;
    chute_status st = devstate_get_device(ds, me);
    if (st != CHUTE_OK) {
        if (st == CHUTE_ERR_NOT_FOUND)
            cli_error("this device is not set up yet: run `pairtool init --relay URL` first");
        else
            cli_error("cannot read the device state: %s", chute_strstatus(st));
        devstate_close(ds);
        return NULL;
    }
    return ds;
}

relay_client *cli_relay_client(const devstate_device *me, long timeout_ms)
{
    relay_config cfg = {
        .base_url = me->relay_url,
        .cacert = me->cacert[0] ? me->cacert : NULL,
        .pin = me->pin[0] ? me->pin : NULL,
        .access_token = me->access_token[0] ? me->access_token : NULL,
        .connect_timeout_ms = timeout_ms < 10000 ? timeout_ms : 10000,
        .timeout_ms = timeout_ms,
    };
    relay_client *c;
    chute_status st = relay_client_new(&cfg, &c);
    if (st != CHUTE_OK) {
        cli_error("cannot make a relay client: %s", chute_strstatus(st));
        return NULL;
    }
    return c;
}

int cli_access_token_ok(const char *token)
{
    size_t n = strlen(token);
    if (n == 0 || n >= DEVSTATE_ACCESS_TOKEN_MAX || token[0] == ' ' || token[n - 1] == ' ')
        return 0;
    /* It goes into an HTTP header: no control characters, no line breaks. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)token[i] < 0x20 || (unsigned char)token[i] > 0x7E)
            return 0;
    return 1;
}

int cli_read_first_line(const char *path, char *out, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[1024];
    size_t n = 0;
    int bad = 0;
    /* Only the first line counts: stop reading at its end. */
    while (n < sizeof buf && !memchr(buf, '\n', n)) {
        ssize_t got = read(fd, buf + n, sizeof buf - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            bad = 1;
            break;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    int saved = errno;
    (void)close(fd);
    size_t len = 0;
    while (len < n && buf[len] != '\n')
        len++;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    if (!bad && len >= cap) {
        bad = 1;
        saved = ENAMETOOLONG;
    }
    if (!bad) {
        memcpy(out, buf, len);
        out[len] = '\0';
    }
    sodium_memzero(buf, sizeof buf);
    errno = saved;
    return bad ? -1 : 0;
}

static int is_yes(char *line)
{
    line[strcspn(line, "\r\n")] = '\0';
    char *s = line;
    while (*s == ' ' || *s == '\t')
        s++;
    return strcasecmp(s, "y") == 0 || strcasecmp(s, "yes") == 0;
}

int cli_ask_yes_within(const char *question, int within_s)
{
    /* An Enter pressed while waiting, or a "y" typed before the name and
     * check were shown, is not an answer to this question. */
    if (isatty(STDIN_FILENO))
        (void)tcflush(STDIN_FILENO, TCIFLUSH);
    fprintf(stderr, "%s [y/N] ", question);
    fflush(stderr);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    char line[64];
    size_t n = 0;
    /* One byte per read(2): nothing after the line is taken from stdin. */
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long left_ms = (long long)within_s * 1000 -
                            ((now.tv_sec - start.tv_sec) * 1000LL +
                             (now.tv_nsec - start.tv_nsec) / 1000000);
        if (left_ms <= 0) {
            fputc('\n', stderr);
            return -1;
        }
        struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
        int r = poll(&pfd, 1, left_ms > 60000 ? 60000 : (int)left_ms);
        if (r < 0) {
            fputc('\n', stderr);
            return -1;   /* EINTR: a signal; anything else: no answer either */
        }
        if (r == 0)
            continue;
        char ch;
        ssize_t got = read(STDIN_FILENO, &ch, 1);
        if (got < 0 && errno == EINTR) {
            fputc('\n', stderr);
            return -1;
        }
        if (got <= 0) {   /* EOF: no */
            fputc('\n', stderr);
            break;
        }
        if (ch == '\n')
            break;
        if (n < sizeof line - 1)
            line[n++] = ch;
    }
    line[n] = '\0';
    return is_yes(line);
}

long cli_parse_duration(const char *s)
{
    if (!s || !*s)
        return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || end == s || v <= 0)
        return -1;
    long mult;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60;
    else if (strcmp(end, "h") == 0)
        mult = 3600;
    else if (strcmp(end, "d") == 0)
        mult = 86400;
    else
        return -1;
    if (v > 100L * 86400 / mult)
        return -1;
    return v * mult;
}

void cli_qr_to_stderr(const char *text)
{
#ifdef HAVE_LIBQRENCODE
    if (!isatty(STDERR_FILENO))
        return;
    QRcode *qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 0);
    if (!qr)
        return;
    int w = qr->width, quiet = 2;
    /* Two modules per character row with half blocks, light on dark
     * terminals and dark on light ones alike: draw the dark modules as
     * spaces on an inverted background is not portable, so draw the light
     * ones with block characters. */
    for (int y = -quiet; y < w + quiet; y += 2) {
        for (int x = -quiet; x < w + quiet; x++) {
            int top = (y >= 0 && y < w && x >= 0 && x < w) ? qr->data[y * w + x] & 1 : 0;
            int bot = (y + 1 >= 0 && y + 1 < w && x >= 0 && x < w)
                          ? qr->data[(y + 1) * w + x] & 1 : 0;
            const char *ch = !top && !bot ? "\u2588" : !top ? "\u2580"
                           : !bot ? "\u2584" : " ";
            fputs(ch, stderr);
        }
        fputc('\n', stderr);
    }
    QRcode_free(qr);
#else
    (void)text;
#endif
}

void cli_usage(const char *usage, int to_stderr)
{
    fputs(usage, to_stderr ? stderr : stdout);
}

int cli_parse_no_operands(int argc, char **argv, const char *usage, int *json, int *rc)
{
    static const struct option with_json[] = {
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const struct option *opts = json ? with_json : with_json + 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j') {
            *json = 1;
            continue;
        }
        cli_usage(usage, c != 'h');
        *rc = c == 'h' ? EXIT_OK : EXIT_USAGE;
        return 0;
    }
    if (optind != argc) {
        cli_usage(usage, 1);
        *rc = EXIT_USAGE;
        return 0;
    }
    return 1;
}
