/* test_age_source.c — the on-demand age file (lib/age_source.h) is byte for
 * byte the file lib/age_encryptor writes with the same key, nonce and
 * header, whatever offsets and lengths it is read in. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "age_decryptor.h"
#include "age_encryptor.h"
#include "age_header.h"
#include "age_source.h"
#include "unit.h"

static age_identity alice;
static age_recipient alice_r;

/* The whole age file from age_encryptor with this key and nonce. */
static uint8_t *encrypt_keyed(const uint8_t *pt, size_t n, const uint8_t *key,
                              const uint8_t *nonce, size_t *out_len)
{
    age_encryptor *e = NULL;
    CHECK_EQ_INT(age_encryptor_new_keyed(&e, &alice_r, 1, key, nonce), CHUTE_OK);
    size_t cap = n + 4096 + (n / AGE_CHUNK_BYTES + 1) * AGE_TAG_BYTES;
    uint8_t *out = malloc(cap);
    age_io io = {pt, n, out, cap};
    CHECK_EQ_INT(age_encryptor_update(e, &io), CHUTE_OK);
    bool done = false;
    CHECK_EQ_INT(age_encryptor_finish(e, &io, &done), CHUTE_OK);
    CHECK(done);
    *out_len = cap - io.out_len;
    age_encryptor_free(e);
    return out;
}

/* A plaintext file of n random bytes; returns its fd (already unlinked). */
static int plain_file(size_t n, uint8_t **pt)
{
    char name[] = "/tmp/chute-age-source-XXXXXX";
    int fd = mkstemp(name);
    CHECK(fd >= 0);
    unlink(name);
    *pt = malloc(n ? n : 1);
    randombytes_buf(*pt, n);
    CHECK_EQ_INT(write(fd, *pt, n), (long long)n);
    return fd;
}

static size_t header_len_of(const uint8_t *file, size_t len)
{
    age_header *h = NULL;
    size_t hl = 0;
    CHECK_EQ_INT(age_header_parse(file, len, &h, &hl), CHUTE_OK);
    age_header_free(h);
    return hl;
}

/* Reads of the source in pieces of `step` bytes, and in a few odd splits,
 * all equal the encryptor's file. */
static void compare(size_t n)
{
    uint8_t key[AGE_FILE_KEY_BYTES], nonce[AGE_NONCE_BYTES];
    randombytes_buf(key, sizeof key);
    randombytes_buf(nonce, sizeof nonce);
    uint8_t *pt = NULL;
    int fd = plain_file(n, &pt);
    size_t want_len = 0;
    uint8_t *want = encrypt_keyed(pt, n, key, nonce, &want_len);
    size_t hl = header_len_of(want, want_len);

    age_source *s = NULL;
    CHECK_EQ_INT(age_source_new(&s, want, hl, nonce, key, fd, n), CHUTE_OK);
    CHECK_EQ_INT(age_source_size(s), want_len);
    CHECK_EQ_INT(age_source_size(s), hl + age_payload_size(n));
    uint8_t *got = malloc(want_len);
    static const size_t steps[] = {1, 7, 100, AGE_CHUNK_BYTES - 1, AGE_CHUNK_CT_BYTES,
                                   AGE_CHUNK_CT_BYTES + 3, 1u << 20};
    for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) {
        if (steps[k] == 1 && want_len > 300000) continue;   /* too slow, nothing new */
        memset(got, 0, want_len);
        for (size_t off = 0; off < want_len; off += steps[k]) {
            size_t len = want_len - off < steps[k] ? want_len - off : steps[k];
            CHECK_EQ_INT(age_source_read(s, off, got + off, len), CHUTE_OK);
        }
        CHECK_MEM(got, want, want_len);
    }
    /* Backwards, and from every chunk boundary and its neighbours: a
     * resumed upload may start anywhere. */
    for (size_t off = 0; off < want_len; off += AGE_CHUNK_CT_BYTES) {
        for (long d = -1; d <= 1; d++) {
            long long o = (long long)(hl + off) + d;
            if (o < 0 || (size_t)o >= want_len) continue;
            size_t len = want_len - (size_t)o;
            CHECK_EQ_INT(age_source_read(s, (uint64_t)o, got, len), CHUTE_OK);
            CHECK_MEM(got, want + o, len);
        }
    }
    for (size_t off = want_len; off-- > 0;) {
        uint8_t b;
        CHECK_EQ_INT(age_source_read(s, off, &b, 1), CHUTE_OK);
        if (b != want[off]) { CHECK(b == want[off]); break; }
        if (off > 5000 && off + 5000 < want_len) off -= off % 977 ? off % 977 : 1;
    }
    /* The end is an end. */
    CHECK_EQ_INT(age_source_read(s, want_len, got, 0), CHUTE_OK);
    CHECK_EQ_INT(age_source_read(s, want_len - 1, got, 2), CHUTE_ERR_ARG);
    CHECK_EQ_INT(age_source_read(s, want_len + 1, got, 0), CHUTE_ERR_ARG);
    age_source_free(s);
    close(fd);
    free(got);
    free(want);
    free(pt);
}

static void test_source_equals_encryptor_for_every_split_and_size(void)
{
    static const size_t sizes[] = {0, 1, 100, AGE_CHUNK_BYTES - 1, AGE_CHUNK_BYTES,
                                   AGE_CHUNK_BYTES + 1, 2 * AGE_CHUNK_BYTES,
                                   3 * AGE_CHUNK_BYTES + 12345, 5u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        compare(sizes[i]);
}

static void test_source_output_decrypts_with_the_identity(void)
{
    uint8_t key[AGE_FILE_KEY_BYTES], nonce[AGE_NONCE_BYTES];
    randombytes_buf(key, sizeof key);
    randombytes_buf(nonce, sizeof nonce);
    uint8_t *header = NULL, mac[AGE_MAC_BYTES];
    size_t hl = 0, n = 200000;
    CHECK_EQ_INT(age_header_build(key, &alice_r, 1, &header, &hl, mac), CHUTE_OK);
    uint8_t *pt = NULL;
    int fd = plain_file(n, &pt);
    age_source *s = NULL;
    CHECK_EQ_INT(age_source_new(&s, header, hl, nonce, key, fd, n), CHUTE_OK);
    size_t len = (size_t)age_source_size(s);
    uint8_t *file = malloc(len), *back = malloc(n + 1);
    CHECK_EQ_INT(age_source_read(s, 0, file, len), CHUTE_OK);
    age_decryptor *d = NULL;
    CHECK_EQ_INT(age_decryptor_new(&d, &alice, 1), CHUTE_OK);
    age_io io = {file, len, back, n + 1};
    CHECK_EQ_INT(age_decryptor_update(d, &io), CHUTE_OK);
    bool done = false;
    CHECK_EQ_INT(age_decryptor_finish(d, &io, &done), CHUTE_OK);
    CHECK(done);
    CHECK_EQ_INT(n + 1 - io.out_len, n);
    CHECK_MEM(back, pt, n);
    uint8_t got_mac[AGE_MAC_BYTES];
    CHECK_EQ_INT(age_decryptor_header_mac(d, got_mac), CHUTE_OK);
    CHECK_MEM(got_mac, mac, AGE_MAC_BYTES);
    age_decryptor_free(d);
    age_source_free(s);
    close(fd);
    free(header); free(pt); free(file); free(back);
}

static void test_source_reports_a_plaintext_that_shrank(void)
{
    uint8_t key[AGE_FILE_KEY_BYTES] = {1}, nonce[AGE_NONCE_BYTES] = {2};
    uint8_t *pt = NULL;
    int fd = plain_file(3 * AGE_CHUNK_BYTES, &pt);
    static const uint8_t header[] = "age-encryption.org/v1\n";
    age_source *s = NULL;
    CHECK_EQ_INT(age_source_new(&s, header, sizeof header - 1, nonce, key, fd,
                                3 * AGE_CHUNK_BYTES), CHUTE_OK);
    CHECK_EQ_INT(ftruncate(fd, AGE_CHUNK_BYTES), 0);
    uint8_t buf[64];
    CHECK_EQ_INT(age_source_read(s, sizeof header - 1, buf, sizeof buf), CHUTE_OK);
    CHECK_EQ_INT(age_source_read(s, age_source_size(s) - 10, buf, 10), CHUTE_ERR_IO);
    age_source_free(s);
    close(fd);
    free(pt);
}

static void test_source_refuses_bad_arguments(void)
{
    uint8_t key[AGE_FILE_KEY_BYTES] = {0}, nonce[AGE_NONCE_BYTES] = {0};
    age_source *s = (age_source *)1;
    CHECK_EQ_INT(age_source_new(&s, NULL, 0, nonce, key, 0, 0), CHUTE_ERR_ARG);
    CHECK(s == NULL);
    CHECK_EQ_INT(age_source_new(&s, key, 1, nonce, key, -1, 0), CHUTE_ERR_ARG);
    CHECK_EQ_INT(age_source_new(NULL, key, 1, nonce, key, 0, 0), CHUTE_ERR_ARG);
    age_source_free(NULL);
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    age_identity_generate(&alice);
    age_identity_recipient(&alice, &alice_r);
    RUN(test_source_equals_encryptor_for_every_split_and_size);
    RUN(test_source_output_decrypts_with_the_identity);
    RUN(test_source_reports_a_plaintext_that_shrank);
    RUN(test_source_refuses_bad_arguments);
    return unit_done();
}
