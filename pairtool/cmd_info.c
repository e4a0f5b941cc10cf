/* cmd_info.c — pairtool status, export-identity and recipient. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static const char STATUS_USAGE[] =
    "Usage: pairtool [-H DIR] status [--json]\n"
    "\n"
    "This device's name, relay (and whether it answers now) and peer count.\n"
    "\n"
    "  --json   one JSON object: name, recipient, relay, relay_reachable, peers\n";

static const char EXPORT_USAGE[] =
    "Usage: pairtool [-H DIR] export-identity\n"
    "\n"
    "Print this device's age identity (AGE-SECRET-KEY-1...). It decrypts\n"
    "everything sent to this device: keep it secret.\n";

static const char RECIPIENT_USAGE[] =
    "Usage: pairtool [-H DIR] recipient\n"
    "\n"
    "Print this device's age recipient (age1...), its public key.\n";

/* Commands without options still take --help. */
static int no_options(int argc, char **argv, const char *usage, int *rc)
{
    static const struct option opts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            cli_usage(usage, 0);
            *rc = EXIT_OK;
            return 0;
        }
        cli_usage(usage, 1);
        *rc = EXIT_USAGE;
        return 0;
    }
    if (optind != argc) {
        cli_usage(usage, 1);
        *rc = EXIT_USAGE;
        return 0;
    }
    return 1;
}

int cmd_status(const cli_globals *g, int argc, char **argv)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int json = 0, c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'h': cli_usage(STATUS_USAGE, 0); return EXIT_OK;
        default: cli_usage(STATUS_USAGE, 1); return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        cli_usage(STATUS_USAGE, 1);
        return EXIT_USAGE;
    }
    devstate_device me;
    devstate *ds = cli_open_device(g, &me);
    if (!ds)
        return EXIT_FAIL;
    size_t peers = 0;
    chute_status st = devstate_count_peers(ds, &peers);
    devstate_close(ds);
    if (st != CHUTE_OK) {
        cli_error("cannot read the peers: %s", chute_strstatus(st));
        devstate_device_wipe(&me);
        return EXIT_FAIL;
    }
    /* Reachable means: it answers health and still knows our inbox. */
    int reachable = 0;
    const char *problem = "";
    relay_client *client = cli_relay_client(&me, 5000);
    if (client) {
        relay_inbox_info info;
        st = relay_health(client);
        if (st == CHUTE_OK)
            st = relay_inbox_get(client, me.inbox, me.owner_token, &info);
        reachable = st == CHUTE_OK;
        if (st == CHUTE_ERR_NOT_FOUND)
            problem = "the relay does not know this device's inbox any more";
        else if (st != CHUTE_OK)
            problem = relay_client_error(client);
    }
    int rc = EXIT_OK;
    if (json) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:b,s:I}", "name", me.name,
                              "recipient", me.recipient, "relay", me.relay_url,
                              "relay_reachable", reachable, "peers", (json_int_t)peers);
        if (!o || json_dumpf(o, stdout, JSON_INDENT(2)) != 0)
            rc = EXIT_FAIL;
        putchar('\n');
        json_decref(o);
    } else {
        printf("device:    %s\n", me.name);
        printf("recipient: %s\n", me.recipient);
        printf("relay:     %s (%s%s%s)\n", me.relay_url,
               reachable ? "reachable" : "unreachable", *problem ? ": " : "", problem);
        printf("peers:     %zu\n", peers);
    }
    relay_client_free(client);
    devstate_device_wipe(&me);
    return rc;
}

int cmd_export_identity(const cli_globals *g, int argc, char **argv)
{
    int rc;
    if (!no_options(argc, argv, EXPORT_USAGE, &rc))
        return rc;
    devstate_device me;
    devstate *ds = cli_open_device(g, &me);
    if (!ds)
        return EXIT_FAIL;
    printf("%s\n", me.identity);
    devstate_device_wipe(&me);
    devstate_close(ds);
    return EXIT_OK;
}

int cmd_recipient(const cli_globals *g, int argc, char **argv)
{
    int rc;
    if (!no_options(argc, argv, RECIPIENT_USAGE, &rc))
        return rc;
    devstate_device me;
    devstate *ds = cli_open_device(g, &me);
    if (!ds)
        return EXIT_FAIL;
    printf("%s\n", me.recipient);
    devstate_device_wipe(&me);
    devstate_close(ds);
    return EXIT_OK;
}
