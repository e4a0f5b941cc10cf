/* hkdf.c — HKDF-SHA-256 (RFC 5869) on libsodium's HMAC-SHA-256. */
#include "hkdf.h"

#include <sodium.h>
#include <string.h>

void hkdf_sha256_extract(uint8_t prk[HKDF_SHA256_PRK_BYTES],
                         const uint8_t *salt, size_t salt_len,
                         const uint8_t *ikm, size_t ikm_len)
{
    /* HMAC pads a short key with zeros, so an empty salt is the same key as
     * the RFC's HashLen zero bytes; libsodium wants a non-NULL pointer. */
    static const uint8_t no_salt[1];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, salt_len ? salt : no_salt, salt_len);
    crypto_auth_hmacsha256_update(&st, ikm, ikm_len);
    crypto_auth_hmacsha256_final(&st, prk);
    sodium_memzero(&st, sizeof st);
}

chute_status hkdf_sha256_expand(uint8_t *out, size_t out_len,
                                const uint8_t prk[HKDF_SHA256_PRK_BYTES],
                                const uint8_t *info, size_t info_len)
{
    if (out_len > HKDF_SHA256_MAX_OUT || (out == NULL && out_len))
        return CHUTE_ERR_ARG;

    uint8_t t[crypto_auth_hmacsha256_BYTES];
    size_t t_len = 0, done = 0;
    crypto_auth_hmacsha256_state st;

    for (uint8_t counter = 1; done < out_len; counter++) {
        crypto_auth_hmacsha256_init(&st, prk, HKDF_SHA256_PRK_BYTES);
        crypto_auth_hmacsha256_update(&st, t, t_len);
        if (info_len)
            crypto_auth_hmacsha256_update(&st, info, info_len);
        crypto_auth_hmacsha256_update(&st, &counter, 1);
        crypto_auth_hmacsha256_final(&st, t);
        t_len = sizeof t;
        size_t n = out_len - done < t_len ? out_len - done : t_len;
        memcpy(out + done, t, n);
        done += n;
    }
    sodium_memzero(&st, sizeof st);
    sodium_memzero(t, sizeof t);
    return CHUTE_OK;
}

chute_status hkdf_sha256(uint8_t *out, size_t out_len,
                         const uint8_t *salt, size_t salt_len,
                         const uint8_t *ikm, size_t ikm_len,
                         const uint8_t *info, size_t info_len)
{
    uint8_t prk[HKDF_SHA256_PRK_BYTES];
    hkdf_sha256_extract(prk, salt, salt_len, ikm, ikm_len);
    chute_status st = hkdf_sha256_expand(out, out_len, prk, info, info_len);
    sodium_memzero(prk, sizeof prk);
    return st;
}
