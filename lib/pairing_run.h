/* pairing_run.h — one whole pairing through the relay, for either side.
 *
 * pairing.c knows the bytes; this module moves them through the relay's
 * rendezvous (PROTOCOL §6.7), registers and revokes send tokens on this
 * device's inbox, asks the person through callbacks, and stores the peer
 * only when both sides have approved (PROTOCOL §7). Every wait is bounded
 * by a deadline; every failure leaves nothing stored and revokes the send
 * token it registered (best effort: the relay may be the thing that
 * failed). A joiner whose accept may be on the relay (a try got no answer,
 * a retry 410: the inviter read it and closed) stores, keeps its token and
 * warns through ui->note (§7.5). */
#ifndef CHUTE_PAIRING_RUN_H
#define CHUTE_PAIRING_RUN_H

#include <stdatomic.h>

#include "devstate.h"
#include "pairing.h"
#include "relay_client.h"
#include "status.h"

typedef struct {
    /* Inviter: the code to show, as soon as it exists, and the seconds it
     * works for. */
    void (*show_code)(void *ctx, const char *code, long long seconds_left);
    /* A line of progress for people ("waiting for the other device…"). */
    void (*note)(void *ctx, const char *text);
    /* Both: accept `peer_name` whose screen shows `sas`? 1 yes, 0 no, -1
     * no answer within `within_s` seconds (or the question was cut short
     * by opt->stop). `role_text` says who asks ("the device joining you",
     * "the device that invited you"). */
    int (*approve)(void *ctx, const char *role_text, const char *peer_name,
                   const char *sas, int within_s);
    void *ctx;
} pairing_ui;

typedef struct {
    long ttl_s;             /* inviter: code lifetime; 0: the relay's default (1 h) */
    int step_timeout_s;     /* a step the other program answers by itself; 0: 60 */
    int human_timeout_s;    /* a step a person answers on the other side; 0: 600 */
    int network_grace_s;    /* how long an unreachable relay is retried mid-run; 0: 5 */
    /* Set (by a signal handler, say) to stop: the run ends as a failure,
     * cleaning up first — the other side is told, the inviter closes the
     * session, a registered send token is revoked. NULL: never. */
    const atomic_int *stop;
} pairing_options;

typedef struct {
    char peer_name[PEERNAME_MAX + 1];     /* the folder name stored */
    char peer_device[PEERNAME_MAX + 1];   /* what the peer calls itself */
    char sas[CPACE_SAS_STRING_BYTES];
    char why[320];                        /* on failure: a sentence for people */
} pairing_result;

/* A failed run tells the other side where it can (ABORT 03, §7.7), so it
 * need not wait out its timeout, and the inviter closes the session: a
 * joiner's late accept then finds it gone and stores nothing.
 *
 * Failures (why says more):
 *   CHUTE_ERR_AUTH      wrong code, or a message was tampered with
 *   CHUTE_ERR_EXPIRED   the code expired, was used already, a wait timed out,
 *                       or the session ended under us
 *   CHUTE_ERR_NOT_FOUND the relay knows no such code (join)
 *   CHUTE_ERR_MALFORMED the code does not parse (join)
 *   CHUTE_ERR_REFUSED   one side said no, or this side's person did not
 *                       answer in time, or opt->stop was set
 *   CHUTE_ERR_NETWORK   the relay could not be reached or died
 *   CHUTE_ERR_PROTOCOL  the other side or the relay broke the protocol
 *   others              local trouble (database, memory) */
chute_status pairing_invite(devstate *ds, const devstate_device *me,
                            relay_client *c, const pairing_options *opt,
                            const pairing_ui *ui, pairing_result *out);

chute_status pairing_join(devstate *ds, const devstate_device *me,
                          relay_client *c, const char *code,
                          const pairing_options *opt, const pairing_ui *ui,
                          pairing_result *out);

#endif
