/* cmd_pair.c — pairtool invite and join: the people's side of §7. */
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "pairing_run.h"
#include "peername.h"

static const char INVITE_USAGE[] =
    "Usage: pairtool [-H DIR] invite [--yes] [--ttl DURATION] [--timeout DURATION]\n"
    "\n"
    "Make a one-time pair code, print it alone on the first line of stdout, and\n"
    "wait for another device to join with it. You are shown the joining\n"
    "device's name and a six-digit check that both screens must show, and asked\n"
    "to approve it.\n"
    "\n"
    "  --yes            approve the joining device without asking\n"
    "  --ttl DURATION   how long the code works: 90s, 10m, 1h (default: the relay's, 1h)\n"
    "  --timeout DURATION\n"
    "                   how long to wait for the other device at each step once\n"
    "                   the code is in use (default 60s; ten times that while a\n"
    "                   person there decides)\n"
    "\n"
    "On success the new peer's folder name follows the code on stdout.\n";

static const char JOIN_USAGE[] =
    "Usage: pairtool [-H DIR] join CODE [--yes] [--timeout DURATION]\n"
    "\n"
    "Pair with the device that made CODE (pairtool invite there). Both screens\n"
    "show the same six-digit check; the inviting device approves, then you.\n"
    "\n"
    "  --yes               accept the inviting device without asking\n"
    "  --timeout DURATION  how long to wait for the other device at each step\n"
    "                      (default 60s; ten times that while a person there decides)\n"
    "\n"
    "On success the new peer's folder name is printed on stdout.\n";

typedef struct {
    int yes;
} ui_ctx;

static void ui_show_code(void *ctx, const char *code, long long left)
{
    (void)ctx;
    /* The code alone on stdout's first line, at once: scripts read it
     * while we keep waiting. */
    printf("%s\n", code);
    fflush(stdout);
    cli_qr_to_stderr(code);
    cli_note("Pair code: %s", code);
    cli_note("On the other device run:  pairtool join %s", code);
    if (left > 0) {
        /* In the unit it was likely given in: 1d, 2h, 10m. */
        long long n = (left + 59) / 60;
        const char *unit = "minute";
        if (n >= 120 && n % 60 == 0) {
            n /= 60;
            unit = "hour";
            if (n % 24 == 0) {
                n /= 24;
                unit = "day";
            }
        }
        cli_note("The code works once, for %lld %s%s. Waiting...", n, unit, n == 1 ? "" : "s");
    }
}

static void ui_note(void *ctx, const char *text)
{
    (void)ctx;
    cli_note("%s", text);
}

static int ui_approve(void *ctx, const char *role_text, const char *peer_name,
                      const char *sas, int within_s)
{
    ui_ctx *u = ctx;
    /* The name is the other device's choice: quoted and escaped, never on
     * the line of the check number, so it cannot pass for our own text. */
    char quoted[PEERNAME_QUOTED_MAX];
    peername_quote(peer_name, quoted, sizeof quoted);
    cli_note("Pairing with %s, which calls itself %s.", role_text, quoted);
    cli_note("Check that both screens show:\n\n    %s\n", sas);
    if (u->yes) {
        cli_note("Approved (--yes).");
        return 1;
    }
    char q[PEERNAME_QUOTED_MAX + 64];
    snprintf(q, sizeof q, "Pair with %s?", quoted);
    return cli_ask_yes_within(q, within_s);
}

/* Ctrl-C, a closed terminal or a kill: the run ends as a failure and
 * cleans up (the other side told, the send token it made revoked). A
 * second one kills at once (SA_RESETHAND). No SA_RESTART: the prompt's
 * poll returns. */
static atomic_int interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    atomic_store(&interrupted, 1);
}

static void catch_interrupts(pairing_options *opt)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    (void)sigaction(SIGINT, &sa, NULL);
    (void)sigaction(SIGTERM, &sa, NULL);
    (void)sigaction(SIGHUP, &sa, NULL);
    opt->stop = &interrupted;
}

/* --timeout: the step timeout, and ten times it for a person's answer. */
static int set_timeout(pairing_options *opt, const char *arg)
{
    long t = cli_parse_duration(arg);
    if (t <= 0 || t > 86400) {
        cli_error("--timeout takes a duration like 30s or 5m, not '%s'", arg);
        return 0;
    }
    opt->step_timeout_s = (int)t;
    opt->human_timeout_s = (int)(t * 10);
    return 1;
}

/* Exit code and message for a failed run. */
static int report_failure(chute_status st, const pairing_result *res)
{
    cli_error("pairing failed: %s", res->why[0] ? res->why : chute_strstatus(st));
    return EXIT_FAIL;
}

static int report_success(const pairing_result *res)
{
    printf("%s\n", res->peer_name);
    char device[PEERNAME_QUOTED_MAX], folder[PEERNAME_QUOTED_MAX];
    peername_quote(res->peer_device, device, sizeof device);
    peername_quote(res->peer_name, folder, sizeof folder);
    if (strcmp(res->peer_name, res->peer_device) == 0)
        cli_note("Paired with %s.", device);
    else
        cli_note("Paired with %s (its folder is %s: the name was taken).", device, folder);
    return EXIT_OK;
}

/* This device's own name, as the other device will check it: a name
 * stored before the rules grew (an invisible or space-like character)
 * would fail the pairing half-way with no word of why. */
static bool own_name_usable(const devstate_device *me)
{
    if (peername_ok(me->name))
        return true;
    char quoted[PEERNAME_QUOTED_MAX];
    peername_quote(me->name, quoted, sizeof quoted);
    cli_error("this device's name %s has characters other devices refuse (invisible or "
              "space-like ones, or a leading space or mark); rename it first: pairtool "
              "init --relay %s --name NEW", quoted, me->relay_url);
    return false;
}

int cmd_invite(const cli_globals *g, int argc, char **argv)
{
    static const struct option opts[] = {
        { "yes", no_argument, NULL, 'y' },
        { "ttl", required_argument, NULL, 't' },
        { "timeout", required_argument, NULL, 'T' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    ui_ctx u = { 0 };
    pairing_options opt = { 0 };
    int c;
    while ((c = getopt_long(argc, argv, "yh", opts, NULL)) != -1) {
        switch (c) {
        case 'y': u.yes = 1; break;
        case 't':
            opt.ttl_s = cli_parse_duration(optarg);
            if (opt.ttl_s <= 0) {
                cli_error("--ttl takes a duration like 90s, 10m or 1h, not '%s'", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'T':
            if (!set_timeout(&opt, optarg))
                return EXIT_USAGE;
            break;
        case 'h': cli_usage(INVITE_USAGE, 0); return EXIT_OK;
        default: cli_usage(INVITE_USAGE, 1); return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        cli_usage(INVITE_USAGE, 1);
        return EXIT_USAGE;
    }
    devstate_device me;
    devstate *ds = cli_open_device(g, &me);
    if (!ds)
        return EXIT_FAIL;
    int rc = EXIT_FAIL;
    relay_client *client = own_name_usable(&me) ? cli_relay_client(&me, 15000) : NULL;
    if (client) {
        pairing_ui ui = { ui_show_code, ui_note, ui_approve, &u };
        pairing_result res;
        catch_interrupts(&opt);
        chute_status st = pairing_invite(ds, &me, client, &opt, &ui, &res);
        rc = st == CHUTE_OK ? report_success(&res) : report_failure(st, &res);
        relay_client_free(client);
    }
    devstate_device_wipe(&me);
    devstate_close(ds);
    return rc;
}

int cmd_join(const cli_globals *g, int argc, char **argv)
{
    static const struct option opts[] = {
        { "yes", no_argument, NULL, 'y' },
        { "timeout", required_argument, NULL, 'T' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    ui_ctx u = { 0 };
    pairing_options opt = { 0 };
    int c;
    while ((c = getopt_long(argc, argv, "yh", opts, NULL)) != -1) {
        switch (c) {
        case 'y': u.yes = 1; break;
        case 'T':
            if (!set_timeout(&opt, optarg))
                return EXIT_USAGE;
            break;
        case 'h': cli_usage(JOIN_USAGE, 0); return EXIT_OK;
        default: cli_usage(JOIN_USAGE, 1); return EXIT_USAGE;
        }
    }
    if (optind + 1 != argc) {
        cli_usage(JOIN_USAGE, 1);
        return EXIT_USAGE;
    }
    const char *code = argv[optind];
    devstate_device me;
    devstate *ds = cli_open_device(g, &me);
    if (!ds)
        return EXIT_FAIL;
    int rc = EXIT_FAIL;
    relay_client *client = own_name_usable(&me) ? cli_relay_client(&me, 15000) : NULL;
    if (client) {
        pairing_ui ui = { NULL, ui_note, ui_approve, &u };
        pairing_result res;
        catch_interrupts(&opt);
        chute_status st = pairing_join(ds, &me, client, code, &opt, &ui, &res);
        rc = st == CHUTE_OK ? report_success(&res) : report_failure(st, &res);
        if (st == CHUTE_ERR_MALFORMED)
            rc = EXIT_USAGE;   /* what was typed is not a code at all */
        relay_client_free(client);
    }
    devstate_device_wipe(&me);
    devstate_close(ds);
    return rc;
}
