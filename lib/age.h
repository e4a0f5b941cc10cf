/* age.h — the age v1 file format (age-encryption.org/v1) as Chute uses it:
 * X25519 recipients, 64 KiB STREAM chunks, on libsodium. One include for
 * all of it; each part has its own header:
 *
 *   age_keys.h       identities and recipients, AGE-SECRET-KEY-1 / age1
 *   age_header.h     parse, unwrap (find the file key, verify MAC), build
 *   age_stream.h     payload key, one chunk at a time, chunk geometry
 *   age_encryptor.h  streaming encryption (push or pull, bounded memory)
 *   age_decryptor.h  streaming decryption (push or pull, bounded memory)
 *   age_fd.h         whole files between file descriptors */
#ifndef CHUTE_AGE_H
#define CHUTE_AGE_H

#include "age_decryptor.h"
#include "age_encryptor.h"
#include "age_fd.h"
#include "age_header.h"
#include "age_keys.h"
#include "age_stream.h"

#endif
