/* fuzz_meta.c — hostile sealed meta: the plaintext decoder directly (the
 * AEAD would otherwise reject nearly every input before decoding), and the
 * opener with a fixed key. */
#include <sodium.h>
#include <stdint.h>
#include <string.h>

#include "meta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t key[META_KEY_BYTES];
    chute_meta m;
    if (meta_decode(data, size, &m) == CHUTE_OK) {
        /* Whatever decodes re-encodes to the same bytes. */
        uint8_t again[META_PLAIN_MAX];
        size_t n;
        if (meta_encode(&m, again, sizeof again, &n) != CHUTE_OK ||
            n != size || memcmp(again, data, n) != 0)
            __builtin_trap();
    }
    if (sodium_init() < 0) return 0;
    (void)meta_open(data, size, key, "AAAAAAAAAAAAAAAAAAAAAA", "age1x", &m);
    return 0;
}
