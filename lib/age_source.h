/* age_source.h — the bytes of an age v1 file at any offset, made on demand
 * from its fixed parts: the header (up to and including the MAC line), the
 * payload nonce, the file key, and the plaintext in a file.
 *
 *   file = header || nonce || chunk 0 || chunk 1 || ...   (age_stream.h)
 *
 * Nothing random happens here, so the bytes at an offset are the same on
 * every call: an upload can resume at any offset without keeping the
 * ciphertext. The caller must keep the plaintext file unchanged for as long
 * as it reads; a short read of it is CHUTE_ERR_IO. Memory is bounded (one
 * 64 KiB chunk of plaintext and of ciphertext). */
#ifndef CHUTE_AGE_SOURCE_H
#define CHUTE_AGE_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "age_keys.h"
#include "age_stream.h"
#include "status.h"

typedef struct age_source age_source;

/* pt_fd is read with pread (not owned, not moved); pt_size is the number
 * of plaintext bytes it holds. The header is copied. Read in order, the
 * plaintext leaves the page cache behind the reader (lib/pagecache.h). */
chute_status age_source_new(age_source **out, const uint8_t *header,
                            size_t header_len,
                            const uint8_t nonce[AGE_NONCE_BYTES],
                            const uint8_t file_key[AGE_FILE_KEY_BYTES],
                            int pt_fd, uint64_t pt_size);

/* Bytes of the whole age file: header_len + age_payload_size(pt_size). */
uint64_t age_source_size(const age_source *s);

/* Copies the len bytes at offset into buf. CHUTE_ERR_ARG past the end;
 * CHUTE_ERR_IO (errno set) if the plaintext cannot be read in full. Cheap
 * for sequential reads: the chunk last sealed is kept. */
chute_status age_source_read(age_source *s, uint64_t offset, uint8_t *buf,
                             size_t len);

/* Wipes the keys and buffers. NULL is fine. */
void age_source_free(age_source *s);

#endif
