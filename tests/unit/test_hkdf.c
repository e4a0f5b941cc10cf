/* test_hkdf.c — HKDF-SHA-256 against RFC 5869 test cases 1-3. */
#include "hkdf.h"
#include "hexutil.h"
#include "unit.h"

struct rfc5869_case {
    const char *ikm, *salt, *info, *prk, *okm;
};

static void check_case(const struct rfc5869_case *c)
{
    uint8_t ikm[128], salt[128], info[128], prk[32], okm[128];
    uint8_t got_prk[32], got_okm[128];
    size_t ikm_n = unhex(ikm, sizeof ikm, c->ikm);
    size_t salt_n = unhex(salt, sizeof salt, c->salt);
    size_t info_n = unhex(info, sizeof info, c->info);
    CHECK_EQ_INT(unhex(prk, sizeof prk, c->prk), 32);
    size_t okm_n = unhex(okm, sizeof okm, c->okm);

    hkdf_sha256_extract(got_prk, salt, salt_n, ikm, ikm_n);
    CHECK_MEM(got_prk, prk, 32);
    CHECK_EQ_INT(hkdf_sha256_expand(got_okm, okm_n, got_prk, info, info_n),
                 CHUTE_OK);
    CHECK_MEM(got_okm, okm, okm_n);
    memset(got_okm, 0, sizeof got_okm);
    CHECK_EQ_INT(hkdf_sha256(got_okm, okm_n, salt, salt_n, ikm, ikm_n,
                             info, info_n), CHUTE_OK);
    CHECK_MEM(got_okm, okm, okm_n);
}

static void test_rfc5869_case1_basic(void)
{
    static const struct rfc5869_case c = {
        "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
        "000102030405060708090a0b0c",
        "f0f1f2f3f4f5f6f7f8f9",
        "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        "34007208d5b887185865",
    };
    check_case(&c);
}

static void test_rfc5869_case2_long_inputs(void)
{
    static const struct rfc5869_case c = {
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
        "404142434445464748494a4b4c4d4e4f",
        "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
        "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
        "d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef"
        "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
        "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
    };
    check_case(&c);
}

static void test_rfc5869_case3_empty_salt_and_info(void)
{
    static const struct rfc5869_case c = {
        "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "", "",
        "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
        "9d201395faa4b61a96c8",
    };
    check_case(&c);
}

static void test_expand_refuses_more_than_255_blocks(void)
{
    static uint8_t out[HKDF_SHA256_MAX_OUT + 1];
    uint8_t prk[32] = {1};
    CHECK_EQ_INT(hkdf_sha256_expand(out, sizeof out, prk, NULL, 0),
                 CHUTE_ERR_ARG);
    CHECK_EQ_INT(hkdf_sha256_expand(out, HKDF_SHA256_MAX_OUT, prk, NULL, 0),
                 CHUTE_OK);
}

int main(void)
{
    RUN(test_rfc5869_case1_basic);
    RUN(test_rfc5869_case2_long_inputs);
    RUN(test_rfc5869_case3_empty_salt_and_info);
    RUN(test_expand_refuses_more_than_255_blocks);
    return unit_done();
}
