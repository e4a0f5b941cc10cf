/* cli.h — what every pairtool command shares: exit codes, the state
 * folder, a relay client for this device, prompts and small parsers. */
#ifndef PAIRTOOL_CLI_H
#define PAIRTOOL_CLI_H

#include "devstate.h"
#include "relay_client.h"
#include "status.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* Global options, parsed before the command. */
typedef struct {
    const char *home;      /* -H DIR, or NULL */
} cli_globals;

/* "pairtool: <message>\n" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "<message>\n" on stderr: instructions and progress for people. */
void cli_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The state folder's path into dir[cap]; on failure prints why and
 * returns -1. */
int cli_state_dir(const cli_globals *g, char *dir, size_t cap);

/* Explain, on stderr, why devstate_open(dir, ...) failed with st. */
void cli_state_error(const char *dir, chute_status st);

/* Open the state folder; create = 1 makes it. On failure prints why and
 * returns NULL. */
devstate *cli_open_state(const cli_globals *g, int create);

/* Open the state and read this device; prints "not initialised" advice on
 * failure. */
devstate *cli_open_device(const cli_globals *g, devstate_device *me);

/* A relay client for this device's relay (its CA file and pin). */
relay_client *cli_relay_client(const devstate_device *me, long timeout_ms);

/* 1 if token can be a relay access token: 1..199 bytes of printable ASCII,
 * no leading or trailing space (it travels in an HTTP header). */
int cli_access_token_ok(const char *token);

/* The first line of the file at path, without its line end, into out[cap]
 * (a secret: no copy is left behind). -1 with errno if it cannot be read
 * or is too long. */
int cli_read_first_line(const char *path, char *out, size_t cap);

/* Ask a yes/no question on stderr and read the answer from stdin, within
 * within_s seconds: 1 yes, 0 no (EOF, or anything but y/yes), -1 no answer
 * in time or a signal cut the wait short. Only what is typed after the
 * question counts: a terminal's line typed earlier is discarded. */
int cli_ask_yes_within(const char *question, int within_s);

/* "90", "90s", "10m", "2h", "1d" → seconds (> 0); -1 if it does not parse. */
long cli_parse_duration(const char *s);

/* The QR code of text on stderr, only when stderr is a terminal and
 * libqrencode was built in. */
void cli_qr_to_stderr(const char *text);

/* Print `usage` to stdout (for --help) or stderr (mistakes). */
void cli_usage(const char *usage, int to_stderr);

/* Options of a command that takes no operands: --help, and --json when
 * json is not NULL. Returns 1 to go on; 0 when the command is over, with
 * its exit code in *rc (EXIT_OK after --help, EXIT_USAGE on a mistake). */
int cli_parse_no_operands(int argc, char **argv, const char *usage, int *json, int *rc);

int cmd_init(const cli_globals *g, int argc, char **argv);
int cmd_invite(const cli_globals *g, int argc, char **argv);
int cmd_join(const cli_globals *g, int argc, char **argv);
int cmd_peers(const cli_globals *g, int argc, char **argv);
int cmd_unpair(const cli_globals *g, int argc, char **argv);
int cmd_status(const cli_globals *g, int argc, char **argv);
int cmd_export_identity(const cli_globals *g, int argc, char **argv);
int cmd_recipient(const cli_globals *g, int argc, char **argv);

#endif
