/* age_x25519.h — the X25519 recipient stanza: wrapping a file key to a
 * recipient and unwrapping it with an identity.
 *
 *   -> X25519 base64(ephemeral share)
 *   base64(ChaCha20-Poly1305(wrap key, zero nonce, file key))
 *
 * wrap key = HKDF-SHA-256(salt = share || recipient, ikm = X25519 shared
 * secret, info = "age-encryption.org/v1/X25519"). */
#ifndef CHUTE_AGE_X25519_H
#define CHUTE_AGE_X25519_H

#include <stddef.h>
#include <stdint.h>

#include "age_keys.h"
#include "status.h"

#define AGE_FILE_KEY_BYTES     16
#define AGE_X25519_BODY_BYTES  32  /* wrapped file key and its tag */
#define AGE_X25519_STANZA_MAX  100 /* text of one stanza, NUL included */

/* Writes the stanza text (two lines, each ending in LF) for r into out and
 * its length into *out_len. */
chute_status age_x25519_wrap(const uint8_t file_key[AGE_FILE_KEY_BYTES],
                             const age_recipient *r,
                             char out[AGE_X25519_STANZA_MAX], size_t *out_len);

/* Opens one X25519 stanza (share and body already decoded) with id.
 * CHUTE_ERR_NO_MATCH if it is not for id; CHUTE_ERR_MALFORMED if the share
 * gives the all-zero shared secret (a low-order point). */
chute_status age_x25519_unwrap(uint8_t file_key[AGE_FILE_KEY_BYTES],
                               const uint8_t share[AGE_X25519_BYTES],
                               const uint8_t body[AGE_X25519_BODY_BYTES],
                               const age_identity *id);

#endif
