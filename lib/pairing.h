/* pairing.h — the pairing exchange of PROTOCOL §7 as pure functions: the
 * message encodings, the CPace steps with key confirmation, the sealed
 * payloads and their JSON. No I/O: pairing_run.c moves these bytes through
 * the relay and asks people for decisions.
 *
 *   joiner                                       inviter
 *   HELLO            ------------------------->
 *                    <-------------------------  CPACE1   sid, Ya, commit
 *   CPACE2  Yb, Tb   ------------------------->            (checks Tb)
 *                    <-------------------------  CONFIRM  Ta, nonce
 *   (checks Ta; both now share the SAS, the channel key, the link key)
 *   JOINER_INFO      ------------------------->  sealed: joiner's device
 *                    <-------------------------  INVITER_DECISION sealed:
 *                                                accept + inviter's device,
 *                                                or refuse
 *   JOINER_DECISION  ------------------------->  sealed: accept or refuse
 *   ABORT            <------------------------>  either way, unsealed
 */
#ifndef CHUTE_PAIRING_H
#define CHUTE_PAIRING_H

#include <stddef.h>
#include <stdint.h>

#include "cpace.h"
#include "cpace_confirm.h"
#include "peername.h"
#include "relay_client.h"
#include "status.h"

#define PAIRING_VERSION 1

/* Message types: the first byte of every message body. */
enum {
    PMSG_HELLO            = 0x01,
    PMSG_CPACE1           = 0x02,
    PMSG_CPACE2           = 0x03,
    PMSG_CONFIRM          = 0x04,
    PMSG_JOINER_INFO      = 0x05,
    PMSG_INVITER_DECISION = 0x06,
    PMSG_JOINER_DECISION  = 0x07,
    PMSG_ABORT            = 0x7f
};

/* ABORT reasons (unauthenticated hints, never trusted for security). */
enum {
    PABORT_CONFIRMATION = 1,  /* a key confirmation failed: wrong code or tampering */
    PABORT_PROTOCOL     = 2,  /* an unexpected or malformed message */
    PABORT_CANCELLED    = 3   /* the other side gave up (local error, timeout, ^C) */
};

#define PAIRING_HELLO_BYTES   2
#define PAIRING_CPACE1_BYTES  (1 + CPACE_PAIR_SID_BYTES + CPACE_MSG_BYTES + CPACE_SAS_COMMIT_BYTES)
#define PAIRING_CPACE2_BYTES  (1 + CPACE_MSG_BYTES + CPACE_CONFIRM_TAG_BYTES)
#define PAIRING_CONFIRM_BYTES (1 + CPACE_CONFIRM_TAG_BYTES + CPACE_SAS_NONCE_BYTES)
#define PAIRING_ABORT_BYTES   2
#define PAIRING_SEAL_OVERHEAD (1 + 16)      /* type byte + Poly1305 tag */
#define PAIRING_PAYLOAD_MAX   2048          /* JSON inside a sealed message */
#define PAIRING_MSG_MAX       (PAIRING_PAYLOAD_MAX + PAIRING_SEAL_OVERHEAD)
#define PAIRING_KEY_BYTES     CPACE_CONFIRM_KEY_BYTES

typedef enum { PAIRING_INVITER = 1, PAIRING_JOINER = 2 } pairing_role;

/* One run of the exchange on one side. Plain struct, no heap; wipe it. */
typedef struct {
    pairing_role role;
    int stage;                                 /* see pairing.c */
    cpace_state cpace;
    cpace_confirm confirm;
    uint8_t sid[CPACE_PAIR_SID_BYTES];
    uint8_t nonce[CPACE_SAS_NONCE_BYTES];
    uint8_t commit[CPACE_SAS_COMMIT_BYTES];
    uint8_t prs[16];                           /* the code's secret */
    size_t prs_len;
    uint8_t ci[600];   /* lv_cat of the label, an origin of up to 511 bytes, a nameplate */
    size_t ci_len;
    uint8_t channel_key[PAIRING_KEY_BYTES];
    uint8_t link_key[PAIRING_KEY_BYTES];
    char sas[CPACE_SAS_STRING_BYTES];
} pairing;

/* secret: the code's canonical secret part (paircode.secret); origin: the
 * relay's origin (relay_url_check); nameplate: as the relay allocated it. */
chute_status pairing_init(pairing *p, pairing_role role, const char *secret,
                          const char *origin, const char *nameplate);
void pairing_wipe(pairing *p);

/* The type of a received message, or -1 if it is empty. */
int pairing_msg_type(const uint8_t *msg, size_t len);

void pairing_hello(uint8_t out[PAIRING_HELLO_BYTES]);
/* CHUTE_ERR_UNSUPPORTED for another version, MALFORMED for junk. */
chute_status pairing_check_hello(const uint8_t *msg, size_t len);
void pairing_abort_msg(uint8_t reason, uint8_t out[PAIRING_ABORT_BYTES]);
/* The reason of an ABORT message, or 0 if msg is not one. */
int pairing_abort_reason(const uint8_t *msg, size_t len);

/* Inviter: CPACE1 (after the joiner's HELLO). */
chute_status pairing_inviter_cpace1(pairing *p, uint8_t out[PAIRING_CPACE1_BYTES]);
/* Joiner: take CPACE1, answer CPACE2. */
chute_status pairing_joiner_cpace2(pairing *p, const uint8_t *msg, size_t len,
                                   uint8_t out[PAIRING_CPACE2_BYTES]);
/* Inviter: take CPACE2, check the joiner's tag (CHUTE_ERR_AUTH: wrong code
 * or tampering), answer CONFIRM. Keys and SAS are ready afterwards. */
chute_status pairing_inviter_confirm(pairing *p, const uint8_t *msg, size_t len,
                                     uint8_t out[PAIRING_CONFIRM_BYTES]);
/* Joiner: take CONFIRM, check the inviter's tag and the SAS commitment
 * (CHUTE_ERR_AUTH). Keys and SAS are ready afterwards. */
chute_status pairing_joiner_finish(pairing *p, const uint8_t *msg, size_t len);

/* After confirmation: "ddd ddd", and the pair's long-term link key. */
const char *pairing_sas(const pairing *p);
chute_status pairing_link_key(const pairing *p, uint8_t out[PAIRING_KEY_BYTES]);

/* Seal plaintext as a message of `type` (JOINER_INFO, INVITER_DECISION,
 * JOINER_DECISION) under the channel key; out needs len +
 * PAIRING_SEAL_OVERHEAD bytes. */
chute_status pairing_seal(const pairing *p, uint8_t type, const uint8_t *pt,
                          size_t len, uint8_t *out, size_t cap, size_t *out_len);
/* Open a sealed message that must be of `type`: CHUTE_ERR_PROTOCOL for
 * another type, CHUTE_ERR_AUTH if it does not authenticate. */
chute_status pairing_open(const pairing *p, uint8_t type, const uint8_t *msg,
                          size_t len, uint8_t *pt, size_t cap, size_t *pt_len);

/* ---- the payloads inside sealed messages ------------------------------ */

typedef enum {
    PAIRING_NO_DECISION = 0,
    PAIRING_ACCEPT      = 1,
    PAIRING_REFUSE      = 2
} pairing_decision;

/* What a device tells its new peer about itself. */
typedef struct {
    char name[PEERNAME_MAX + 1];
    char recipient[128];                 /* age1… */
    char relay[RELAY_URL_MAX];           /* the relay of its inbox */
    char inbox[RELAY_ID_MAX];
    char send_token[RELAY_TOKEN_MAX];    /* secret */
} pairing_device;

typedef struct {
    pairing_decision decision;
    int has_device;
    pairing_device device;
} pairing_payload;

/* The JSON of a payload (no trailing NUL counted) into out[cap]. */
chute_status pairing_payload_encode(const pairing_payload *pl, char *out,
                                    size_t cap, size_t *out_len);
/* Parse and validate the payload of a message of `type`: JOINER_INFO has a
 * device and no decision; INVITER_DECISION accept with a device or refuse
 * without; JOINER_DECISION a decision without a device. Every string is
 * checked (peername_ok, an age1 recipient, a relay URL that
 * relay_url_check accepts, base64url ids and tokens). CHUTE_ERR_MALFORMED
 * otherwise. */
chute_status pairing_payload_parse(uint8_t type, const uint8_t *json, size_t len,
                                   pairing_payload *out);
void pairing_payload_wipe(pairing_payload *pl);

#endif
