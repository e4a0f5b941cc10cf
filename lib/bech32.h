/* bech32.h — bech32 strings (BIP 173) carrying bytes, as age uses them.
 *
 * age keeps BIP 173's checksum and case rules but drops its 90-character
 * limit, so the limit here is BECH32_MAX_LEN, roomy enough for any key we
 * handle. Strings are all lower or all upper case, never mixed. */
#ifndef CHUTE_BECH32_H
#define CHUTE_BECH32_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define BECH32_MAX_LEN     1024  /* characters, without the NUL */
#define BECH32_MAX_HRP_LEN 83

/* Writes hrp "1" data checksum, lower case, NUL-terminated, into out.
 * CHUTE_ERR_ARG if hrp is empty, too long, has characters outside 33..126
 * or upper case; CHUTE_ERR_LIMIT if the result exceeds BECH32_MAX_LEN or
 * out_cap. */
chute_status bech32_encode(char *out, size_t out_cap, const char *hrp,
                           const uint8_t *data, size_t data_len);

/* Parses s: copies the human-readable part (case as written) into hrp and
 * the payload bytes into data. CHUTE_ERR_MALFORMED on a bad character, mixed
 * case, missing separator, bad checksum or non-zero padding bits;
 * CHUTE_ERR_LIMIT if s is longer than BECH32_MAX_LEN or a buffer is short. */
chute_status bech32_decode(const char *s, char *hrp, size_t hrp_cap,
                           uint8_t *data, size_t data_cap, size_t *data_len);

/* The same at the level of 5-bit groups (values 0..31), for callers and
 * tests that need BIP 173 strings whose groups do not pack into bytes. */
chute_status bech32_encode_groups(char *out, size_t out_cap, const char *hrp,
                                  const uint8_t *groups, size_t n_groups);
chute_status bech32_decode_groups(const char *s, char *hrp, size_t hrp_cap,
                                  uint8_t *groups, size_t groups_cap,
                                  size_t *n_groups);

#endif
