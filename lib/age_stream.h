/* age_stream.h — the age v1 payload: a 16-byte nonce, then STREAM chunks.
 *
 *   payload key = HKDF-SHA-256(salt = nonce, file key, "payload")
 *   chunk i     = ChaCha20-Poly1305(payload key,
 *                   nonce = 11-byte big-endian i || last ? 01 : 00,
 *                   up to 64 KiB of plaintext) -> up to 64 KiB + 16 bytes
 *
 * Every chunk but the last holds exactly 64 KiB; the last may be full, and
 * is empty only when it is the only chunk. This module works on one chunk
 * at a time, so a reader can decrypt any chunk of a stored file (seeks);
 * age_encryptor.h and age_decryptor.h stream whole files. */
#ifndef CHUTE_AGE_STREAM_H
#define CHUTE_AGE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "age_x25519.h"
#include "status.h"

#define AGE_NONCE_BYTES    16
#define AGE_CHUNK_BYTES    65536
#define AGE_TAG_BYTES      16
#define AGE_CHUNK_CT_BYTES (AGE_CHUNK_BYTES + AGE_TAG_BYTES)

typedef struct {
    uint8_t key[32];
} age_payload_key;

/* Derives the payload key from the file key and the payload nonce. */
chute_status age_payload_key_derive(age_payload_key *pk,
                                    const uint8_t file_key[AGE_FILE_KEY_BYTES],
                                    const uint8_t nonce[AGE_NONCE_BYTES]);

void age_payload_key_wipe(age_payload_key *pk);

/* Seals chunk `index`: pt_len bytes (exactly AGE_CHUNK_BYTES unless last)
 * into ct, which has room for pt_len + AGE_TAG_BYTES. ct may equal pt. */
chute_status age_chunk_encrypt(const age_payload_key *pk, uint64_t index,
                               bool last, const uint8_t *pt, size_t pt_len,
                               uint8_t *ct);

/* Opens chunk `index` of ct_len bytes into pt (room for ct_len - 16);
 * *pt_len gets the plaintext length. CHUTE_ERR_AUTH if the tag, index or
 * last flag do not match; CHUTE_ERR_MALFORMED for a length no chunk in that
 * place can have (short non-last chunk, empty last chunk after the first).
 * pt may equal ct. */
chute_status age_chunk_decrypt(const age_payload_key *pk, uint64_t index,
                               bool last, const uint8_t *ct, size_t ct_len,
                               uint8_t *pt, size_t *pt_len);

/* Where chunk `index` lies in a payload of payload_len bytes (counted
 * from the first byte after the header, so the nonce is at offset 0). */
typedef struct {
    uint64_t offset;      /* of its ciphertext from the start of payload */
    size_t length;        /* of its ciphertext, tag included */
    uint64_t pt_offset;   /* of its plaintext in the whole file */
    size_t pt_length;
    bool last;
} age_chunk_span;

/* Plaintext size and chunk count of a payload of payload_len bytes;
 * CHUTE_ERR_MALFORMED if no valid payload has that length. */
chute_status age_payload_geometry(uint64_t payload_len, uint64_t *pt_size,
                                  uint64_t *n_chunks);

/* The span of chunk `index`; CHUTE_ERR_ARG if index >= the chunk count. */
chute_status age_chunk_locate(uint64_t payload_len, uint64_t index,
                              age_chunk_span *span);

/* Index of the chunk holding plaintext offset pt_offset. */
static inline uint64_t age_chunk_index(uint64_t pt_offset)
{
    return pt_offset / AGE_CHUNK_BYTES;
}

/* Payload length for a plaintext of pt_size bytes. */
uint64_t age_payload_size(uint64_t pt_size);

#endif
