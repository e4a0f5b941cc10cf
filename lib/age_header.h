/* age_header.h — the textual header of an age v1 file.
 *
 *   age-encryption.org/v1
 *   -> X25519 <share>        one stanza per recipient: an argument line,
 *   <body, base64>           then base64 body lines of 64 columns ending
 *   --- <MAC>                with a shorter (maybe empty) one
 *
 * Parsing is strict (canonical base64, exact line shapes); an X25519 stanza
 * must have one 32-byte share and a 32-byte body. The MAC is HMAC-SHA-256
 * under HKDF(salt = "", file key, "header") of the header up to and
 * including "---". Chute binds a blob to its sealed metadata by this MAC. */
#ifndef CHUTE_AGE_HEADER_H
#define CHUTE_AGE_HEADER_H

#include <stddef.h>
#include <stdint.h>

#include "age_keys.h"
#include "age_x25519.h"
#include "status.h"

#define AGE_MAC_BYTES  32
#define AGE_HEADER_MAX (64 * 1024) /* longest header we read or write */

typedef struct age_header age_header;

/* Parses the header at the start of buf[0..len). On success *out owns the
 * parsed header and *header_len is its length in bytes (the payload nonce
 * follows). CHUTE_ERR_TRUNCATED: buf is a valid beginning that ends too
 * soon (give more bytes); CHUTE_ERR_MALFORMED; CHUTE_ERR_UNSUPPORTED for
 * another version; CHUTE_ERR_LIMIT past AGE_HEADER_MAX; CHUTE_ERR_NOMEM. */
chute_status age_header_parse(const uint8_t *buf, size_t len,
                              age_header **out, size_t *header_len);

void age_header_free(age_header *h);

/* The 32 MAC bytes as read from the header (authentic only after
 * age_header_unwrap succeeded). */
const uint8_t *age_header_mac(const age_header *h);

size_t age_header_stanza_count(const age_header *h);

/* Finds the file key with any of the identities and verifies the MAC.
 * CHUTE_ERR_NO_MATCH: no stanza is for us; CHUTE_ERR_HMAC: the MAC is
 * wrong; CHUTE_ERR_UNSUPPORTED: an scrypt stanza (passphrase files);
 * CHUTE_ERR_MALFORMED: an X25519 share of low order. */
chute_status age_header_unwrap(const age_header *h, const age_identity *ids,
                               size_t n_ids,
                               uint8_t file_key[AGE_FILE_KEY_BYTES]);

/* Writes a header wrapping file_key to each of the n recipients (n >= 1)
 * into a new malloc'd buffer *out of *out_len bytes; mac gets its MAC. */
chute_status age_header_build(const uint8_t file_key[AGE_FILE_KEY_BYTES],
                              const age_recipient *recipients, size_t n,
                              uint8_t **out, size_t *out_len,
                              uint8_t mac[AGE_MAC_BYTES]);

#endif
