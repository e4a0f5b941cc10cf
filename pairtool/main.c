/* main.c — pairtool: set up a device, pair by code, list and unpair peers.
 * Global options, then one command with its own options (getopt_long). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "cli.h"

static const char USAGE[] =
    "Usage: pairtool [-H DIR] COMMAND [OPTIONS]\n"
    "\n"
    "Set up this device for Chute and pair it with others by a one-time code.\n"
    "\n"
    "Commands:\n"
    "  init --relay URL [--name NAME] [--cacert F] [--pin sha256//...]\n"
    "       [--access-token-file F | --access-token TOKEN]\n"
    "                         create this device's identity and inbox on the relay\n"
    "  invite [--yes] [--ttl DURATION] [--timeout DURATION]\n"
    "                         make a pair code (printed alone on stdout) and wait\n"
    "  join CODE [--yes] [--timeout DURATION]\n"
    "                         pair with the device that made CODE\n"
    "  peers [--json]         list paired devices\n"
    "  unpair PEER [--force]  revoke PEER's access to this device and forget it\n"
    "  status [--json]        this device, its relay and its peers\n"
    "  export-identity        print this device's AGE-SECRET-KEY-1... identity\n"
    "  recipient              print this device's age1... recipient\n"
    "\n"
    "Options:\n"
    "  -H, --home DIR         state folder (default $CHUTE_HOME, else\n"
    "                         $XDG_DATA_HOME/chute, else ~/.local/share/chute)\n"
    "  -h, --help             this text; COMMAND --help for a command's\n"
    "  -V, --version          print the version\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

typedef struct {
    const char *name;
    int (*run)(const cli_globals *g, int argc, char **argv);
    /* What the command did is stored, not printed (a pairing): output that
     * cannot be written is said, but the exit status stays the outcome's. */
    int outcome_not_output;
} command;

static const command COMMANDS[] = {
    { "init", cmd_init, 0 },
    { "invite", cmd_invite, 1 },
    { "join", cmd_join, 1 },
    { "peers", cmd_peers, 0 },
    { "unpair", cmd_unpair, 0 },
    { "status", cmd_status, 0 },
    { "export-identity", cmd_export_identity, 0 },
    { "recipient", cmd_recipient, 0 },
};

int main(int argc, char **argv)
{
    /* Everything this program creates holds keys or tokens. */
    umask(077);
    /* A reader that went away (`invite | head -n1`) or a closed stderr must
     * not kill a pairing midway, before it tells the other side: writes
     * fail with EPIPE instead, like any other write error. */
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    if (sigaction(SIGPIPE, &ign, NULL) != 0) {
        cli_error("cannot ignore SIGPIPE");
        return EXIT_FAIL;
    }
    if (sodium_init() < 0) {
        cli_error("libsodium failed to initialise");
        return EXIT_FAIL;
    }
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    cli_globals g = { 0 };
    int c;
    /* '+': stop at the command name; its options are its own. */
    while ((c = getopt_long(argc, argv, "+H:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            /* An empty -H is a mistake (an unset variable), not "the default". */
            if (!*optarg) {
                cli_error("-H needs a folder; it was given an empty one");
                return EXIT_USAGE;
            }
            g.home = optarg;
            break;
        case 'h': cli_usage(USAGE, 0); return EXIT_OK;
        case 'V': printf("pairtool %s\n", CHUTE_VERSION); return EXIT_OK;
        default: cli_usage(USAGE, 1); return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        cli_usage(USAGE, 1);
        return EXIT_USAGE;
    }
    const char *name = argv[optind];
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) {
        if (strcmp(name, COMMANDS[i].name) == 0) {
            int sub_argc = argc - optind;
            char **sub_argv = argv + optind;
            /* getopt names argv[0] in its complaints: "pairtool join: ...". */
            static char prog[64];
            snprintf(prog, sizeof prog, "pairtool %s", COMMANDS[i].name);
            sub_argv[0] = prog;
            optind = 0;   /* 0, not 1: glibc then forgets the "+" mode too */
            int rc = COMMANDS[i].run(&g, sub_argc, sub_argv);
            int flush_failed = fflush(stdout) != 0;
            const char *why = flush_failed ? strerror(errno) : "a write failed";
            if ((flush_failed || ferror(stdout)) && rc == EXIT_OK) {
                if (COMMANDS[i].outcome_not_output) {
                    cli_error("cannot write to standard output (%s); the pairing is stored "
                              "all the same", why);
                } else {
                    cli_error("cannot write to standard output (%s)", why);
                    rc = EXIT_FAIL;
                }
            }
            return rc;
        }
    }
    cli_error("unknown command '%s' (see pairtool --help)", name);
    return EXIT_USAGE;
}
