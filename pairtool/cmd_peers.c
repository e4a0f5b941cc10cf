/* cmd_peers.c — pairtool peers and unpair. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"

static const char PEERS_USAGE[] =
    "Usage: pairtool [-H DIR] peers [--json]\n"
    "\n"
    "List the devices this one is paired with: the folder name the mount uses\n"
    "for each, its age recipient and when it was paired.\n"
    "\n"
    "  --json   a JSON array of objects: name, device_name, recipient, relay,\n"
    "           paired_at (Unix seconds), state (\"paired\" or \"gone\")\n";

static const char UNPAIR_USAGE[] =
    "Usage: pairtool [-H DIR] unpair PEER [--force]\n"
    "\n"
    "Revoke the send token PEER holds on this device's inbox and forget PEER's\n"
    "keys. PEER's next upload to this device is refused by the relay.\n"
    "\n"
    "  --force   forget PEER even if the relay cannot be reached to revoke its\n"
    "            token; the token then keeps working as long as this device's\n"
    "            inbox exists (what PEER sends is not shown, and stays on the\n"
    "            relay until it expires), and the revocation cannot be retried\n";

static void format_time(long long t, char *out, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!localtime_r(&tt, &tm) || strftime(out, cap, "%Y-%m-%d %H:%M", &tm) == 0)
        snprintf(out, cap, "%lld", t);
}

static int print_json(const devstate_peer *peers, size_t n)
{
    json_t *arr = json_array();
    if (!arr)
        return EXIT_FAIL;
    for (size_t i = 0; i < n; i++) {
        const devstate_peer *p = &peers[i];
        /* Never tokens or keys: this output ends up in logs and scripts. */
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:s}",
                              "name", p->name, "device_name", p->device_name,
                              "recipient", p->recipient, "relay", p->relay_url,
                              "paired_at", (json_int_t)p->paired_at,
                              "state", p->gone_at ? "gone" : "paired");
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return EXIT_FAIL;
        }
    }
    int bad = json_dumpf(arr, stdout, JSON_INDENT(2)) != 0;
    json_decref(arr);
    putchar('\n');
    return bad ? EXIT_FAIL : EXIT_OK;
}

int cmd_peers(const cli_globals *g, int argc, char **argv)
{
    int json = 0, rc;
    if (!cli_parse_no_operands(argc, argv, PEERS_USAGE, &json, &rc))
        return rc;
    devstate_device me;
    devstate *ds = cli_open_device(g, &me);
    if (!ds)
        return EXIT_FAIL;
    devstate_device_wipe(&me);
    devstate_peer *peers;
    size_t n;
    chute_status st = devstate_list_peers(ds, &peers, &n);
    devstate_close(ds);
    if (st != CHUTE_OK) {
        cli_error("cannot read the peers: %s", chute_strstatus(st));
        return EXIT_FAIL;
    }
    rc = EXIT_OK;
    if (json) {
        rc = print_json(peers, n);
    } else if (n == 0) {
        cli_note("No peers yet: pair with `pairtool invite` or `pairtool join CODE`.");
    } else {
        for (size_t i = 0; i < n; i++) {
            char when[32];
            format_time(peers[i].paired_at, when, sizeof when);
            printf("%s\t%s\tpaired %s%s\n", peers[i].name, peers[i].recipient, when,
                   peers[i].gone_at ? "\t(gone: it unpaired this device)" : "");
        }
    }
    devstate_peers_free(peers, n);
    return rc;
}

int cmd_unpair(const cli_globals *g, int argc, char **argv)
{
    static const struct option opts[] = {
        { "force", no_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int force = 0, c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'f': force = 1; break;
        case 'h': cli_usage(UNPAIR_USAGE, 0); return EXIT_OK;
        default: cli_usage(UNPAIR_USAGE, 1); return EXIT_USAGE;
        }
    }
    if (optind + 1 != argc) {
        cli_usage(UNPAIR_USAGE, 1);
        return EXIT_USAGE;
    }
    const char *name = argv[optind];
    devstate_device me;
    devstate *ds = cli_open_device(g, &me);
    if (!ds)
        return EXIT_FAIL;
    int rc = EXIT_FAIL;
    devstate_peer peer;
    chute_status st = devstate_get_peer(ds, name, &peer);
    if (st != CHUTE_OK) {
        if (st == CHUTE_ERR_NOT_FOUND)
            cli_error("no peer called '%s' (see pairtool peers)", name);
        else
            cli_error("cannot read the peers: %s", chute_strstatus(st));
        goto out;
    }
    /* Revoke first: forgetting a peer whose token still works would leave
     * it able to fill our inbox with nobody to notice. */
    relay_client *client = cli_relay_client(&me, 15000);
    if (!client)
        goto out;
    st = relay_sender_revoke(client, me.inbox, me.owner_token, peer.granted_sender);
    if (st == CHUTE_ERR_NOT_FOUND)
        st = CHUTE_OK;   /* already revoked (an earlier unpair that did not finish) */
    if (st != CHUTE_OK && !force) {
        cli_error("cannot revoke %s's send token on the relay (%s); nothing changed. "
                  "Try again, or use --force to forget it anyway.", name,
                  relay_client_error(client));
        relay_client_free(client);
        goto out;
    }
    int revoked = st == CHUTE_OK;
    char why[RELAY_ERROR_MAX];
    snprintf(why, sizeof why, "%s", relay_client_error(client));
    relay_client_free(client);
    st = devstate_remove_peer(ds, name);
    if (st != CHUTE_OK) {
        cli_error("cannot forget '%s': %s", name, chute_strstatus(st));
        goto out;
    }
    if (revoked) {
        cli_note("Unpaired \"%s\": its access to this device is revoked and its keys are "
                 "forgotten.", name);
    } else {
        /* --force: say what did not happen. The sender id went with the
         * peer, so nothing can retry the revocation later. */
        cli_error("warning: forgot \"%s\" and its keys, but its send token is NOT revoked: "
                  "the relay could not be told (%s).", name, why);
        cli_note("\"%s\" can still put files into this device's inbox on the relay for as "
                 "long as the inbox exists. They are no longer shown here; they stay on the "
                 "relay, counting against the inbox's quota, until they expire. This cannot "
                 "be retried later: the token's id is forgotten too.", name);
    }
    rc = EXIT_OK;
out:
    devstate_peer_wipe(&peer);
    devstate_device_wipe(&me);
    devstate_close(ds);
    return rc;
}
