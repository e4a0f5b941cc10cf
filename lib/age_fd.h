/* age_fd.h — whole-file age encryption and decryption between file
 * descriptors, on the streaming API, in bounded memory. */
#ifndef CHUTE_AGE_FD_H
#define CHUTE_AGE_FD_H

#include "age_header.h"
#include "age_keys.h"
#include "status.h"

/* Reads plaintext from in_fd to its end and writes the age file to out_fd.
 * mac (may be NULL) gets the header MAC. CHUTE_ERR_IO with errno set if a
 * read or write fails. Does not fsync or close. */
chute_status age_encrypt_fd(int in_fd, int out_fd,
                            const age_recipient *recipients, size_t n,
                            uint8_t mac[AGE_MAC_BYTES]);

/* Reads an age file from in_fd to its end and writes the plaintext to
 * out_fd. On error, out_fd may already hold a prefix of authenticated
 * plaintext: write to a temporary file and keep it only on CHUTE_OK.
 * mac (may be NULL) gets the authenticated header MAC. */
chute_status age_decrypt_fd(int in_fd, int out_fd, const age_identity *ids,
                            size_t n_ids, uint8_t mac[AGE_MAC_BYTES]);

#endif
