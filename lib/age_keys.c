/* age_keys.c — X25519 identities and recipients in their bech32 forms. */
#include "age_keys.h"

#include <ctype.h>
#include <sodium.h>
#include <string.h>

#include "bech32.h"

#define IDENTITY_HRP  "AGE-SECRET-KEY-"
#define RECIPIENT_HRP "age"

static chute_status derive_public(age_identity *id)
{
    /* libsodium clamps the scalar and refuses an all-zero result. */
    if (sodium_init() < 0 ||
        crypto_scalarmult_base(id->public_key, id->secret) != 0)
        return CHUTE_ERR_CRYPTO;
    return CHUTE_OK;
}

chute_status age_identity_generate(age_identity *id)
{
    if (!id)
        return CHUTE_ERR_ARG;
    if (sodium_init() < 0)
        return CHUTE_ERR_CRYPTO;
    randombytes_buf(id->secret, sizeof id->secret);
    chute_status st = derive_public(id);
    if (st != CHUTE_OK)
        age_identity_wipe(id);
    return st;
}

/* Decodes a bech32 key of exactly 32 bytes; *hrp_out gets the HRP. */
static chute_status decode_key(const char *s, char *hrp, size_t hrp_cap,
                               uint8_t key[AGE_X25519_BYTES])
{
    uint8_t data[AGE_X25519_BYTES + 1];
    size_t n = 0;
    chute_status st = bech32_decode(s, hrp, hrp_cap, data, sizeof data, &n);
    if (st == CHUTE_OK && n != AGE_X25519_BYTES)
        st = CHUTE_ERR_MALFORMED;
    if (st == CHUTE_OK)
        memcpy(key, data, AGE_X25519_BYTES);
    sodium_memzero(data, sizeof data);
    /* A long string or long payload is simply not a key of ours. */
    return st == CHUTE_ERR_LIMIT ? CHUTE_ERR_MALFORMED : st;
}

chute_status age_identity_parse(age_identity *id, const char *s)
{
    if (!id || !s)
        return CHUTE_ERR_ARG;
    if (strncmp(s, IDENTITY_HRP "PQ-1", strlen(IDENTITY_HRP "PQ-1")) == 0)
        return CHUTE_ERR_UNSUPPORTED;
    char hrp[BECH32_MAX_HRP_LEN + 1];
    chute_status st = decode_key(s, hrp, sizeof hrp, id->secret);
    if (st == CHUTE_OK && strcmp(hrp, IDENTITY_HRP) != 0)
        st = CHUTE_ERR_MALFORMED; /* lower case or another kind of key */
    if (st == CHUTE_OK)
        st = derive_public(id);
    if (st != CHUTE_OK)
        age_identity_wipe(id);
    return st;
}

chute_status age_identity_encode(const age_identity *id,
                                 char out[AGE_IDENTITY_STR_BYTES])
{
    if (!id || !out)
        return CHUTE_ERR_ARG;
    chute_status st = bech32_encode(out, AGE_IDENTITY_STR_BYTES,
                                    "age-secret-key-", id->secret,
                                    sizeof id->secret);
    if (st != CHUTE_OK)
        return st;
    for (char *p = out; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    return CHUTE_OK;
}

void age_identity_recipient(const age_identity *id, age_recipient *out)
{
    memcpy(out->public_key, id->public_key, sizeof out->public_key);
}

void age_identity_wipe(age_identity *id)
{
    if (id)
        sodium_memzero(id, sizeof *id);
}

chute_status age_recipient_parse(age_recipient *r, const char *s)
{
    if (!r || !s)
        return CHUTE_ERR_ARG;
    if (strncmp(s, RECIPIENT_HRP "1pq1", strlen(RECIPIENT_HRP "1pq1")) == 0)
        return CHUTE_ERR_UNSUPPORTED;
    char hrp[BECH32_MAX_HRP_LEN + 1];
    chute_status st = decode_key(s, hrp, sizeof hrp, r->public_key);
    if (st == CHUTE_OK && strcmp(hrp, RECIPIENT_HRP) != 0)
        st = CHUTE_ERR_MALFORMED; /* upper case or another kind of key */
    if (st != CHUTE_OK)
        memset(r, 0, sizeof *r);
    return st;
}

chute_status age_recipient_encode(const age_recipient *r,
                                  char out[AGE_RECIPIENT_STR_BYTES])
{
    if (!r || !out)
        return CHUTE_ERR_ARG;
    return bech32_encode(out, AGE_RECIPIENT_STR_BYTES, RECIPIENT_HRP,
                         r->public_key, sizeof r->public_key);
}
