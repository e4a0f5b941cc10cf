/* test_meta.c — sealed meta round trip, binding, strict decoding. */
#include <sodium.h>

#include "meta.h"
#include "unit.h"

static const char *ID = "AAAAAAAAAAAAAAAAAAAAAA", *RCPT = "age1example";

static void sample(chute_meta *m)
{
    memset(m, 0, sizeof *m);
    strcpy(m->path, "photos/2024/Grüße.jpg");
    m->size = 1234567890123ULL;
    m->mode = 0644;
    m->mtime_sec = -5;
    m->mtime_nsec = 999999999;
    for (int i = 0; i < META_MAC_BYTES; i++) m->header_mac[i] = (uint8_t)i;
}

static void key_of(uint8_t key[META_KEY_BYTES], uint8_t fill)
{
    uint8_t link[32];
    memset(link, fill, sizeof link);
    CHECK_EQ_INT(meta_key(link, key), CHUTE_OK);
}

static void test_roundtrip(void)
{
    chute_meta m, back;
    uint8_t key[META_KEY_BYTES], sealed[META_SEALED_MAX];
    size_t n;
    sample(&m);
    key_of(key, 7);
    CHECK_EQ_INT(meta_seal(&m, key, ID, RCPT, sealed, sizeof sealed, &n), CHUTE_OK);
    CHECK_EQ_INT(n, 1 + 24 + 256 + 16);
    CHECK_EQ_INT(meta_open(sealed, n, key, ID, RCPT, &back), CHUTE_OK);
    CHECK(strcmp(back.path, m.path) == 0);
    CHECK(back.size == m.size && back.mode == m.mode);
    CHECK(back.mtime_sec == -5 && back.mtime_nsec == 999999999);
    CHECK_MEM(back.header_mac, m.header_mac, META_MAC_BYTES);
}

static void test_binding(void)
{
    chute_meta m, back;
    uint8_t key[META_KEY_BYTES], other[META_KEY_BYTES], sealed[META_SEALED_MAX];
    size_t n;
    sample(&m);
    key_of(key, 7);
    key_of(other, 8);
    meta_seal(&m, key, ID, RCPT, sealed, sizeof sealed, &n);
    CHECK_EQ_INT(meta_open(sealed, n, other, ID, RCPT, &back), CHUTE_ERR_AUTH);
    CHECK_EQ_INT(meta_open(sealed, n, key, "BBBBBBBBBBBBBBBBBBBBBB", RCPT, &back), CHUTE_ERR_AUTH);
    CHECK_EQ_INT(meta_open(sealed, n, key, ID, "age1other", &back), CHUTE_ERR_AUTH);
    sealed[40] ^= 1;
    CHECK_EQ_INT(meta_open(sealed, n, key, ID, RCPT, &back), CHUTE_ERR_AUTH);
    sealed[40] ^= 1;
    CHECK_EQ_INT(meta_open(sealed, 10, key, ID, RCPT, &back), CHUTE_ERR_MALFORMED);
    sealed[0] = 2;
    CHECK_EQ_INT(meta_open(sealed, n, key, ID, RCPT, &back), CHUTE_ERR_UNSUPPORTED);
}

static void test_decode_strict(void)
{
    chute_meta m, back;
    uint8_t p[META_PLAIN_MAX];
    size_t n;
    sample(&m);
    CHECK_EQ_INT(meta_encode(&m, p, sizeof p, &n), CHUTE_OK);
    CHECK_EQ_INT(meta_decode(p, n, &back), CHUTE_OK);
    CHECK_EQ_INT(meta_decode(p, n - 1, &back), CHUTE_ERR_MALFORMED);
    p[n - 1] = 1;                                     /* non-zero padding */
    CHECK_EQ_INT(meta_decode(p, n, &back), CHUTE_ERR_MALFORMED);
    p[n - 1] = 0;
    p[57] = 0xff;                                     /* path too long */
    CHECK_EQ_INT(meta_decode(p, n, &back), CHUTE_ERR_MALFORMED);
    p[57] = 0; p[58] = 0;                             /* empty path */
    CHECK_EQ_INT(meta_decode(p, n, &back), CHUTE_ERR_MALFORMED);
    meta_encode(&m, p, sizeof p, &n);
    p[META_FIXED_BYTES + 1] = 0;                      /* NUL in path */
    CHECK_EQ_INT(meta_decode(p, n, &back), CHUTE_ERR_MALFORMED);
    meta_encode(&m, p, sizeof p, &n);
    p[9] = 1;                                         /* mode > 07777 */
    CHECK_EQ_INT(meta_decode(p, n, &back), CHUTE_ERR_MALFORMED);
    meta_encode(&m, p, sizeof p, &n);
    p[0] = 9;
    CHECK_EQ_INT(meta_decode(p, n, &back), CHUTE_ERR_UNSUPPORTED);
}

static void test_encode_limits(void)
{
    chute_meta m;
    uint8_t p[META_PLAIN_MAX], sealed[META_SEALED_MAX], key[META_KEY_BYTES];
    size_t n;
    sample(&m);
    key_of(key, 1);
    memset(m.path, 'x', META_PATH_MAX);
    m.path[META_PATH_MAX] = '\0';
    CHECK_EQ_INT(meta_seal(&m, key, ID, RCPT, sealed, sizeof sealed, &n), CHUTE_OK);
    CHECK(n <= 4096);  /* fits the relay's default max_meta */
    m.path[0] = '\0';
    CHECK_EQ_INT(meta_encode(&m, p, sizeof p, &n), CHUTE_ERR_ARG);
    sample(&m);
    m.mode = 010000;
    CHECK_EQ_INT(meta_encode(&m, p, sizeof p, &n), CHUTE_ERR_ARG);
    sample(&m);
    CHECK_EQ_INT(meta_encode(&m, p, 100, &n), CHUTE_ERR_LIMIT);
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    RUN(test_roundtrip);
    RUN(test_binding);
    RUN(test_decode_strict);
    RUN(test_encode_limits);
    return unit_done();
}
