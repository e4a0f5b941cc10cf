/* bench_age — lib/age streaming encryption and decryption of 1 GiB in
 * memory (through 1 MiB buffers, no disk), next to raw libsodium
 * ChaCha20-Poly1305 over the same 64 KiB chunks with the same nonces.
 * The ratio (lib / raw) is the cost of the format and the streaming API.
 * CHUTE_BENCH_BYTES overrides the size. */
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "age.h"

#define BUF_BYTES (1 << 20)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void row(const char *name, double lib_s, double raw_s, uint64_t bytes)
{
    char a[32], b[32], r[16];
    double mb = (double)bytes / 1e6;
    snprintf(a, sizeof a, "%.0f MB/s", mb / lib_s);
    snprintf(b, sizeof b, "%.0f MB/s", mb / raw_s);
    snprintf(r, sizeof r, "%.2f", raw_s / lib_s);
    printf("%-44s %14s %14s %8s\n", name, a, b, r);
}

static void die(const char *what)
{
    fprintf(stderr, "bench_age: %s\n", what);
    exit(1);
}

/* lib/age: the encryptor's output is fed at once to a decryptor; each
 * side is timed on its own. */
static void bench_lib(uint64_t total, const uint8_t *pt, double *enc_s,
                      double *dec_s)
{
    age_identity id;
    age_recipient r;
    age_encryptor *e = NULL;
    age_decryptor *d = NULL;
    uint8_t *ct = malloc(2 * BUF_BYTES), *back = malloc(2 * BUF_BYTES);
    if (!ct || !back || age_identity_generate(&id) != CHUTE_OK)
        die("setup");
    age_identity_recipient(&id, &r);
    if (age_encryptor_new(&e, &r, 1) != CHUTE_OK ||
        age_decryptor_new(&d, &id, 1) != CHUTE_OK)
        die("setup");

    double te = 0, td = 0, t;
    uint64_t fed = 0, got = 0;
    bool last = false, enc_done = false, dec_done = false;
    while (!dec_done) {
        size_t n = total - fed < BUF_BYTES ? (size_t)(total - fed) : BUF_BYTES;
        last = n == 0;
        age_io io = {pt, n, ct, 2 * BUF_BYTES};
        t = now();
        chute_status st = last ? age_encryptor_finish(e, &io, &enc_done)
                               : age_encryptor_update(e, &io);
        te += now() - t;
        if (st != CHUTE_OK || io.in_len != 0 || (last && !enc_done))
            die("encrypt");
        fed += n;
        age_io dio = {ct, 2 * BUF_BYTES - io.out_len, back, 2 * BUF_BYTES};
        t = now();
        st = age_decryptor_update(d, &dio);
        if (st == CHUTE_OK && last)
            st = age_decryptor_finish(d, &dio, &dec_done);
        td += now() - t;
        if (st != CHUTE_OK || dio.in_len != 0)
            die("decrypt");
        got += 2 * BUF_BYTES - dio.out_len;
    }
    if (got != total)
        die("decrypted size differs");
    age_encryptor_free(e);
    age_decryptor_free(d);
    age_identity_wipe(&id);
    free(ct);
    free(back);
    *enc_s = te;
    *dec_s = td;
}

static void nonce_for(uint8_t n[12], uint64_t i, bool last)
{
    memset(n, 0, 12);
    for (int k = 0; k < 8; k++)
        n[10 - k] = (uint8_t)(i >> (8 * k));
    n[11] = last;
}

/* Raw libsodium over the same chunks, the same lockstep. */
static void bench_raw(uint64_t total, const uint8_t *pt, double *enc_s,
                      double *dec_s)
{
    uint8_t key[32], nonce[12];
    randombytes_buf(key, sizeof key);
    const size_t per = BUF_BYTES / AGE_CHUNK_BYTES;
    uint8_t *ct = malloc(per * AGE_CHUNK_CT_BYTES), *back = malloc(BUF_BYTES);
    if (!ct || !back)
        die("setup");
    uint64_t chunks = total / AGE_CHUNK_BYTES, i = 0;
    double te = 0, td = 0, t;
    while (i < chunks) {
        size_t k = chunks - i < per ? (size_t)(chunks - i) : per;
        t = now();
        for (size_t j = 0; j < k; j++) {
            nonce_for(nonce, i + j, i + j + 1 == chunks);
            crypto_aead_chacha20poly1305_ietf_encrypt(
                ct + j * AGE_CHUNK_CT_BYTES, NULL, pt + j * AGE_CHUNK_BYTES,
                AGE_CHUNK_BYTES, NULL, 0, NULL, nonce, key);
        }
        te += now() - t;
        t = now();
        for (size_t j = 0; j < k; j++) {
            nonce_for(nonce, i + j, i + j + 1 == chunks);
            if (crypto_aead_chacha20poly1305_ietf_decrypt(
                    back + j * AGE_CHUNK_BYTES, NULL, NULL,
                    ct + j * AGE_CHUNK_CT_BYTES, AGE_CHUNK_CT_BYTES, NULL, 0,
                    nonce, key) != 0)
                die("raw decrypt");
        }
        td += now() - t;
        i += k;
    }
    free(ct);
    free(back);
    *enc_s = te;
    *dec_s = td;
}

int main(void)
{
    if (sodium_init() < 0)
        die("sodium_init");
    uint64_t total = 1ull << 30;
    const char *env = getenv("CHUTE_BENCH_BYTES");
    if (env && *env)
        total = strtoull(env, NULL, 10);
    total -= total % AGE_CHUNK_BYTES; /* whole chunks, as raw measures */
    if (total == 0)
        die("CHUTE_BENCH_BYTES is below one chunk");
    uint8_t *pt = malloc(BUF_BYTES);
    if (!pt)
        die("out of memory");
    randombytes_buf(pt, BUF_BYTES);

    double le, ld, re, rd;
    bench_raw(total, pt, &re, &rd);
    bench_lib(total, pt, &le, &ld);
    char name[64];
    snprintf(name, sizeof name, "age encrypt %llu MiB in memory",
             (unsigned long long)(total >> 20));
    row(name, le, re, total);
    snprintf(name, sizeof name, "age decrypt %llu MiB in memory",
             (unsigned long long)(total >> 20));
    row(name, ld, rd, total);
    free(pt);
    return 0;
}
