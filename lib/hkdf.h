/* hkdf.h — HKDF-SHA-256 (RFC 5869) on libsodium's HMAC-SHA-256.
 *
 * libsodium 1.0.18 has no crypto_kdf_hkdf, and age derives every key with
 * HKDF, so we carry the few lines of it here. */
#ifndef CHUTE_HKDF_H
#define CHUTE_HKDF_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define HKDF_SHA256_PRK_BYTES 32
#define HKDF_SHA256_MAX_OUT   (255 * 32)

/* PRK = HMAC-SHA-256(salt, ikm). An empty salt means HashLen zero bytes. */
void hkdf_sha256_extract(uint8_t prk[HKDF_SHA256_PRK_BYTES],
                         const uint8_t *salt, size_t salt_len,
                         const uint8_t *ikm, size_t ikm_len);

/* OKM = T(1) || T(2) || ... truncated to out_len; CHUTE_ERR_ARG if
 * out_len > HKDF_SHA256_MAX_OUT. */
chute_status hkdf_sha256_expand(uint8_t *out, size_t out_len,
                                const uint8_t prk[HKDF_SHA256_PRK_BYTES],
                                const uint8_t *info, size_t info_len);

/* Extract then expand; the intermediate PRK is wiped. */
chute_status hkdf_sha256(uint8_t *out, size_t out_len,
                         const uint8_t *salt, size_t salt_len,
                         const uint8_t *ikm, size_t ikm_len,
                         const uint8_t *info, size_t info_len);

#endif
