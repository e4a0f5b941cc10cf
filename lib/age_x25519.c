/* age_x25519.c — the X25519 recipient stanza. */
#include "age_x25519.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "hkdf.h"

static const char x25519_label[] = "age-encryption.org/v1/X25519";

static chute_status wrap_key(uint8_t key[32],
                             const uint8_t shared[AGE_X25519_BYTES],
                             const uint8_t share[AGE_X25519_BYTES],
                             const uint8_t recipient[AGE_X25519_BYTES])
{
    uint8_t salt[2 * AGE_X25519_BYTES];
    memcpy(salt, share, AGE_X25519_BYTES);
    memcpy(salt + AGE_X25519_BYTES, recipient, AGE_X25519_BYTES);
    return hkdf_sha256(key, 32, salt, sizeof salt, shared, AGE_X25519_BYTES,
                       (const uint8_t *)x25519_label,
                       sizeof x25519_label - 1);
}

/* The nonce is zero: every wrap key is used for exactly one message. */
static const uint8_t zero_nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];

chute_status age_x25519_wrap(const uint8_t file_key[AGE_FILE_KEY_BYTES],
                             const age_recipient *r,
                             char out[AGE_X25519_STANZA_MAX], size_t *out_len)
{
    uint8_t eph[AGE_X25519_BYTES], share[AGE_X25519_BYTES];
    uint8_t shared[AGE_X25519_BYTES], key[32];
    uint8_t body[AGE_X25519_BODY_BYTES];
    chute_status st = CHUTE_ERR_CRYPTO;

    if (sodium_init() < 0)
        return CHUTE_ERR_CRYPTO;
    randombytes_buf(eph, sizeof eph);
    if (crypto_scalarmult_base(share, eph) != 0 ||
        crypto_scalarmult(shared, eph, r->public_key) != 0)
        goto out; /* the recipient is a low-order point */
    st = wrap_key(key, shared, share, r->public_key);
    if (st != CHUTE_OK)
        goto out;
    crypto_aead_chacha20poly1305_ietf_encrypt(body, NULL, file_key,
                                              AGE_FILE_KEY_BYTES, NULL, 0,
                                              NULL, zero_nonce, key);
    char share_b64[64], body_b64[64];
    sodium_bin2base64(share_b64, sizeof share_b64, share, sizeof share,
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    sodium_bin2base64(body_b64, sizeof body_b64, body, sizeof body,
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    int n = snprintf(out, AGE_X25519_STANZA_MAX, "-> X25519 %s\n%s\n",
                     share_b64, body_b64);
    if (n < 0 || n >= AGE_X25519_STANZA_MAX) {
        st = CHUTE_ERR_LIMIT;
        goto out;
    }
    *out_len = (size_t)n;
    st = CHUTE_OK;
out:
    sodium_memzero(eph, sizeof eph);
    sodium_memzero(shared, sizeof shared);
    sodium_memzero(key, sizeof key);
    return st;
}

chute_status age_x25519_unwrap(uint8_t file_key[AGE_FILE_KEY_BYTES],
                               const uint8_t share[AGE_X25519_BYTES],
                               const uint8_t body[AGE_X25519_BODY_BYTES],
                               const age_identity *id)
{
    uint8_t shared[AGE_X25519_BYTES], key[32];
    chute_status st = CHUTE_ERR_MALFORMED;

    if (sodium_init() < 0)
        return CHUTE_ERR_CRYPTO;
    /* libsodium returns -1 exactly when the shared secret is all zero,
     * which the age spec requires us to refuse. */
    if (crypto_scalarmult(shared, id->secret, share) != 0)
        goto out;
    st = wrap_key(key, shared, share, id->public_key);
    if (st != CHUTE_OK)
        goto out;
    if (crypto_aead_chacha20poly1305_ietf_decrypt(
            file_key, NULL, NULL, body, AGE_X25519_BODY_BYTES, NULL, 0,
            zero_nonce, key) != 0) {
        sodium_memzero(file_key, AGE_FILE_KEY_BYTES);
        st = CHUTE_ERR_NO_MATCH;
        goto out;
    }
    st = CHUTE_OK;
out:
    sodium_memzero(shared, sizeof shared);
    sodium_memzero(key, sizeof key);
    return st;
}
