/* test_bech32.c — BIP 173 valid/invalid vectors, case rules, round trips. */
#include "bech32.h"
#include "unit.h"

#include <ctype.h>

static char *lowercase(char *s)
{
    for (char *p = s; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return s;
}

static void test_bip173_valid_strings_decode_and_reencode(void)
{
    char q82[128] = "11";
    for (int i = 0; i < 82; i++)
        strcat(q82, "q");
    strcat(q82, "c8247j");
    const char *valid[] = {
        "A12UEL5L",
        "a12uel5l",
        "an83characterlonghumanreadablepartthatcontainsthenumber1andthe"
        "excludedcharactersbio1tt5tgs",
        "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
        q82,
        "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
        "?1ezyfcl",
    };
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++) {
        char hrp[BECH32_MAX_HRP_LEN + 1], again[256], want[256];
        uint8_t groups[128];
        size_t n = 0;
        chute_status st = bech32_decode_groups(valid[i], hrp, sizeof hrp,
                                               groups, sizeof groups, &n);
        CHECK_EQ_INT(st, CHUTE_OK);
        if (st != CHUTE_OK) {
            fprintf(stderr, "    vector %s\n", valid[i]);
            continue;
        }
        CHECK_EQ_INT(bech32_encode_groups(again, sizeof again, lowercase(hrp),
                                          groups, n), CHUTE_OK);
        snprintf(want, sizeof want, "%s", valid[i]);
        CHECK(strcmp(again, lowercase(want)) == 0);
    }
}

static void test_bip173_invalid_strings_are_refused(void)
{
    const char *invalid[] = {
        "\x20" "1nwldj5",      /* HRP character out of range */
        "\x7f" "1axkwrx",      /* HRP character out of range */
        "\x80" "1eym55h",      /* HRP character out of range */
        "an84characterslonghumanreadablepartthatcontainsthenumber1andthe"
        "excludedcharactersbio1569pvx", /* HRP longer than 83 */
        "pzry9x0s0muk",        /* no separator */
        "1pzry9x0s0muk",       /* empty HRP */
        "x1b4n0q5v",           /* invalid data character */
        "li1dgmt3",            /* checksum too short */
        "de1lg7wt\xff",        /* invalid character in checksum */
        "A1G7SGD8",            /* checksum made with upper-case HRP */
        "10a06t8",             /* empty HRP */
        "1qzzfhee",            /* empty HRP */
        "A12uEL5L",            /* mixed case */
        "a12uel5m",            /* one character of the checksum changed */
    };
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
        char hrp[BECH32_MAX_HRP_LEN + 1];
        uint8_t groups[128];
        size_t n = 0;
        chute_status st = bech32_decode_groups(invalid[i], hrp, sizeof hrp,
                                               groups, sizeof groups, &n);
        CHECK_EQ_INT(st, CHUTE_ERR_MALFORMED);
        CHECK_EQ_INT(bech32_decode(invalid[i], hrp, sizeof hrp, groups,
                                   sizeof groups, &n), CHUTE_ERR_MALFORMED);
    }
}

static void test_round_trip_of_bytes_longer_than_bip173_allows(void)
{
    uint8_t data[200], back[200];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 37 + 11);
    char s[BECH32_MAX_LEN + 1], hrp[16];
    CHECK_EQ_INT(bech32_encode(s, sizeof s, "age", data, sizeof data),
                 CHUTE_OK);
    CHECK(strlen(s) > 90);
    size_t n = 0;
    CHECK_EQ_INT(bech32_decode(s, hrp, sizeof hrp, back, sizeof back, &n),
                 CHUTE_OK);
    CHECK_EQ_INT(n, sizeof data);
    CHECK_MEM(back, data, sizeof data);
    CHECK(strcmp(hrp, "age") == 0);
}

static void test_upper_case_decodes_and_keeps_hrp_case(void)
{
    uint8_t data[32] = {1, 2, 3}, back[32];
    char s[128], hrp[32];
    CHECK_EQ_INT(bech32_encode(s, sizeof s, "age-secret-key-", data, 32),
                 CHUTE_OK);
    for (char *p = s; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    size_t n = 0;
    CHECK_EQ_INT(bech32_decode(s, hrp, sizeof hrp, back, sizeof back, &n),
                 CHUTE_OK);
    CHECK(strcmp(hrp, "AGE-SECRET-KEY-") == 0);
    CHECK_EQ_INT(n, 32);
    CHECK_MEM(back, data, 32);
}

static void test_limits_and_bad_arguments(void)
{
    char s[BECH32_MAX_LEN + 2], small[10], hrp[4];
    uint8_t data[700] = {0}, one[1];
    size_t n;
    CHECK_EQ_INT(bech32_encode(s, sizeof s, "age", data, sizeof data),
                 CHUTE_ERR_LIMIT);
    CHECK_EQ_INT(bech32_encode(small, sizeof small, "age", data, 8),
                 CHUTE_ERR_LIMIT);
    CHECK_EQ_INT(bech32_encode(s, sizeof s, "", data, 1), CHUTE_ERR_ARG);
    CHECK_EQ_INT(bech32_encode(s, sizeof s, "Age", data, 1), CHUTE_ERR_ARG);
    memset(s, 'q', sizeof s - 1);
    s[sizeof s - 1] = '\0';
    CHECK_EQ_INT(bech32_decode(s, hrp, sizeof hrp, data, sizeof data, &n),
                 CHUTE_ERR_LIMIT);
    CHECK_EQ_INT(bech32_encode(s, sizeof s, "age", data, 4), CHUTE_OK);
    CHECK_EQ_INT(bech32_decode(s, hrp, sizeof hrp, one, sizeof one, &n),
                 CHUTE_ERR_LIMIT);
    CHECK_EQ_INT(bech32_decode(s, hrp, 3, data, sizeof data, &n),
                 CHUTE_ERR_LIMIT);
}

static void test_nonzero_or_excess_padding_bits_are_refused(void)
{
    /* Two groups are 10 bits: one byte and 2 padding bits, here all ones. */
    const uint8_t ones[2] = {31, 31}, zeros[3] = {0, 0, 0}, ok[2] = {31, 28};
    uint8_t back[4];
    char s[64], hrp[8];
    size_t n;
    CHECK_EQ_INT(bech32_encode_groups(s, sizeof s, "a", ones, 2), CHUTE_OK);
    CHECK_EQ_INT(bech32_decode(s, hrp, sizeof hrp, back, sizeof back, &n),
                 CHUTE_ERR_MALFORMED);
    /* Three groups are 15 bits: one byte and 7 padding bits, too many. */
    CHECK_EQ_INT(bech32_encode_groups(s, sizeof s, "a", zeros, 3), CHUTE_OK);
    CHECK_EQ_INT(bech32_decode(s, hrp, sizeof hrp, back, sizeof back, &n),
                 CHUTE_ERR_MALFORMED);
    /* 11111 11100: the byte 0xff and two zero padding bits is canonical. */
    CHECK_EQ_INT(bech32_encode_groups(s, sizeof s, "a", ok, 2), CHUTE_OK);
    CHECK_EQ_INT(bech32_decode(s, hrp, sizeof hrp, back, sizeof back, &n),
                 CHUTE_OK);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(back[0], 0xff);
}

int main(void)
{
    RUN(test_bip173_valid_strings_decode_and_reencode);
    RUN(test_bip173_invalid_strings_are_refused);
    RUN(test_round_trip_of_bytes_longer_than_bip173_allows);
    RUN(test_upper_case_decodes_and_keeps_hrp_case);
    RUN(test_limits_and_bad_arguments);
    RUN(test_nonzero_or_excess_padding_bits_are_refused);
    return unit_done();
}
