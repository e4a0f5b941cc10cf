/* meta.h — the sealed metadata record of an item (PROTOCOL.md §8).
 *
 * Each item on the relay carries, next to its age blob, a small record with
 * the file's relative path, size, mode, mtime and the age header MAC of the
 * blob, encrypted and authenticated under a key derived from the pair's link
 * key. Opening it proves the item comes from the paired peer and binds the
 * record to its blob (header MAC), its item id and its receiver. */
#ifndef CHUTE_META_H
#define CHUTE_META_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define META_VERSION     1
#define META_KEY_BYTES   32
#define META_MAC_BYTES   32       /* age header MAC, HMAC-SHA-256 */
#define META_PATH_MAX    3072     /* bytes; keeps a sealed record < 4 KiB */
#define META_FIXED_BYTES 59       /* plaintext bytes before the path */
#define META_PAD         256      /* plaintext is padded to a multiple */
#define META_NONCE_BYTES 24
#define META_TAG_BYTES   16
/* Largest plaintext and sealed record. */
#define META_PLAIN_MAX   (((META_FIXED_BYTES + META_PATH_MAX + META_PAD - 1) / META_PAD) * META_PAD)
#define META_SEALED_MAX  (1 + META_NONCE_BYTES + META_PLAIN_MAX + META_TAG_BYTES)

typedef struct {
    char     path[META_PATH_MAX + 1]; /* relative, '/'-separated; NUL-free */
    uint64_t size;                    /* plaintext bytes */
    uint32_t mode;                    /* permission bits, <= 07777 */
    int64_t  mtime_sec;
    uint32_t mtime_nsec;              /* < 1e9 */
    uint8_t  header_mac[META_MAC_BYTES];
} chute_meta;

/* key = HKDF-SHA-256(salt = "", ikm = link_key, info = "chute meta v1"). */
chute_status meta_key(const uint8_t link_key[32], uint8_t key[META_KEY_BYTES]);

/* The plaintext encoding alone (exposed for tests and fuzzing). */
chute_status meta_encode(const chute_meta *m, uint8_t *out, size_t cap,
                         size_t *out_len);
/* Strict: exact length, zero padding, version, ranges; path without NUL.
 * Never trusts lengths from the input. */
chute_status meta_decode(const uint8_t *in, size_t len, chute_meta *m);

/* Seal for item_id going to the device whose age recipient is recipient.
 * out needs META_SEALED_MAX bytes at most. */
chute_status meta_seal(const chute_meta *m, const uint8_t key[META_KEY_BYTES],
                       const char *item_id, const char *recipient,
                       uint8_t *out, size_t cap, size_t *out_len);
/* Open and decode; CHUTE_ERR_AUTH if the record was not sealed by the link
 * key's holder for this item id and recipient, CHUTE_ERR_MALFORMED if the
 * framing or content is wrong. */
chute_status meta_open(const uint8_t *in, size_t len,
                       const uint8_t key[META_KEY_BYTES],
                       const char *item_id, const char *recipient,
                       chute_meta *m);

#endif
