/* fuzz_age_header — arbitrary bytes as an age file: the header parser,
 * unwrapping with a fixed identity, and the streaming decryptor behind it.
 * The identity is the one of the CCTV vectors, so seeds taken from them
 * reach the payload. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "age.h"

static const char identity[] =
    "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static age_identity id;
    static bool ready;
    if (!ready) {
        if (age_identity_parse(&id, identity) != CHUTE_OK)
            abort();
        ready = true;
    }

    age_header *h = NULL;
    size_t len = 0;
    chute_status st = age_header_parse(data, size, &h, &len);
    if (st == CHUTE_OK) {
        if (len > size || h == NULL)
            abort();
        uint8_t key[AGE_FILE_KEY_BYTES];
        (void)age_header_unwrap(h, &id, 1, key);
        age_header_free(h);
    } else if (h != NULL) {
        abort();
    }

    /* The whole input through the decryptor, in one push. */
    age_decryptor *d = NULL;
    if (age_decryptor_new(&d, &id, 1) != CHUTE_OK)
        abort();
    static uint8_t out[AGE_CHUNK_BYTES * 2];
    age_io io = {data, size, out, sizeof out};
    bool done = false;
    st = age_decryptor_update(d, &io);
    while (st == CHUTE_OK && io.in_len > 0) {
        io.out = out;
        io.out_len = sizeof out;
        st = age_decryptor_update(d, &io);
    }
    while (st == CHUTE_OK && !done) {
        io.out = out;
        io.out_len = sizeof out;
        st = age_decryptor_finish(d, &io, &done);
    }
    age_decryptor_free(d);
    return 0;
}
