/* age_io.h — the in/out window the streaming encryptor and decryptor
 * work through, in the manner of zlib's z_stream: the caller points `in`
 * at bytes to consume and `out` at room to fill; each call advances both
 * pointers and shrinks both lengths by what it used. */
#ifndef CHUTE_AGE_IO_H
#define CHUTE_AGE_IO_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint8_t *in;  /* input not yet consumed */
    size_t in_len;
    uint8_t *out;       /* room not yet filled */
    size_t out_len;
} age_io;

#endif
