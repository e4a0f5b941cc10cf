/* age_keys.h — age X25519 identities (secret keys) and recipients (public
 * keys), and their bech32 text forms:
 *
 *   identity   AGE-SECRET-KEY-1...  (upper case, 74 characters)
 *   recipient  age1...              (lower case, 62 characters)
 *
 * Parsing is strict: the exact HRP and case, a valid checksum, 32 bytes. */
#ifndef CHUTE_AGE_KEYS_H
#define CHUTE_AGE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define AGE_X25519_BYTES        32
#define AGE_IDENTITY_STR_BYTES  75  /* 74 characters and the NUL */
#define AGE_RECIPIENT_STR_BYTES 63  /* 62 characters and the NUL */

typedef struct {
    uint8_t secret[AGE_X25519_BYTES];     /* X25519 scalar */
    uint8_t public_key[AGE_X25519_BYTES]; /* secret * basepoint, cached */
} age_identity;

typedef struct {
    uint8_t public_key[AGE_X25519_BYTES];
} age_recipient;

/* A fresh random identity. */
chute_status age_identity_generate(age_identity *id);

/* Parses "AGE-SECRET-KEY-1..."; CHUTE_ERR_UNSUPPORTED for a hybrid (PQ)
 * identity, CHUTE_ERR_MALFORMED for anything else that is not ours. */
chute_status age_identity_parse(age_identity *id, const char *s);

/* Writes the NUL-terminated "AGE-SECRET-KEY-1..." form into out. */
chute_status age_identity_encode(const age_identity *id,
                                 char out[AGE_IDENTITY_STR_BYTES]);

/* The recipient that files for this identity are encrypted to. */
void age_identity_recipient(const age_identity *id, age_recipient *out);

/* Wipes the secret; call when done with an identity. */
void age_identity_wipe(age_identity *id);

/* Parses "age1..."; CHUTE_ERR_UNSUPPORTED for a hybrid "age1pq1..." key. */
chute_status age_recipient_parse(age_recipient *r, const char *s);

/* Writes the NUL-terminated "age1..." form into out. */
chute_status age_recipient_encode(const age_recipient *r,
                                  char out[AGE_RECIPIENT_STR_BYTES]);

#endif
