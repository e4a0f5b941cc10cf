/* cmd_init.c — pairtool init: this device's identity and inbox. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "age_keys.h"
#include "cli.h"
#include "peername.h"
#include "relay_url.h"

static const char USAGE[] =
    "Usage: pairtool [-H DIR] init --relay URL [--name NAME] [--cacert FILE]\n"
    "                              [--pin sha256//BASE64]\n"
    "                              [--access-token-file FILE | --access-token TOKEN]\n"
    "\n"
    "Create this device's age identity and its inbox on the relay. Running it\n"
    "again with the same relay changes nothing.\n"
    "\n"
    "  --relay URL     https://host[:port]; http:// only to 127.0.0.0/8, ::1, localhost\n"
    "  --name NAME     how peers will see this device (default: the host name)\n"
    "  --cacert FILE   CA certificate(s) that sign the relay's certificate\n"
    "  --pin PIN       the relay's public key, sha256//BASE64 (curl's format)\n"
    "  --access-token-file FILE\n"
    "                  a private relay's access token: the first line of FILE\n"
    "  --access-token TOKEN\n"
    "                  the same on the command line (other users may see it in ps)\n"
    "\n"
    "With the same relay again, --access-token(-file) replaces the stored token;\n"
    "a --name, --cacert or --pin other than the stored one is refused (exit 2).\n";

/* The host name as a device name, if it is a good one. */
static int default_name(char *out, size_t cap)
{
    char host[HOST_NAME_MAX + 1];
    if (gethostname(host, sizeof host) != 0)
        return -1;
    host[sizeof host - 1] = '\0';
    host[strcspn(host, ".")] = '\0';   /* "laptop.example.org" → "laptop" */
    if (!peername_ok(host) || strlen(host) >= cap)
        return -1;
    memcpy(out, host, strlen(host) + 1);
    return 0;
}

/* Keep the URL as typed, without trailing slashes. */
static void strip_slashes(char *url)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        url[--n] = '\0';
}

/* Which options a second init was given that differ from what is stored
 * (an option not given is not compared): they would be ignored. */
typedef struct {
    int name, cacert, pin;   /* given on this command line */
} given_opts;

static int differs(int given, const char *want, const char *have, const char *opt,
                   char *list, size_t cap)
{
    if (!given || strcmp(want, have) == 0)
        return 0;
    size_t n = strlen(list);
    snprintf(list + n, cap - n, "%s%s", n ? ", " : "", opt);
    return 1;
}

/* Say, and return 1, if this init asks for a CA file or pin other than
 * the stored ones: init would ignore them, so it refuses instead. (A new
 * name is a rename.) */
static int options_differ(const devstate_device *want, const devstate_device *have,
                          const given_opts *given)
{
    char list[64] = "";
    int n = differs(given->cacert, want->cacert, have->cacert, "--cacert", list, sizeof list) +
            differs(given->pin, want->pin, have->pin, "--pin", list, sizeof list);
    if (n == 0)
        return 0;
    cli_error("this device is already set up with relay %s; init does not change it, so "
              "it refuses %s. Stored: name \"%s\", CA file %s, pin %s. To start over "
              "with other settings, init with another -H folder.", have->relay_url, list,
              have->name, have->cacert[0] ? have->cacert : "(none)",
              have->pin[0] ? have->pin : "(none)");
    return 1;
}

/* init on a device that is set up already: the same relay changes
 * nothing (but a new name or access token), another one is refused, and
 * so are options that would change what is stored. -1: the state holds no device
 * yet (an init that failed to store it), set it up anew. */
static int init_again(devstate *ds, const devstate_device *want, const char *origin,
                      int token_given, const given_opts *given)
{
    devstate_device have;
    chute_status st = devstate_get_device(ds, &have);
    if (st == CHUTE_ERR_NOT_FOUND)
        return -1;
    if (st != CHUTE_OK) {
        cli_error("cannot read the device state: %s", chute_strstatus(st));
        return EXIT_FAIL;
    }
    int rc = EXIT_OK;
    char have_origin[RELAY_URL_MAX];
    if (relay_url_check(have.relay_url, have_origin, sizeof have_origin, NULL) != CHUTE_OK ||
        strcmp(have_origin, origin) != 0) {
        cli_error("this device is already set up with relay %s; refusing to switch to %s "
                  "(its peers know it by its inbox there)", have.relay_url, want->relay_url);
        rc = EXIT_FAIL;
    } else if (options_differ(want, &have, given)) {
        rc = EXIT_USAGE;
    } else {
        bool rename = given->name && strcmp(want->name, have.name) != 0;
        if (rename && (st = devstate_set_device_name(ds, want->name)) != CHUTE_OK) {
            cli_error("cannot rename this device: %s", chute_strstatus(st));
            rc = EXIT_FAIL;
        } else if (rename) {
            cli_note("Renamed this device from \"%s\" to \"%s\": devices paired from now "
                     "on see the new name; those paired already keep their folder for it.",
                     have.name, want->name);
        }
        if (rc == EXIT_OK && token_given) {
            if ((st = devstate_set_access_token(ds, want->access_token)) != CHUTE_OK) {
                cli_error("cannot store the access token: %s", chute_strstatus(st));
                rc = EXIT_FAIL;
            } else {
                /* A private relay may change its token; identity and peers stay. */
                cli_note("This device is already set up as \"%s\" with relay %s; stored "
                         "the new access token.", rename ? want->name : have.name,
                         have.relay_url);
            }
        }
        if (rc == EXIT_OK && !rename && !token_given)
            cli_note("This device is already set up as \"%s\" with relay %s; nothing to do.",
                     have.name, have.relay_url);
    }
    devstate_device_wipe(&have);
    return rc;
}

int cmd_init(const cli_globals *g, int argc, char **argv)
{
    static const struct option opts[] = {
        { "relay", required_argument, NULL, 'r' },
        { "name", required_argument, NULL, 'n' },
        { "cacert", required_argument, NULL, 'c' },
        { "pin", required_argument, NULL, 'p' },
        { "access-token", required_argument, NULL, 'a' },
        { "access-token-file", required_argument, NULL, 'A' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *relay = NULL, *name = NULL, *cacert = NULL, *pin = NULL;
    const char *token_arg = NULL, *token_file = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'r': relay = optarg; break;
        case 'n': name = optarg; break;
        case 'c': cacert = optarg; break;
        case 'p': pin = optarg; break;
        case 'a': token_arg = optarg; break;
        case 'A': token_file = optarg; break;
        case 'h': cli_usage(USAGE, 0); return EXIT_OK;
        default: cli_usage(USAGE, 1); return EXIT_USAGE;
        }
    }
    if (optind != argc || !relay) {
        if (!relay)
            cli_error("init needs --relay URL");
        cli_usage(USAGE, 1);
        return EXIT_USAGE;
    }

    if (token_arg && token_file) {
        cli_error("give --access-token or --access-token-file, not both");
        return EXIT_USAGE;
    }

    devstate_device d;
    memset(&d, 0, sizeof d);
    if (token_file && cli_read_first_line(token_file, d.access_token,
                                          sizeof d.access_token) != 0) {
        cli_error("cannot read an access token from %s: %s", token_file, strerror(errno));
        return EXIT_FAIL;
    }
    int token_too_long = token_arg && strlen(token_arg) >= sizeof d.access_token;
    if (token_arg && !token_too_long)
        snprintf(d.access_token, sizeof d.access_token, "%s", token_arg);
    if ((token_arg || token_file) && (token_too_long || !cli_access_token_ok(d.access_token))) {
        /* Never echo it: it is a secret even when it is malformed. */
        devstate_device_wipe(&d);
        cli_error("the access token must be 1-%d characters of printable ASCII on one line",
                  DEVSTATE_ACCESS_TOKEN_MAX - 1);
        return EXIT_USAGE;
    }
    char origin[RELAY_URL_MAX];
    const char *why;
    int rc = EXIT_FAIL;
    devstate *ds = NULL;
    if (relay_url_check(relay, origin, sizeof origin, &why) != CHUTE_OK) {
        cli_error("refusing relay %s: %s", relay, why);
        goto out;
    }
    snprintf(d.relay_url, sizeof d.relay_url, "%s", relay);
    strip_slashes(d.relay_url);
    if (name) {
        if (!peername_ok(name)) {
            cli_error("'%s' is not a usable device name (1-%d bytes of UTF-8; no '/', "
                      "no control, invisible or space-like characters but a plain space "
                      "inside, no leading '.', '-', space or combining mark)", name,
                      PEERNAME_MAX);
            rc = EXIT_USAGE;
            goto out;
        }
        snprintf(d.name, sizeof d.name, "%s", name);
    } else if (default_name(d.name, sizeof d.name) != 0) {
        cli_error("the host name is not a usable device name; give one with --name");
        rc = EXIT_USAGE;
        goto out;
    }
    if (cacert) {
        char *abs = realpath(cacert, NULL);
        if (!abs || strlen(abs) >= sizeof d.cacert) {
            cli_error("cannot use the CA file %s", cacert);
            free(abs);
            goto out;
        }
        snprintf(d.cacert, sizeof d.cacert, "%s", abs);
        free(abs);
    }
    if (pin) {
        if (strncmp(pin, "sha256//", 8) != 0 || strlen(pin) >= sizeof d.pin) {
            cli_error("--pin takes sha256//BASE64 (the relay's public key hash)");
            rc = EXIT_USAGE;
            goto out;
        }
        snprintf(d.pin, sizeof d.pin, "%s", pin);
    }

    /* Look before touching anything: a folder is made, and the state
     * written, only once the relay gave this device an inbox. */
    char dir[DEVSTATE_PATH_MAX];
    if (cli_state_dir(g, dir, sizeof dir) != 0)
        goto out;
    chute_status st = devstate_open(dir, 0, &ds);
    if (st == CHUTE_OK) {
        given_opts given = { name != NULL, cacert != NULL, pin != NULL };
        rc = init_again(ds, &d, origin, token_arg || token_file, &given);
        if (rc >= 0)
            goto out;
        devstate_close(ds);
        ds = NULL;
        rc = EXIT_FAIL;
        st = CHUTE_ERR_NOT_FOUND;
    }
    if (st == CHUTE_ERR_NOT_FOUND)
        st = devstate_dir_usable(dir);
    if (st != CHUTE_OK) {
        cli_state_error(dir, st);
        goto out;
    }

    age_identity id;
    age_recipient r;
    if (age_identity_generate(&id) != CHUTE_OK ||
        age_identity_encode(&id, d.identity) != CHUTE_OK) {
        age_identity_wipe(&id);
        cli_error("cannot make an identity");
        goto out;
    }
    age_identity_recipient(&id, &r);
    age_identity_wipe(&id);
    if (age_recipient_encode(&r, d.recipient) != CHUTE_OK) {
        cli_error("cannot encode the recipient");
        goto out;
    }

    relay_client *client = cli_relay_client(&d, 15000);
    if (!client)
        goto out;
    relay_inbox inbox;
    st = relay_inbox_create(client, &inbox);
    if (st == CHUTE_ERR_REFUSED && !d.access_token[0]) {
        cli_error("the relay %s is private: it wants an access token to create an inbox. "
                  "Ask its operator, then give --access-token-file FILE (or "
                  "--access-token TOKEN)", d.relay_url);
        relay_client_free(client);
        goto out;
    }
    if (st == CHUTE_ERR_REFUSED) {
        cli_error("the relay %s refused the access token (a wrong or outdated one); "
                  "nothing was set up", d.relay_url);
        relay_client_free(client);
        goto out;
    }
    if (st != CHUTE_OK) {
        cli_error("cannot create an inbox on the relay %s: %s", d.relay_url,
                  relay_client_error(client));
        relay_client_free(client);
        goto out;
    }
    relay_client_free(client);
    snprintf(d.inbox, sizeof d.inbox, "%s", inbox.inbox);
    snprintf(d.owner_token, sizeof d.owner_token, "%s", inbox.owner_token);
    sodium_memzero(&inbox, sizeof inbox);
    d.created = (long long)time(NULL);
    st = devstate_open(dir, 1, &ds);
    if (st != CHUTE_OK)
        cli_state_error(dir, st);
    else if ((st = devstate_set_device(ds, &d)) != CHUTE_OK)
        cli_error("cannot store the device state: %s", chute_strstatus(st));
    if (st != CHUTE_OK) {
        /* Nobody could ever use the inbox: give it back (best effort). */
        client = cli_relay_client(&d, 15000);
        if (!client || relay_inbox_delete(client, d.inbox, d.owner_token) != CHUTE_OK)
            cli_error("the new inbox on the relay could not be deleted: it is abandoned");
        relay_client_free(client);
        goto out;
    }
    cli_note("Set up this device as \"%s\" with relay %s.", d.name, d.relay_url);
    cli_note("Next: `pairtool invite` here, or `pairtool join CODE` with a code from "
             "another device.");
    rc = EXIT_OK;
out:
    devstate_device_wipe(&d);
    devstate_close(ds);
    return rc;
}
