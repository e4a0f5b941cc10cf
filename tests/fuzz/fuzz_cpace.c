/* fuzz_cpace.c — a CPace side, then key confirmation, fed what an attacker
 * on the relay could send.
 *
 * Input: byte 0 picks our side (low bit 0: we are the inviter/initiator,
 * 1: the joiner/responder); then the peer's element Y (32 bytes), the
 * peer's confirmation tag (32), an SAS nonce (32), and the peer's AD (the
 * rest, at most 64 bytes).
 *
 * Our side runs with fixed scalars so runs are reproducible. It must never
 * crash, and must accept a peer only if the input is exactly what the
 * honest peer (same code, fixed scalar) sends: anything else accepted would
 * be a confirmation that passes without the key. */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpace_confirm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CODE "k7qmx2dp"
#define AD_MAX 64

static struct {
    int ready;
    uint8_t ci[64];
    size_t ci_len;
    uint8_t sid[CPACE_PAIR_SID_BYTES];
    uint8_t ya_scalar[32], yb_scalar[32];
    uint8_t nonce[32], commit[32];
    uint8_t Ya[32], Yb[32], Ta[32], Tb[32];   /* the honest wire */
} h;

static void must(int ok)
{
    if (!ok)
        abort();
}

/* A scalar reduced from a fixed label: deterministic, valid, non-zero. */
static void fixed_scalar(const char *label, uint8_t s[32])
{
    uint8_t wide[64];
    crypto_hash_sha512(wide, (const uint8_t *)label, strlen(label));
    crypto_core_ristretto255_scalar_reduce(s, wide);
}

static void start(cpace_state *st, cpace_role role, uint8_t msg[32])
{
    int initiator = role == CPACE_INITIATOR;
    must(cpace_start_with_scalar(st, role, (const uint8_t *)CODE,
                                 strlen(CODE), h.ci, h.ci_len, h.sid,
                                 sizeof h.sid, initiator ? h.commit : NULL,
                                 initiator ? sizeof h.commit : 0,
                                 initiator ? h.ya_scalar : h.yb_scalar,
                                 msg) == CHUTE_OK);
}

static void honest_init(void)
{
    if (h.ready)
        return;
    must(sodium_init() >= 0);
    must(cpace_pair_ci("https://relay.example.org", "4213", h.ci,
                       sizeof h.ci, &h.ci_len) == CHUTE_OK);
    memset(h.sid, 0x5a, sizeof h.sid);
    fixed_scalar("fuzz initiator", h.ya_scalar);
    fixed_scalar("fuzz responder", h.yb_scalar);
    for (int i = 0; i < 32; i++)
        h.nonce[i] = (uint8_t)i;
    /* The commitment as PROTOCOL.md §5 defines it. */
    uint8_t full[64], buf[24 + 32];
    memcpy(buf, "chute-pair-v1 sas commit", 24);
    memcpy(buf + 24, h.nonce, 32);
    crypto_hash_sha512(full, buf, sizeof buf);
    memcpy(h.commit, full, 32);

    cpace_state a, b;
    cpace_keys ka, kb;
    cpace_confirm ca, cb;
    start(&a, CPACE_INITIATOR, h.Ya);
    start(&b, CPACE_RESPONDER, h.Yb);
    must(cpace_finish(&a, h.Yb, NULL, 0, &ka) == CHUTE_OK);
    must(cpace_finish(&b, h.Ya, h.commit, sizeof h.commit, &kb) == CHUTE_OK);
    must(cpace_confirm_init(&ca, CPACE_INITIATOR, &ka) == CHUTE_OK);
    must(cpace_confirm_init(&cb, CPACE_RESPONDER, &kb) == CHUTE_OK);
    must(cpace_confirm_tag(&ca, h.Ta) == CHUTE_OK);
    must(cpace_confirm_tag(&cb, h.Tb) == CHUTE_OK);
    h.ready = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    honest_init();
    if (size < 1 + 32 + 32 + 32)
        return 0;
    int responder = data[0] & 1;
    const uint8_t *Y = data + 1, *tag = data + 33, *nonce = data + 65;
    const uint8_t *ad = data + 97;
    size_t ad_len = size - 97 > AD_MAX ? AD_MAX : size - 97;

    cpace_role role = responder ? CPACE_RESPONDER : CPACE_INITIATOR;
    cpace_state st;
    cpace_keys keys;
    cpace_confirm c;
    uint8_t own[32];
    start(&st, role, own);
    chute_status rc = cpace_finish(&st, Y, ad, ad_len, &keys);
    if (rc != CHUTE_OK) {
        must(rc == CHUTE_ERR_MALFORMED || rc == CHUTE_ERR_CRYPTO);
        must(sodium_is_zero((uint8_t *)&keys, sizeof keys));
        return 0;
    }
    must(cpace_confirm_init(&c, role, &keys) == CHUTE_OK);
    sodium_memzero(&keys, sizeof keys);
    if (cpace_confirm_verify(&c, tag) != CHUTE_OK)
        return 0;

    /* Accepted: it must be the honest peer's exact message. */
    const uint8_t *want_Y = responder ? h.Ya : h.Yb;
    const uint8_t *want_T = responder ? h.Ta : h.Tb;
    size_t want_ad_len = responder ? sizeof h.commit : 0;
    must(memcmp(Y, want_Y, 32) == 0 && memcmp(tag, want_T, 32) == 0);
    must(ad_len == want_ad_len &&
         (ad_len == 0 || memcmp(ad, h.commit, ad_len) == 0));

    /* The SAS opens only with the committed nonce. */
    char sas[CPACE_SAS_STRING_BYTES];
    rc = cpace_confirm_sas(&c, nonce, h.commit, sas);
    must(rc == CHUTE_OK ? memcmp(nonce, h.nonce, 32) == 0
                        : rc == CHUTE_ERR_AUTH);
    cpace_confirm_wipe(&c);
    return 0;
}
