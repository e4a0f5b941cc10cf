/* cpace.h — CPace on ristretto255 with SHA-512 (draft-irtf-cfrg-cpace).
 *
 * A balanced PAKE: two parties that share a low-entropy secret (PRS) each
 * send one 32-byte group element and end with the same 64-byte intermediate
 * session key (ISK) only if their PRS, CI and sid were equal. Nothing that
 * crosses the wire allows an offline guess of the PRS.
 *
 * Main use (one state per run, one shot, the state wipes itself):
 *
 *   cpace_state st;
 *   uint8_t my_msg[CPACE_MSG_BYTES];
 *   cpace_start(&st, CPACE_INITIATOR, prs, prs_len, ci, ci_len,
 *               sid, sid_len, ad, ad_len, my_msg);
 *   ... send my_msg and ad, receive peer_msg and peer_ad ...
 *   cpace_keys keys;
 *   if (cpace_finish(&st, peer_msg, peer_ad, peer_ad_len, &keys) != CHUTE_OK)
 *       abort the run;
 *   ... use keys.isk, then sodium_memzero(&keys, sizeof keys) ...
 *
 * The step functions below the state API are the draft's building blocks,
 * public so the test vectors can be reproduced step by step. */
#ifndef CHUTE_CPACE_H
#define CHUTE_CPACE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define CPACE_MSG_BYTES     32   /* an encoded ristretto255 element (Y) */
#define CPACE_SCALAR_BYTES  32   /* a scalar, little endian, reduced */
#define CPACE_ISK_BYTES     64   /* the intermediate session key */
#define CPACE_SID_OUT_BYTES 64   /* the optional session-id output */
#define CPACE_SID_MAX       64   /* longest sid the state keeps */
#define CPACE_AD_MAX        256  /* longest own AD the state keeps */

/* Which transcript the ISK covers. The initiator's message comes first in
 * transcript_ir; CPACE_SYMMETRIC is the draft's parallel setting, where the
 * two lv_cat(Y, AD) blocks are put in lexicographic order (transcript_oc). */
typedef enum {
    CPACE_INITIATOR = 1,
    CPACE_RESPONDER = 2,
    CPACE_SYMMETRIC = 3
} cpace_role;

/* What a finished run yields. sid_out is H("CPaceSidOutput" || transcript),
 * a public value both sides share: a digest of the whole exchange. */
typedef struct {
    uint8_t isk[CPACE_ISK_BYTES];
    uint8_t sid_out[CPACE_SID_OUT_BYTES];
} cpace_keys;

/* Opaque in spirit: callers only pass it around. */
typedef struct {
    int stage;                          /* 0 unused/wiped, 1 started */
    cpace_role role;
    uint8_t y[CPACE_SCALAR_BYTES];      /* secret scalar */
    uint8_t msg[CPACE_MSG_BYTES];       /* own Y */
    uint8_t sid[CPACE_SID_MAX];
    size_t sid_len;
    uint8_t ad[CPACE_AD_MAX];           /* own AD */
    size_t ad_len;
} cpace_state;

/* Derive the generator from PRS, CI and sid, pick a fresh secret scalar and
 * write this side's message Y to msg_out. sid may be empty (sid_len 0) but
 * SHOULD be unique per run. CHUTE_ERR_ARG on a bad role, NULL pointers or
 * sid/ad longer than CPACE_SID_MAX/CPACE_AD_MAX. On failure the state is
 * wiped. */
chute_status cpace_start(cpace_state *st, cpace_role role,
                         const uint8_t *prs, size_t prs_len,
                         const uint8_t *ci, size_t ci_len,
                         const uint8_t *sid, size_t sid_len,
                         const uint8_t *ad, size_t ad_len,
                         uint8_t msg_out[CPACE_MSG_BYTES]);

/* cpace_start with a caller-chosen scalar. For test vectors only: reusing a
 * scalar across runs breaks the protocol. CHUTE_ERR_ARG if the scalar is
 * zero or not reduced mod the group order. */
chute_status cpace_start_with_scalar(cpace_state *st, cpace_role role,
                                     const uint8_t *prs, size_t prs_len,
                                     const uint8_t *ci, size_t ci_len,
                                     const uint8_t *sid, size_t sid_len,
                                     const uint8_t *ad, size_t ad_len,
                                     const uint8_t scalar[CPACE_SCALAR_BYTES],
                                     uint8_t msg_out[CPACE_MSG_BYTES]);

/* Take the peer's message and AD, check the element (CHUTE_ERR_MALFORMED if
 * it is not a canonical ristretto255 encoding, CHUTE_ERR_CRYPTO if the
 * shared point is the identity) and compute the ISK and sid output. The
 * state is wiped whatever the outcome: a run is never finished twice.
 * CHUTE_ERR_ARG if the state was not started. */
chute_status cpace_finish(cpace_state *st,
                          const uint8_t peer_msg[CPACE_MSG_BYTES],
                          const uint8_t *peer_ad, size_t peer_ad_len,
                          cpace_keys *keys_out);

/* Wipe a state that will not be finished (safe on a wiped state). */
void cpace_abort(cpace_state *st);

/* ---- the draft's building blocks ------------------------------------- */

/* generator_string(DSI, PRS, CI, sid, 128) with DSI "CPaceRistretto255":
 * lv_cat(DSI, PRS, zero_bytes(len_zpad), CI, sid). Writes at most out_cap
 * bytes and always sets *out_len to the full length; CHUTE_ERR_LIMIT if
 * out_cap was too small (call with out NULL, cap 0 to learn the length). */
chute_status cpace_generator_string(const uint8_t *prs, size_t prs_len,
                                    const uint8_t *ci, size_t ci_len,
                                    const uint8_t *sid, size_t sid_len,
                                    uint8_t *out, size_t out_cap,
                                    size_t *out_len);

/* g = element_derivation(SHA-512(generator_string)). */
chute_status cpace_generator(const uint8_t *prs, size_t prs_len,
                             const uint8_t *ci, size_t ci_len,
                             const uint8_t *sid, size_t sid_len,
                             uint8_t g[CPACE_MSG_BYTES]);

/* Y = y·g. CHUTE_ERR_MALFORMED if g does not decode, CHUTE_ERR_CRYPTO if
 * the result is the identity (a zero scalar). */
chute_status cpace_message_from_scalar(const uint8_t y[CPACE_SCALAR_BYTES],
                                       const uint8_t g[CPACE_MSG_BYTES],
                                       uint8_t msg_out[CPACE_MSG_BYTES]);

/* The draft's scalar_mult_vfy: K = y·Y after checking that Y decodes
 * (CHUTE_ERR_MALFORMED) and that K is not the identity (CHUTE_ERR_CRYPTO). */
chute_status cpace_scalar_mult_vfy(const uint8_t y[CPACE_SCALAR_BYTES],
                                   const uint8_t peer_msg[CPACE_MSG_BYTES],
                                   uint8_t k_out[CPACE_MSG_BYTES]);

/* transcript_ir (mode CPACE_INITIATOR or CPACE_RESPONDER: the same bytes,
 * Ya/ADa are always the initiator's) or transcript_oc (CPACE_SYMMETRIC).
 * Same buffer contract as cpace_generator_string. */
chute_status cpace_transcript(cpace_role mode,
                              const uint8_t ya[CPACE_MSG_BYTES],
                              const uint8_t *ada, size_t ada_len,
                              const uint8_t yb[CPACE_MSG_BYTES],
                              const uint8_t *adb, size_t adb_len,
                              uint8_t *out, size_t out_cap, size_t *out_len);

/* ISK = SHA-512(lv_cat("CPaceRistretto255_ISK", sid, K) || transcript) and
 * sid_out = SHA-512("CPaceSidOutput" || transcript); either output may be
 * NULL. */
chute_status cpace_derive(cpace_role mode,
                          const uint8_t *sid, size_t sid_len,
                          const uint8_t k[CPACE_MSG_BYTES],
                          const uint8_t ya[CPACE_MSG_BYTES],
                          const uint8_t *ada, size_t ada_len,
                          const uint8_t yb[CPACE_MSG_BYTES],
                          const uint8_t *adb, size_t adb_len,
                          uint8_t isk_out[CPACE_ISK_BYTES],
                          uint8_t sid_out[CPACE_SID_OUT_BYTES]);

#endif
