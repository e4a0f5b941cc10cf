/* fuzz_age_stream — arbitrary bytes as the payload (nonce and STREAM
 * chunks) behind a valid header for a fixed file key, decrypted in pieces
 * whose sizes the first input bytes choose. Properties: any split gives
 * the same result; on success the payload length is one
 * age_payload_geometry accepts, with the same plaintext size, and every
 * chunk opens on its own through age_chunk_decrypt. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "age.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The fixed file key; seeds in corpus/fuzz_age_stream use it too. */
static const uint8_t file_key[AGE_FILE_KEY_BYTES] = "chute-fuzz-key!";

static age_identity id;
static uint8_t *header;
static size_t header_len;
static uint8_t *file;

static void setup(void)
{
    uint8_t secret[32] = {7};
    age_recipient r;
    uint8_t mac[AGE_MAC_BYTES];
    memcpy(id.secret, secret, 32);
    if (crypto_scalarmult_base(id.public_key, id.secret) != 0)
        abort();
    age_identity_recipient(&id, &r);
    if (age_header_build(file_key, &r, 1, &header, &header_len, mac) !=
        CHUTE_OK)
        abort();
}

struct result {
    chute_status st;
    size_t released;
    uint8_t hash[32];
};

static void run(const uint8_t *in, size_t n, size_t piece, size_t window,
                struct result *res)
{
    age_decryptor *d = NULL;
    static uint8_t out[AGE_CHUNK_BYTES * 2];
    if (age_decryptor_new(&d, &id, 1) != CHUTE_OK)
        abort();
    crypto_hash_sha256_state hs;
    crypto_hash_sha256_init(&hs);
    size_t pos = 0;
    bool done = false;
    res->st = CHUTE_OK;
    res->released = 0;
    while (res->st == CHUTE_OK && !done) {
        size_t k = n - pos < piece ? n - pos : piece;
        age_io io = {in + pos, k, out, window};
        res->st = k ? age_decryptor_update(d, &io)
                    : age_decryptor_finish(d, &io, &done);
        crypto_hash_sha256_update(&hs, out, window - io.out_len);
        res->released += window - io.out_len;
        pos += k - io.in_len;
    }
    crypto_hash_sha256_final(&hs, res->hash);
    age_decryptor_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!header)
        setup();
    if (size < 2 || size > 4 * AGE_CHUNK_CT_BYTES)
        return 0;
    size_t piece = (size_t)data[0] * 257 + 1;
    size_t window = (size_t)data[1] * 300 + 1;
    const uint8_t *payload = data + 2;
    size_t payload_len = size - 2;

    free(file);
    file = malloc(header_len + payload_len + 1);
    if (!file)
        abort();
    memcpy(file, header, header_len);
    memcpy(file + header_len, payload, payload_len);
    size_t n = header_len + payload_len;

    struct result a, b;
    run(file, n, piece, window, &a);
    run(file, n, n + 1, sizeof(uint8_t) * AGE_CHUNK_BYTES * 2, &b);
    if (a.st != b.st || a.released != b.released ||
        memcmp(a.hash, b.hash, 32) != 0)
        abort();

    if (a.st == CHUTE_OK) {
        uint64_t pt_size = 0, chunks = 0;
        if (age_payload_geometry(payload_len, &pt_size, &chunks) != CHUTE_OK ||
            pt_size != a.released)
            abort();
        age_payload_key pk;
        if (age_payload_key_derive(&pk, file_key, payload) != CHUTE_OK)
            abort();
        static uint8_t pt[AGE_CHUNK_BYTES];
        for (uint64_t i = 0; i < chunks; i++) {
            age_chunk_span sp;
            size_t got = 0;
            if (age_chunk_locate(payload_len, i, &sp) != CHUTE_OK ||
                age_chunk_decrypt(&pk, i, sp.last, payload + sp.offset,
                                  sp.length, pt, &got) != CHUTE_OK ||
                got != sp.pt_length)
                abort();
        }
    }
    return 0;
}
