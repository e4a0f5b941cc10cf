/* test_paircode.c — every accepted spelling, every rejection and its
 * reason, formatting, and the secret generator's alphabet and spread. */
#include <sodium.h>

#include "paircode.h"
#include "unit.h"

static const char ALPHABET[] = "0123456789abcdefghjkmnpqrstvwxyz";

static void accepts(const char *text, const char *nameplate,
                    const char *secret)
{
    paircode pc;
    const char *why = "unset";
    chute_status st = paircode_parse(text, strlen(text), &pc, &why);
    if (st != CHUTE_OK)
        fprintf(stderr, "  rejected \"%s\": %s\n", text, why ? why : "?");
    CHECK_EQ_INT(st, CHUTE_OK);
    CHECK(why == NULL);
    CHECK(strcmp(pc.nameplate, nameplate) == 0);
    CHECK(strcmp(pc.secret, secret) == 0);
}

static void rejects(const char *text, size_t len, const char *reason_part)
{
    paircode pc;
    const char *why = NULL;
    memset(&pc, 'x', sizeof pc);
    CHECK_EQ_INT(paircode_parse(text, len, &pc, &why), CHUTE_ERR_MALFORMED);
    CHECK(why != NULL && strstr(why, reason_part) != NULL);
    if (why && !strstr(why, reason_part))
        fprintf(stderr, "  \"%.*s\": got \"%s\"\n", (int)len, text, why);
    CHECK(sodium_is_zero((unsigned char *)&pc, sizeof pc));   /* wiped */
}

static void test_accepts_every_forgiving_spelling(void)
{
    accepts("4213-k7qm-x2dp", "4213", "k7qmx2dp");        /* canonical */
    accepts("4213-K7QM-X2DP", "4213", "k7qmx2dp");        /* upper case */
    accepts("4213-K7qm-x2Dp", "4213", "k7qmx2dp");        /* mixed */
    accepts("  4213-k7qm-x2dp\n", "4213", "k7qmx2dp");    /* trimmed */
    accepts("\t4213-k7qm-x2dp \r\n", "4213", "k7qmx2dp");
    accepts("4213 k7qm x2dp", "4213", "k7qmx2dp");        /* spaces */
    accepts("4213_k7qm_x2dp", "4213", "k7qmx2dp");        /* underscores */
    accepts("4213--k7qm---x2dp", "4213", "k7qmx2dp");     /* many '-' */
    accepts("4213 - k7qm - x2dp", "4213", "k7qmx2dp");    /* mixed runs */
    accepts("4213-k7qmx2dp", "4213", "k7qmx2dp");         /* one group */
    accepts("4213-k7-qm-x2-dp", "4213", "k7qmx2dp");      /* regrouped */
    accepts("4213-k7q mx2\tdp", "4213", "k7qmx2dp");
    accepts("4213-ki0m-xlop", "4213", "k10mx10p");         /* i l o */
    accepts("4213-KI0M-XLOP", "4213", "k10mx10p");
    accepts("7-00000000", "7", "00000000");
    accepts("AbC9-zzzz-zzzz", "abc9", "zzzzzzzz");          /* opaque plate */
    accepts("1234567890abcdef-0123-4567", "1234567890abcdef", "01234567");
}

static void test_rejects_with_a_reason(void)
{
#define R(s, why) rejects(s, strlen(s), why)
    R("", "empty");
    R("   \t\n", "empty");
    R("4213", "secret part is missing");
    R("4213-", "secret part is missing");
    R("4213 - ", "secret part is missing");
    R("-4213-k7qm-x2dp", "start with its number");
    R("_4213-k7qm-x2dp", "start with its number");
    R("4213-k7qm-x2d", "too short");
    R("4213-k7qm", "too short");
    R("4213-k7qm-x2dpq", "too long");
    R("4213-k7qm-x2dp-0000", "too long");
    R("4213-k7qu-x2dp", "'u'");
    R("4213-K7QU-X2DP", "'u'");
    R("4213.k7qm.x2dp", "only letters, digits");
    R("4213-k7qm-x2dp!", "only letters, digits");
    R("4213-k7\xc3\xa9m-x2dp", "only letters, digits");   /* é */
    R("4213-k7qm-x2dp\x01", "only letters, digits");
    R("12345678901234567-k7qm-x2dp", "too long");
    R("4213k7qmx2dp", "secret part is missing");
#undef R
    /* An embedded NUL is not the end of the code. */
    rejects("4213-k7qm\0-x2dp", 15, "only letters, digits");
}

static void test_parse_argument_errors(void)
{
    paircode pc;
    const char *why = "unset";
    CHECK_EQ_INT(paircode_parse("1-00000000", 10, NULL, &why), CHUTE_ERR_ARG);
    CHECK_EQ_INT(paircode_parse(NULL, 3, &pc, &why), CHUTE_ERR_ARG);
    /* why is optional */
    CHECK_EQ_INT(paircode_parse("x", 1, &pc, NULL), CHUTE_ERR_MALFORMED);
    CHECK_EQ_INT(paircode_parse(NULL, 0, &pc, &why), CHUTE_ERR_MALFORMED);
    CHECK(why && strstr(why, "empty"));
}

static void test_format_and_round_trip(void)
{
    char out[PAIRCODE_MAX_LEN + 1];
    CHECK_EQ_INT(paircode_format("4213", "k7qmx2dp", out, sizeof out),
                 CHUTE_OK);
    CHECK(strcmp(out, "4213-k7qm-x2dp") == 0);
    CHECK_EQ_INT(paircode_format("1234567890abcdef", "zzzzzzzz", out,
                                 sizeof out), CHUTE_OK);
    CHECK_EQ_INT(strlen(out), PAIRCODE_MAX_LEN);
    CHECK_EQ_INT(paircode_format("4213", "k7qmx2dp", out, 14),
                 CHUTE_ERR_LIMIT);
    CHECK_EQ_INT(paircode_format("4213", "k7qmx2dp", out, 15), CHUTE_OK);

    CHECK_EQ_INT(paircode_format("", "k7qmx2dp", out, sizeof out),
                 CHUTE_ERR_ARG);
    CHECK_EQ_INT(paircode_format("42 3", "k7qmx2dp", out, sizeof out),
                 CHUTE_ERR_ARG);
    CHECK_EQ_INT(paircode_format("ABC", "k7qmx2dp", out, sizeof out),
                 CHUTE_ERR_ARG);                  /* not canonical */
    CHECK_EQ_INT(paircode_format("12345678901234567", "k7qmx2dp", out,
                                 sizeof out), CHUTE_ERR_ARG);
    CHECK_EQ_INT(paircode_format("4213", "k7qmx2d", out, sizeof out),
                 CHUTE_ERR_ARG);
    CHECK_EQ_INT(paircode_format("4213", "k7qmx2dpp", out, sizeof out),
                 CHUTE_ERR_ARG);
    CHECK_EQ_INT(paircode_format("4213", "k7qmx2dl", out, sizeof out),
                 CHUTE_ERR_ARG);                  /* 'l' is not canonical */
    CHECK_EQ_INT(paircode_format("4213", "K7QMX2DP", out, sizeof out),
                 CHUTE_ERR_ARG);
    CHECK_EQ_INT(paircode_format(NULL, "k7qmx2dp", out, sizeof out),
                 CHUTE_ERR_ARG);
    CHECK_EQ_INT(paircode_format("4213", NULL, out, sizeof out),
                 CHUTE_ERR_ARG);

    CHECK_EQ_INT(paircode_check_nameplate("9999"), CHUTE_OK);
    CHECK_EQ_INT(paircode_check_nameplate("a-b"), CHUTE_ERR_MALFORMED);
    CHECK_EQ_INT(paircode_check_nameplate(NULL), CHUTE_ERR_MALFORMED);
}

static void test_made_secrets_are_canonical_and_spread(void)
{
    int seen[32] = { 0 };
    char first[PAIRCODE_SECRET_CHARS + 1] = "";
    int repeats = 0;
    for (int n = 0; n < 400; n++) {
        char s[PAIRCODE_SECRET_CHARS + 1];
        char code[PAIRCODE_MAX_LEN + 1];
        paircode pc;
        paircode_secret_make(s);
        CHECK_EQ_INT(strlen(s), PAIRCODE_SECRET_CHARS);
        for (int i = 0; i < PAIRCODE_SECRET_CHARS; i++) {
            const char *at = strchr(ALPHABET, s[i]);
            CHECK(at != NULL && s[i] != '\0');
            if (at)
                seen[at - ALPHABET]++;
        }
        /* Every made secret formats and parses back unchanged. */
        CHECK_EQ_INT(paircode_format("42", s, code, sizeof code), CHUTE_OK);
        CHECK_EQ_INT(paircode_parse(code, strlen(code), &pc, NULL), CHUTE_OK);
        CHECK(strcmp(pc.secret, s) == 0);
        if (n == 0)
            memcpy(first, s, sizeof first);
        else
            repeats += strcmp(first, s) == 0;
    }
    /* 3200 symbols: each of the 32 expected 100 times; a symbol never
     * drawn (or drawn 3x too often) means a broken generator. */
    for (int i = 0; i < 32; i++)
        CHECK(seen[i] > 30 && seen[i] < 300);
    CHECK_EQ_INT(repeats, 0);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    RUN(test_accepts_every_forgiving_spelling);
    RUN(test_rejects_with_a_reason);
    RUN(test_parse_argument_errors);
    RUN(test_format_and_round_trip);
    RUN(test_made_secrets_are_canonical_and_spread);
    return unit_done();
}
