/* age_encryptor.h — streaming encryption to an age v1 file in bounded
 * memory (one 64 KiB chunk of plaintext and one of ciphertext).
 *
 *   age_encryptor *e;
 *   age_encryptor_new(&e, recipients, n);
 *   while (more plaintext) age_encryptor_update(e, &io);  // drain io.out
 *   do age_encryptor_finish(e, &io, &done); while (!done); // drain io.out
 *   age_encryptor_free(e);
 *
 * Output begins with the header, so bytes flow out as soon as they exist:
 * a caller can upload while it seals. A full chunk is held back until more
 * plaintext arrives or finish is called, because only then is it known
 * whether it is the last one. */
#ifndef CHUTE_AGE_ENCRYPTOR_H
#define CHUTE_AGE_ENCRYPTOR_H

#include <stdbool.h>

#include "age_header.h"
#include "age_io.h"
#include "age_keys.h"
#include "age_stream.h"
#include "status.h"

typedef struct age_encryptor age_encryptor;

/* A new file key, nonce and header for the n (>= 1) recipients. */
chute_status age_encryptor_new(age_encryptor **out,
                               const age_recipient *recipients, size_t n);

/* The same with a given file key and payload nonce, for tests that
 * compare another producer of the same file (age_source.h) byte for byte.
 * Never for real files: the key and nonce must be fresh and random. */
chute_status age_encryptor_new_keyed(age_encryptor **out,
                                     const age_recipient *recipients, size_t n,
                                     const uint8_t file_key[AGE_FILE_KEY_BYTES],
                                     const uint8_t nonce[AGE_NONCE_BYTES]);

/* Consumes plaintext from io->in and writes ciphertext to io->out until
 * the input is used up or the output is full; call again until both hold.
 * CHUTE_ERR_ARG after finish. */
chute_status age_encryptor_update(age_encryptor *e, age_io *io);

/* No more plaintext: seals the last chunk and writes what remains. *done
 * becomes true once the file is complete; until then, make room in
 * io->out and call again. io->in is ignored. */
chute_status age_encryptor_finish(age_encryptor *e, age_io *io, bool *done);

/* The header MAC of this file (known from the start). */
void age_encryptor_header_mac(const age_encryptor *e,
                              uint8_t mac[AGE_MAC_BYTES]);

/* Wipes keys and buffers. NULL is fine. */
void age_encryptor_free(age_encryptor *e);

#endif
