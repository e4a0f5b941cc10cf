/* age_decryptor.h — streaming decryption of an age v1 file in bounded
 * memory (the header, at most AGE_HEADER_MAX, then one 64 KiB chunk of
 * ciphertext and one of plaintext).
 *
 *   age_decryptor *d;
 *   age_decryptor_new(&d, identities, n);
 *   while (more ciphertext) age_decryptor_update(d, &io);  // drain io.out
 *   do age_decryptor_finish(d, &io, &done); while (!done); // drain io.out
 *   age_decryptor_free(d);
 *
 * Plaintext is released chunk by chunk as soon as each chunk's tag
 * verifies; a full chunk is tried as a middle chunk, then as the last one
 * (the tag tells them apart, so no lookahead is needed). After an error
 * every call returns the same error; plaintext released before it was
 * authentic but the file as a whole is not, so discard it. Errors:
 * header — MALFORMED, UNSUPPORTED, LIMIT, NO_MATCH, HMAC;
 * payload — AUTH (a chunk does not verify), TRUNCATED (the file ends
 * before its last chunk), MALFORMED (trailing data, bad chunk shape). */
#ifndef CHUTE_AGE_DECRYPTOR_H
#define CHUTE_AGE_DECRYPTOR_H

#include <stdbool.h>

#include "age_header.h"
#include "age_io.h"
#include "age_keys.h"
#include "status.h"

typedef struct age_decryptor age_decryptor;

/* A decryptor that will try each of the n_ids identities (copied). */
chute_status age_decryptor_new(age_decryptor **out, const age_identity *ids,
                               size_t n_ids);

/* Consumes ciphertext from io->in and writes plaintext to io->out until
 * the input is used up or the output is full; call again until both hold. */
chute_status age_decryptor_update(age_decryptor *d, age_io *io);

/* No more ciphertext: verifies the last chunk and writes what remains.
 * *done becomes true once all plaintext is out; until then, make room in
 * io->out and call again. io->in is ignored. */
chute_status age_decryptor_finish(age_decryptor *d, age_io *io, bool *done);

/* The authenticated header MAC; CHUTE_ERR_NOT_FOUND until the header has
 * been read and its MAC verified. */
chute_status age_decryptor_header_mac(const age_decryptor *d,
                                      uint8_t mac[AGE_MAC_BYTES]);

/* Where the payload's first chunk begins in the file (the header and the
 * 16-byte nonce before it); CHUTE_ERR_NOT_FOUND until both have been read. */
chute_status age_decryptor_payload_start(const age_decryptor *d, uint64_t *offset);

/* Resuming: once the payload has started and nothing of it was fed, the
 * next ciphertext fed is chunk n (at payload_start + n * AGE_CHUNK_CT_BYTES)
 * — chunks 0..n-1 were opened by an earlier run. Never skip the last chunk:
 * finish must see it. CHUTE_ERR_ARG at any other time. */
chute_status age_decryptor_skip_chunks(age_decryptor *d, uint64_t n);

/* Wipes keys and buffers. NULL is fine. */
void age_decryptor_free(age_decryptor *d);

#endif
