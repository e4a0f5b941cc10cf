/* cpace_confirm.h — Chute's pairing on top of CPace: the channel identifier,
 * key confirmation in both directions, the short authentication string
 * (SAS) and the keys a pairing hands on. docs/PROTOCOL.md §5 is the spec.
 *
 *   inviter (initiator)                         joiner (responder)
 *   cpace_sas_commit_make(nonce, commit)
 *   cpace_start(.., ad = commit) -> Ya
 *                    --- msg1: sid, Ya, commit --->
 *                                               cpace_start(.., ad = "") -> Yb
 *                                               cpace_finish(Ya, commit)
 *                                               cpace_confirm_init, _tag -> Tb
 *                    <--- msg2: Yb, Tb ---------
 *   cpace_finish(Yb, ""), cpace_confirm_init
 *   cpace_confirm_verify(Tb)  (wrong code: stop)
 *   cpace_confirm_tag -> Ta
 *                    --- msg3: Ta, nonce ------>
 *                                               cpace_confirm_verify(Ta)
 *   both: cpace_confirm_sas(nonce, commit) -> "123 456" on both screens
 *   both: cpace_confirm_channel_key / _link_key
 *
 * Keys come out only after the peer's tag verified, so a caller cannot use
 * a key that the other side does not share. */
#ifndef CHUTE_CPACE_CONFIRM_H
#define CHUTE_CPACE_CONFIRM_H

#include <stddef.h>
#include <stdint.h>

#include "cpace.h"
#include "status.h"

#define CPACE_PAIR_SID_BYTES   16  /* the initiator's random sid */
#define CPACE_CONFIRM_TAG_BYTES 32
#define CPACE_CONFIRM_KEY_BYTES 32 /* channel key, link key */
#define CPACE_SAS_NONCE_BYTES  32
#define CPACE_SAS_COMMIT_BYTES 32
#define CPACE_SAS_DIGITS       6
#define CPACE_SAS_STRING_BYTES 8   /* "123 456" and its NUL */

typedef struct {
    int stage;                      /* 0 wiped, 1 keyed, 2 peer verified */
    cpace_role role;
    uint8_t isk[CPACE_ISK_BYTES];
    uint8_t sid_out[CPACE_SID_OUT_BYTES];
} cpace_confirm;

/* CI = lv_cat("chute-pair-v1", relay_origin, nameplate): binds the run to
 * one relay and one nameplate. Same buffer contract as
 * cpace_generator_string (CHUTE_ERR_LIMIT with *out_len set if short).
 * CHUTE_ERR_ARG if either string is empty. */
chute_status cpace_pair_ci(const char *relay_origin, const char *nameplate,
                           uint8_t *out, size_t out_cap, size_t *out_len);

/* The inviter's SAS nonce and its commitment (which goes in as ADa), so a
 * man in the middle who knows the code cannot grind his element until the
 * two SAS collide: he must fix his Y before he learns the nonce. */
void cpace_sas_commit_make(uint8_t nonce[CPACE_SAS_NONCE_BYTES],
                           uint8_t commit[CPACE_SAS_COMMIT_BYTES]);

/* Key the confirmation from a finished CPace run. role is this side's:
 * CPACE_INITIATOR or CPACE_RESPONDER (CHUTE_ERR_ARG otherwise). */
chute_status cpace_confirm_init(cpace_confirm *c, cpace_role role,
                                const cpace_keys *keys);

/* This side's tag for the peer. CHUTE_ERR_ARG if not initialised. */
chute_status cpace_confirm_tag(const cpace_confirm *c,
                               uint8_t tag_out[CPACE_CONFIRM_TAG_BYTES]);

/* Check the peer's tag in constant time. CHUTE_ERR_AUTH (and the state is
 * wiped: the run is over) if it does not verify — a wrong code, a tampered
 * message, or this side's own tag reflected back. */
chute_status cpace_confirm_verify(cpace_confirm *c,
                                  const uint8_t peer_tag[CPACE_CONFIRM_TAG_BYTES]);

/* The SAS both screens show: six digits as "ddd ddd". Needs a verified
 * peer (CHUTE_ERR_ARG otherwise); CHUTE_ERR_AUTH if the nonce does not
 * open the commitment. commit is the ADa the run used. */
chute_status cpace_confirm_sas(const cpace_confirm *c,
                               const uint8_t nonce[CPACE_SAS_NONCE_BYTES],
                               const uint8_t commit[CPACE_SAS_COMMIT_BYTES],
                               char sas_out[CPACE_SAS_STRING_BYTES]);

/* The key that encrypts the pairing payloads (device info) exchanged after
 * confirmation, and the long-term link key of the pair. Need a verified
 * peer (CHUTE_ERR_ARG otherwise). */
chute_status cpace_confirm_channel_key(const cpace_confirm *c,
                                       uint8_t key_out[CPACE_CONFIRM_KEY_BYTES]);
chute_status cpace_confirm_link_key(const cpace_confirm *c,
                                    uint8_t key_out[CPACE_CONFIRM_KEY_BYTES]);

void cpace_confirm_wipe(cpace_confirm *c);

#endif
