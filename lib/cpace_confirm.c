/* cpace_confirm.c — key confirmation, SAS and derived keys from the ISK.
 *
 * One derivation for everything: derive(label, extra) = the first 32 (or
 * all 64) bytes of HMAC-SHA-512(key = ISK, label || extra). HMAC is a PRF
 * keyed by the uniformly random ISK, so distinct labels give independent
 * keys; libsodium 1.0.18 has no HKDF and this needs none. */
#include "cpace_confirm.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#define LABEL_CI        "chute-pair-v1"
#define LABEL_CONFIRM_I "chute-pair-v1 confirm initiator"
#define LABEL_CONFIRM_R "chute-pair-v1 confirm responder"
#define LABEL_SAS       "chute-pair-v1 sas"
#define LABEL_COMMIT    "chute-pair-v1 sas commit"
#define LABEL_CHANNEL   "chute-pair-v1 channel"
#define LABEL_LINK      "chute-pair-v1 link"

static void derive(const cpace_confirm *c, const char *label,
                   const uint8_t *extra, size_t extra_len,
                   uint8_t out[crypto_auth_hmacsha512_BYTES])
{
    crypto_auth_hmacsha512_state h;
    crypto_auth_hmacsha512_init(&h, c->isk, sizeof c->isk);
    crypto_auth_hmacsha512_update(&h, (const uint8_t *)label, strlen(label));
    if (extra_len)
        crypto_auth_hmacsha512_update(&h, extra, extra_len);
    crypto_auth_hmacsha512_final(&h, out);
    sodium_memzero(&h, sizeof h);
}

static void derive32(const cpace_confirm *c, const char *label, uint8_t out[32])
{
    uint8_t full[crypto_auth_hmacsha512_BYTES];
    derive(c, label, NULL, 0, full);
    memcpy(out, full, 32);
    sodium_memzero(full, sizeof full);
}

/* ---- CI ----------------------------------------------------------------- */

static size_t put_lv(uint8_t *out, size_t cap, size_t at, const char *s)
{
    size_t n = strlen(s), len = n;
    do {                                   /* LEB128, as in the draft */
        uint8_t b = (uint8_t)(len & 0x7f);
        len >>= 7;
        if (at < cap)
            out[at] = len ? (uint8_t)(b | 0x80) : b;
        at++;
    } while (len);
    for (size_t i = 0; i < n; i++, at++)
        if (at < cap)
            out[at] = (uint8_t)s[i];
    return at;
}

chute_status cpace_pair_ci(const char *relay_origin, const char *nameplate,
                           uint8_t *out, size_t out_cap, size_t *out_len)
{
    if (!relay_origin || !*relay_origin || !nameplate || !*nameplate ||
        !out_len || (!out && out_cap))
        return CHUTE_ERR_ARG;
    size_t at = put_lv(out, out_cap, 0, LABEL_CI);
    at = put_lv(out, out_cap, at, relay_origin);
    at = put_lv(out, out_cap, at, nameplate);
    *out_len = at;
    return at > out_cap ? CHUTE_ERR_LIMIT : CHUTE_OK;
}

/* ---- SAS commitment ------------------------------------------------------ */

static void commit_of(const uint8_t nonce[CPACE_SAS_NONCE_BYTES],
                      uint8_t commit[CPACE_SAS_COMMIT_BYTES])
{
    crypto_hash_sha512_state h;
    uint8_t full[crypto_hash_sha512_BYTES];
    crypto_hash_sha512_init(&h);
    crypto_hash_sha512_update(&h, (const uint8_t *)LABEL_COMMIT,
                              sizeof LABEL_COMMIT - 1);
    crypto_hash_sha512_update(&h, nonce, CPACE_SAS_NONCE_BYTES);
    crypto_hash_sha512_final(&h, full);
    memcpy(commit, full, CPACE_SAS_COMMIT_BYTES);
    sodium_memzero(&h, sizeof h);
}

void cpace_sas_commit_make(uint8_t nonce[CPACE_SAS_NONCE_BYTES],
                           uint8_t commit[CPACE_SAS_COMMIT_BYTES])
{
    randombytes_buf(nonce, CPACE_SAS_NONCE_BYTES);
    commit_of(nonce, commit);
}

/* ---- confirmation ---------------------------------------------------------- */

void cpace_confirm_wipe(cpace_confirm *c)
{
    if (c)
        sodium_memzero(c, sizeof *c);
}

chute_status cpace_confirm_init(cpace_confirm *c, cpace_role role,
                                const cpace_keys *keys)
{
    if (!c)
        return CHUTE_ERR_ARG;
    cpace_confirm_wipe(c);
    if (!keys || (role != CPACE_INITIATOR && role != CPACE_RESPONDER))
        return CHUTE_ERR_ARG;
    c->role = role;
    memcpy(c->isk, keys->isk, sizeof c->isk);
    memcpy(c->sid_out, keys->sid_out, sizeof c->sid_out);
    c->stage = 1;
    return CHUTE_OK;
}

/* Tag of the side playing `role`: HMAC-SHA-512-256 (HMAC-SHA-512 cut to 32
 * bytes) under that direction's key, over the transcript digest sid_out.
 * One key per direction, so a tag reflected back never verifies. */
static void tag_of(const cpace_confirm *c, cpace_role role,
                   uint8_t tag[CPACE_CONFIRM_TAG_BYTES])
{
    uint8_t key[crypto_auth_hmacsha512256_KEYBYTES];
    derive32(c, role == CPACE_INITIATOR ? LABEL_CONFIRM_I : LABEL_CONFIRM_R,
             key);
    crypto_auth_hmacsha512256(tag, c->sid_out, sizeof c->sid_out, key);
    sodium_memzero(key, sizeof key);
}

static cpace_role peer_of(cpace_role r)
{
    return r == CPACE_INITIATOR ? CPACE_RESPONDER : CPACE_INITIATOR;
}

chute_status cpace_confirm_tag(const cpace_confirm *c,
                               uint8_t tag_out[CPACE_CONFIRM_TAG_BYTES])
{
    if (!c || c->stage < 1 || !tag_out)
        return CHUTE_ERR_ARG;
    tag_of(c, c->role, tag_out);
    return CHUTE_OK;
}

chute_status cpace_confirm_verify(cpace_confirm *c,
                                  const uint8_t peer_tag[CPACE_CONFIRM_TAG_BYTES])
{
    if (!c || c->stage != 1 || !peer_tag)
        return CHUTE_ERR_ARG;
    uint8_t want[CPACE_CONFIRM_TAG_BYTES];
    tag_of(c, peer_of(c->role), want);
    int ok = crypto_verify_32(want, peer_tag) == 0;
    sodium_memzero(want, sizeof want);
    if (!ok) {
        cpace_confirm_wipe(c);
        return CHUTE_ERR_AUTH;
    }
    c->stage = 2;
    return CHUTE_OK;
}

/* ---- what a verified run hands on ------------------------------------------- */

chute_status cpace_confirm_sas(const cpace_confirm *c,
                               const uint8_t nonce[CPACE_SAS_NONCE_BYTES],
                               const uint8_t commit[CPACE_SAS_COMMIT_BYTES],
                               char sas_out[CPACE_SAS_STRING_BYTES])
{
    if (!c || c->stage != 2 || !nonce || !commit || !sas_out)
        return CHUTE_ERR_ARG;
    uint8_t opened[CPACE_SAS_COMMIT_BYTES];
    commit_of(nonce, opened);
    int ok = crypto_verify_32(opened, commit) == 0;
    if (!ok)
        return CHUTE_ERR_AUTH;

    uint8_t d[crypto_auth_hmacsha512_BYTES];
    derive(c, LABEL_SAS, nonce, CPACE_SAS_NONCE_BYTES, d);
    /* 64 bits mod 10^6: the bias is below 2^-44, invisible to anyone. */
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = x << 8 | d[i];
    unsigned n = (unsigned)(x % 1000000u);
    sodium_memzero(d, sizeof d);
    snprintf(sas_out, CPACE_SAS_STRING_BYTES, "%03u %03u", n / 1000, n % 1000);
    return CHUTE_OK;
}

static chute_status verified_key(const cpace_confirm *c, const char *label,
                                 uint8_t key_out[CPACE_CONFIRM_KEY_BYTES])
{
    if (!c || c->stage != 2 || !key_out)
        return CHUTE_ERR_ARG;
    derive32(c, label, key_out);
    return CHUTE_OK;
}

chute_status cpace_confirm_channel_key(const cpace_confirm *c,
                                       uint8_t key_out[CPACE_CONFIRM_KEY_BYTES])
{
    return verified_key(c, LABEL_CHANNEL, key_out);
}

chute_status cpace_confirm_link_key(const cpace_confirm *c,
                                    uint8_t key_out[CPACE_CONFIRM_KEY_BYTES])
{
    return verified_key(c, LABEL_LINK, key_out);
}
