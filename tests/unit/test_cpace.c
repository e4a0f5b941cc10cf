/* test_cpace.c — CPace against the draft's vectors, step by step, then
 * whole runs through the state API and every way a run must fail. */
#include <sodium.h>

#include "cpace.h"
#include "unit.h"
#include "vectors_md.h"

#define VECTORS "cpace-ristretto255-sha512.md"

/* Everything the vector file gives, parsed once. */
static struct {
    char *doc;
    unsigned char prs[64], ci[64], ci_literal[64], sid[32], ada[16], adb[16];
    long prs_len, ci_len, ci_literal_len, sid_len, ada_len, adb_len;
    unsigned char gen_string[256], gen_hash[64], g[32];
    long gen_string_len, gen_hash_len, g_len;
    unsigned char ya[32], yb[32], Ya[32], Yb[32], k_ab[32], k_ba[32];
    long ya_len, yb_len, Ya_len, Yb_len, k_ab_len, k_ba_len;
    unsigned char tr_ir[128], tr_oc[128], isk_in_ir[256], isk_in_oc[256];
    long tr_ir_len, tr_oc_len, isk_in_ir_len, isk_in_oc_len;
    unsigned char dsi_isk[32], isk_ir[64], isk_oc[64], sid_out_ir[64],
                  sid_out_oc[64];
    long dsi_isk_len, isk_ir_len, isk_oc_len, sid_out_ir_len, sid_out_oc_len;
} v;

static int load_vectors(void)
{
    v.doc = vec_load(VECTORS);
    if (!v.doc)
        return -1;
    const char *d = v.doc;
    const char *ir = strstr(d, "ISK calculation initiator/responder");
    const char *oc = strstr(d, "ISK calculation parallel execution");
    const char *so = strstr(d, "optional output of session id");
    if (!ir || !oc || !so)
        return -1;
#define HEX(from, label, f) v.f##_len = vec_hex(from, label, v.f, sizeof v.f)
#define LIT(label, f) v.f##_len = vec_literal(d, label, v.f, sizeof v.f)
    LIT("PRS = ", prs);
    LIT("CI = ", ci_literal);
    LIT("ADa = ", ada);
    LIT("ADb = ", adb);
    HEX(d, "CI = ", ci);
    HEX(d, "sid = ", sid);
    HEX(d, "generator_string(G.DSI,PRS,CI,sid,H.s_in_bytes):", gen_string);
    HEX(d, "hash result:", gen_hash);
    HEX(d, "encoded generator g:", g);
    HEX(d, "ya (little endian):", ya);
    HEX(d, "yb (little endian):", yb);
    HEX(d, "Ya:", Ya);
    HEX(d, "Yb:", Yb);
    HEX(d, "scalar_mult_vfy(ya,Yb):", k_ab);
    HEX(d, "scalar_mult_vfy(yb,Ya):", k_ba);
    HEX(ir, "transcript_ir(Ya,ADa,Yb,ADb):", tr_ir);
    HEX(ir, "b'CPaceRistretto255_ISK':", dsi_isk);
    HEX(ir, "lv_cat(DSI,sid,K)||transcript_ir(Ya,ADa,Yb,ADb):", isk_in_ir);
    HEX(ir, "ISK result:", isk_ir);
    HEX(oc, "transcript_oc(Ya,ADa,Yb,ADb):", tr_oc);
    HEX(oc, "lv_cat(DSI,sid,K)||transcript_oc(Ya,ADa,Yb,ADb):", isk_in_oc);
    HEX(oc, "ISK result:", isk_oc);
    HEX(so, "transcript_ir(Ya,ADa, Yb,ADb)):", sid_out_ir);
    HEX(so, "transcript_oc(Ya,ADa, Yb,ADb)):", sid_out_oc);
#undef HEX
#undef LIT
    return 0;
}

static void test_vector_file_parses(void)
{
    CHECK(v.doc != NULL);
    CHECK_EQ_INT(v.prs_len, 8);
    CHECK_MEM(v.prs, "Password", 8);
    CHECK_EQ_INT(v.ci_len, 26);
    /* The CI is given twice, as a literal and in hex: they must agree. */
    CHECK_EQ_INT(v.ci_literal_len, v.ci_len);
    CHECK_MEM(v.ci_literal, v.ci, 26);
    CHECK_EQ_INT(v.sid_len, 16);
    CHECK_EQ_INT(v.ada_len, 3);
    CHECK_EQ_INT(v.adb_len, 3);
    CHECK_EQ_INT(v.gen_string_len, 172);
    CHECK_EQ_INT(v.gen_hash_len, 64);
    CHECK_EQ_INT(v.g_len, 32);
    CHECK_EQ_INT(v.ya_len, 32);
    CHECK_EQ_INT(v.yb_len, 32);
    CHECK_EQ_INT(v.Ya_len, 32);
    CHECK_EQ_INT(v.Yb_len, 32);
    CHECK_EQ_INT(v.k_ab_len, 32);
    CHECK_EQ_INT(v.k_ba_len, 32);
    CHECK_EQ_INT(v.tr_ir_len, 74);
    CHECK_EQ_INT(v.tr_oc_len, 76);
    CHECK_EQ_INT(v.dsi_isk_len, 21);
    CHECK_EQ_INT(v.isk_in_ir_len, 146);
    CHECK_EQ_INT(v.isk_in_oc_len, 148);
    CHECK_EQ_INT(v.isk_ir_len, 64);
    CHECK_EQ_INT(v.isk_oc_len, 64);
    CHECK_EQ_INT(v.sid_out_ir_len, 64);
    CHECK_EQ_INT(v.sid_out_oc_len, 64);
    /* Two different ISKs: a parser that returned one block twice fails. */
    CHECK(memcmp(v.isk_ir, v.isk_oc, 64) != 0);
}

static void test_generator_string_matches_vector(void)
{
    unsigned char out[256];
    size_t len = 0;
    CHECK_EQ_INT(cpace_generator_string(v.prs, (size_t)v.prs_len, v.ci,
                                        (size_t)v.ci_len, v.sid,
                                        (size_t)v.sid_len, out, sizeof out,
                                        &len), CHUTE_OK);
    CHECK_EQ_INT(len, v.gen_string_len);
    CHECK_MEM(out, v.gen_string, 172);

    /* Too small a buffer says so and still reports the length. */
    size_t need = 0;
    CHECK_EQ_INT(cpace_generator_string(v.prs, (size_t)v.prs_len, v.ci,
                                        (size_t)v.ci_len, v.sid,
                                        (size_t)v.sid_len, out, 100, &need),
                 CHUTE_ERR_LIMIT);
    CHECK_EQ_INT(need, 172);
    CHECK_EQ_INT(cpace_generator_string(v.prs, (size_t)v.prs_len, v.ci,
                                        (size_t)v.ci_len, v.sid,
                                        (size_t)v.sid_len, NULL, 0, &need),
                 CHUTE_ERR_LIMIT);
    CHECK_EQ_INT(need, 172);
}

static void test_generator_hash_and_element_match_vector(void)
{
    unsigned char digest[64], g[32];
    crypto_hash_sha512(digest, v.gen_string, (unsigned long long)v.gen_string_len);
    CHECK_MEM(digest, v.gen_hash, 64);
    CHECK_EQ_INT(cpace_generator(v.prs, (size_t)v.prs_len, v.ci,
                                 (size_t)v.ci_len, v.sid, (size_t)v.sid_len, g),
                 CHUTE_OK);
    CHECK_MEM(g, v.g, 32);
}

static void test_zero_padding_shrinks_and_vanishes_for_long_prs(void)
{
    /* ZPAD = 128 - 1 - len(prepend_len(PRS)) - len(prepend_len(DSI)):
     * 100 for the 8-byte PRS; a 108-byte PRS fills the block exactly and a
     * 200-byte PRS (two-byte LEB128 length) gets no padding at all. */
    unsigned char prs[200], out[512];
    size_t len;
    memset(prs, 'p', sizeof prs);
    CHECK_EQ_INT(cpace_generator_string(prs, 107, NULL, 0, NULL, 0, out,
                                        sizeof out, &len), CHUTE_OK);
    CHECK_EQ_INT(len, 18 + 108 + 2 + 1 + 1);
    CHECK_EQ_INT(out[18 + 108], 1);            /* zpad length 1 */
    CHECK_EQ_INT(cpace_generator_string(prs, 108, NULL, 0, NULL, 0, out,
                                        sizeof out, &len), CHUTE_OK);
    CHECK_EQ_INT(len, 18 + 109 + 1 + 1 + 1);
    CHECK_EQ_INT(out[18 + 109], 0);            /* zpad length 0 */
    CHECK_EQ_INT(cpace_generator_string(prs, 200, NULL, 0, NULL, 0, out,
                                        sizeof out, &len), CHUTE_OK);
    CHECK_EQ_INT(len, 18 + 2 + 200 + 1 + 1 + 1);
    CHECK_EQ_INT(out[18], 0xc8);               /* 200 = 0xc8 0x01 */
    CHECK_EQ_INT(out[19], 0x01);
}

static void test_messages_match_vector(void)
{
    unsigned char Y[32];
    CHECK_EQ_INT(cpace_message_from_scalar(v.ya, v.g, Y), CHUTE_OK);
    CHECK_MEM(Y, v.Ya, 32);
    CHECK_EQ_INT(cpace_message_from_scalar(v.yb, v.g, Y), CHUTE_OK);
    CHECK_MEM(Y, v.Yb, 32);
}

static void test_shared_point_matches_vector(void)
{
    unsigned char k[32];
    CHECK_EQ_INT(cpace_scalar_mult_vfy(v.ya, v.Yb, k), CHUTE_OK);
    CHECK_MEM(k, v.k_ab, 32);
    CHECK_EQ_INT(cpace_scalar_mult_vfy(v.yb, v.Ya, k), CHUTE_OK);
    CHECK_MEM(k, v.k_ba, 32);
}

static void test_transcripts_match_vector(void)
{
    unsigned char out[128];
    size_t len = 0;
    CHECK_EQ_INT(cpace_transcript(CPACE_INITIATOR, v.Ya, v.ada, 3, v.Yb,
                                  v.adb, 3, out, sizeof out, &len), CHUTE_OK);
    CHECK_EQ_INT(len, 74);
    CHECK_MEM(out, v.tr_ir, 74);
    CHECK_EQ_INT(cpace_transcript(CPACE_SYMMETRIC, v.Ya, v.ada, 3, v.Yb,
                                  v.adb, 3, out, sizeof out, &len), CHUTE_OK);
    CHECK_EQ_INT(len, 76);
    CHECK_MEM(out, v.tr_oc, 76);
    /* Ordered concatenation does not care which side is called "a". */
    CHECK_EQ_INT(cpace_transcript(CPACE_SYMMETRIC, v.Yb, v.adb, 3, v.Ya,
                                  v.ada, 3, out, sizeof out, &len), CHUTE_OK);
    CHECK_MEM(out, v.tr_oc, 76);
}

static void test_isk_input_blocks_are_consistent(void)
{
    /* The vector's ISK input must be lv_cat(DSI_ISK, sid, K) followed by
     * the transcript, and hash to the ISK: proves our reading of the draft
     * on which cpace_derive is built. */
    unsigned char head[128], digest[64];
    size_t n = 0;
    head[n++] = 21; memcpy(head + n, v.dsi_isk, 21); n += 21;
    head[n++] = 16; memcpy(head + n, v.sid, 16); n += 16;
    head[n++] = 32; memcpy(head + n, v.k_ab, 32); n += 32;
    CHECK_MEM(v.dsi_isk, "CPaceRistretto255_ISK", 21);
    CHECK_MEM(v.isk_in_ir, head, n);
    CHECK_MEM(v.isk_in_ir + n, v.tr_ir, 74);
    CHECK_MEM(v.isk_in_oc, head, n);
    CHECK_MEM(v.isk_in_oc + n, v.tr_oc, 76);
    crypto_hash_sha512(digest, v.isk_in_ir, 146);
    CHECK_MEM(digest, v.isk_ir, 64);
    crypto_hash_sha512(digest, v.isk_in_oc, 148);
    CHECK_MEM(digest, v.isk_oc, 64);
}

static void test_isk_and_sid_output_match_vector(void)
{
    unsigned char isk[64], sid_out[64];
    CHECK_EQ_INT(cpace_derive(CPACE_INITIATOR, v.sid, 16, v.k_ab, v.Ya,
                              v.ada, 3, v.Yb, v.adb, 3, isk, sid_out), CHUTE_OK);
    CHECK_MEM(isk, v.isk_ir, 64);
    CHECK_MEM(sid_out, v.sid_out_ir, 64);
    CHECK_EQ_INT(cpace_derive(CPACE_SYMMETRIC, v.sid, 16, v.k_ab, v.Ya,
                              v.ada, 3, v.Yb, v.adb, 3, isk, sid_out), CHUTE_OK);
    CHECK_MEM(isk, v.isk_oc, 64);
    CHECK_MEM(sid_out, v.sid_out_oc, 64);
}

/* ---- the state API ------------------------------------------------------- */

static void run_vector_states(cpace_role ra, cpace_role rb,
                              const unsigned char *want_isk,
                              const unsigned char *want_sid_out)
{
    cpace_state a, b;
    cpace_keys ka, kb;
    unsigned char ma[32], mb[32];
    CHECK_EQ_INT(cpace_start_with_scalar(&a, ra, v.prs, 8, v.ci, 26, v.sid,
                                         16, v.ada, 3, v.ya, ma), CHUTE_OK);
    CHECK_EQ_INT(cpace_start_with_scalar(&b, rb, v.prs, 8, v.ci, 26, v.sid,
                                         16, v.adb, 3, v.yb, mb), CHUTE_OK);
    CHECK_MEM(ma, v.Ya, 32);
    CHECK_MEM(mb, v.Yb, 32);
    CHECK_EQ_INT(cpace_finish(&a, mb, v.adb, 3, &ka), CHUTE_OK);
    CHECK_EQ_INT(cpace_finish(&b, ma, v.ada, 3, &kb), CHUTE_OK);
    CHECK_MEM(ka.isk, want_isk, 64);
    CHECK_MEM(kb.isk, want_isk, 64);
    CHECK_MEM(ka.sid_out, want_sid_out, 64);
    CHECK_MEM(kb.sid_out, want_sid_out, 64);
}

static void test_state_api_reproduces_vectors(void)
{
    run_vector_states(CPACE_INITIATOR, CPACE_RESPONDER, v.isk_ir,
                      v.sid_out_ir);
    run_vector_states(CPACE_SYMMETRIC, CPACE_SYMMETRIC, v.isk_oc,
                      v.sid_out_oc);
}

static const unsigned char CI[] = "ci";
static const unsigned char SID[16] = { 1, 2, 3 };

/* One run with random scalars; returns the two finish statuses. */
static void run(const char *prs_a, const char *prs_b, cpace_keys *ka,
                cpace_keys *kb, chute_status *sa, chute_status *sb)
{
    cpace_state a, b;
    unsigned char ma[32], mb[32];
    CHECK_EQ_INT(cpace_start(&a, CPACE_INITIATOR, (const uint8_t *)prs_a,
                             strlen(prs_a), CI, 2, SID, 16,
                             (const uint8_t *)"A", 1, ma), CHUTE_OK);
    CHECK_EQ_INT(cpace_start(&b, CPACE_RESPONDER, (const uint8_t *)prs_b,
                             strlen(prs_b), CI, 2, SID, 16, NULL, 0, mb),
                 CHUTE_OK);
    *sa = cpace_finish(&a, mb, NULL, 0, ka);
    *sb = cpace_finish(&b, ma, (const uint8_t *)"A", 1, kb);
}

static void test_same_password_agrees(void)
{
    cpace_keys ka, kb;
    chute_status sa, sb;
    run("k7qmx2dp", "k7qmx2dp", &ka, &kb, &sa, &sb);
    CHECK_EQ_INT(sa, CHUTE_OK);
    CHECK_EQ_INT(sb, CHUTE_OK);
    CHECK_MEM(ka.isk, kb.isk, 64);
    CHECK_MEM(ka.sid_out, kb.sid_out, 64);
    CHECK(!sodium_is_zero(ka.isk, 64));

    cpace_keys kc, kd;
    run("k7qmx2dp", "k7qmx2dp", &kc, &kd, &sa, &sb);
    CHECK(memcmp(ka.isk, kc.isk, 64) != 0);   /* fresh scalars each run */
}

static void test_wrong_password_disagrees(void)
{
    cpace_keys ka, kb;
    chute_status sa, sb;
    run("k7qmx2dp", "k7qmx2dq", &ka, &kb, &sa, &sb);
    /* CPace itself cannot tell: both finish, with different keys. That is
     * why key confirmation follows (see test_cpace_confirm). */
    CHECK_EQ_INT(sa, CHUTE_OK);
    CHECK_EQ_INT(sb, CHUTE_OK);
    CHECK(memcmp(ka.isk, kb.isk, 64) != 0);
    CHECK_MEM(ka.sid_out, kb.sid_out, 64);    /* public: same transcript */
}

static void test_different_ci_or_sid_disagrees(void)
{
    cpace_state a, b;
    cpace_keys ka, kb;
    unsigned char ma[32], mb[32];
    CHECK_EQ_INT(cpace_start(&a, CPACE_INITIATOR, (const uint8_t *)"pw", 2,
                             CI, 2, SID, 16, NULL, 0, ma), CHUTE_OK);
    CHECK_EQ_INT(cpace_start(&b, CPACE_RESPONDER, (const uint8_t *)"pw", 2,
                             (const uint8_t *)"cj", 2, SID, 16, NULL, 0, mb),
                 CHUTE_OK);
    CHECK_EQ_INT(cpace_finish(&a, mb, NULL, 0, &ka), CHUTE_OK);
    CHECK_EQ_INT(cpace_finish(&b, ma, NULL, 0, &kb), CHUTE_OK);
    CHECK(memcmp(ka.isk, kb.isk, 64) != 0);

    CHECK_EQ_INT(cpace_start(&a, CPACE_INITIATOR, (const uint8_t *)"pw", 2,
                             CI, 2, SID, 16, NULL, 0, ma), CHUTE_OK);
    CHECK_EQ_INT(cpace_start(&b, CPACE_RESPONDER, (const uint8_t *)"pw", 2,
                             CI, 2, SID, 15, NULL, 0, mb), CHUTE_OK);
    CHECK_EQ_INT(cpace_finish(&a, mb, NULL, 0, &ka), CHUTE_OK);
    CHECK_EQ_INT(cpace_finish(&b, ma, NULL, 0, &kb), CHUTE_OK);
    CHECK(memcmp(ka.isk, kb.isk, 64) != 0);
}

static void test_tampered_message_or_ad_disagrees(void)
{
    cpace_state a, b;
    cpace_keys ka, kb;
    unsigned char ma[32], mb[32];
    int rejected = 0, differed = 0;
    for (int bit = 0; bit < 256; bit += 7) {
        CHECK_EQ_INT(cpace_start(&a, CPACE_INITIATOR, (const uint8_t *)"pw",
                                 2, CI, 2, SID, 16, NULL, 0, ma), CHUTE_OK);
        CHECK_EQ_INT(cpace_start(&b, CPACE_RESPONDER, (const uint8_t *)"pw",
                                 2, CI, 2, SID, 16, NULL, 0, mb), CHUTE_OK);
        mb[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        chute_status sa = cpace_finish(&a, mb, NULL, 0, &ka);
        CHECK_EQ_INT(cpace_finish(&b, ma, NULL, 0, &kb), CHUTE_OK);
        /* A flipped bit either breaks the encoding or yields another
         * element, hence another key; never the same key. */
        if (sa == CHUTE_ERR_MALFORMED) {
            rejected++;
            CHECK(sodium_is_zero(ka.isk, 64));
        } else {
            CHECK_EQ_INT(sa, CHUTE_OK);
            differed += memcmp(ka.isk, kb.isk, 64) != 0;
        }
    }
    CHECK_EQ_INT(rejected + differed, 37);
    CHECK(rejected > 0);

    /* Changing the peer's AD in flight changes the transcript. */
    CHECK_EQ_INT(cpace_start(&a, CPACE_INITIATOR, (const uint8_t *)"pw", 2,
                             CI, 2, SID, 16, NULL, 0, ma), CHUTE_OK);
    CHECK_EQ_INT(cpace_start(&b, CPACE_RESPONDER, (const uint8_t *)"pw", 2,
                             CI, 2, SID, 16, (const uint8_t *)"B", 1, mb),
                 CHUTE_OK);
    CHECK_EQ_INT(cpace_finish(&a, mb, (const uint8_t *)"C", 1, &ka), CHUTE_OK);
    CHECK_EQ_INT(cpace_finish(&b, ma, NULL, 0, &kb), CHUTE_OK);
    CHECK(memcmp(ka.isk, kb.isk, 64) != 0);
}

static void test_identity_and_noncanonical_elements_are_rejected(void)
{
    static const unsigned char identity[32] = { 0 };
    /* p = 2^255 - 19 as bytes: a non-canonical encoding of zero. */
    unsigned char p_enc[32];
    memset(p_enc, 0xff, 32);
    p_enc[0] = 0xed;
    p_enc[31] = 0x7f;
    unsigned char neg[32];                   /* a negative field element */
    memcpy(neg, v.Yb, 32);
    neg[0] |= 1;                             /* ristretto wants it even */
    unsigned char high[32];
    memcpy(high, v.Yb, 32);
    high[31] |= 0x80;                        /* top bit must be clear */
    unsigned char k[32];

    CHECK_EQ_INT(cpace_scalar_mult_vfy(v.ya, identity, k), CHUTE_ERR_CRYPTO);
    CHECK(sodium_is_zero(k, 32));
    CHECK_EQ_INT(cpace_scalar_mult_vfy(v.ya, p_enc, k), CHUTE_ERR_MALFORMED);
    CHECK_EQ_INT(cpace_scalar_mult_vfy(v.ya, neg, k), CHUTE_ERR_MALFORMED);
    CHECK_EQ_INT(cpace_scalar_mult_vfy(v.ya, high, k), CHUTE_ERR_MALFORMED);

    cpace_state a;
    cpace_keys ka;
    unsigned char ma[32];
    CHECK_EQ_INT(cpace_start(&a, CPACE_INITIATOR, (const uint8_t *)"pw", 2,
                             CI, 2, SID, 16, NULL, 0, ma), CHUTE_OK);
    memset(&ka, 0xaa, sizeof ka);
    CHECK_EQ_INT(cpace_finish(&a, identity, NULL, 0, &ka), CHUTE_ERR_CRYPTO);
    CHECK(sodium_is_zero((unsigned char *)&ka, sizeof ka));
    CHECK_EQ_INT(a.stage, 0);                /* wiped: no second try */
    CHECK_EQ_INT(cpace_finish(&a, v.Yb, NULL, 0, &ka), CHUTE_ERR_ARG);
}

static void test_bad_arguments_are_refused(void)
{
    cpace_state st;
    cpace_keys k;
    unsigned char m[32], big[CPACE_AD_MAX + 1] = { 0 };
    static const unsigned char zero[32];
    unsigned char order[32];                 /* L, the group order */
    static const unsigned char L[32] = {
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
        0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0x10 };
    memcpy(order, L, 32);

    CHECK_EQ_INT(cpace_start(&st, (cpace_role)0, NULL, 0, NULL, 0, NULL, 0,
                             NULL, 0, m), CHUTE_ERR_ARG);
    CHECK_EQ_INT(cpace_start(&st, CPACE_INITIATOR, NULL, 3, NULL, 0, NULL, 0,
                             NULL, 0, m), CHUTE_ERR_ARG);
    CHECK_EQ_INT(cpace_start(&st, CPACE_INITIATOR, NULL, 0, NULL, 0, big,
                             CPACE_SID_MAX + 1, NULL, 0, m), CHUTE_ERR_ARG);
    CHECK_EQ_INT(cpace_start(&st, CPACE_INITIATOR, NULL, 0, NULL, 0, NULL, 0,
                             big, sizeof big, m), CHUTE_ERR_ARG);
    CHECK_EQ_INT(cpace_start_with_scalar(&st, CPACE_INITIATOR, NULL, 0, NULL,
                                         0, NULL, 0, NULL, 0, zero, m),
                 CHUTE_ERR_ARG);
    CHECK_EQ_INT(cpace_start_with_scalar(&st, CPACE_INITIATOR, NULL, 0, NULL,
                                         0, NULL, 0, NULL, 0, order, m),
                 CHUTE_ERR_ARG);
    /* Never started (wiped by the failures above). */
    CHECK_EQ_INT(cpace_finish(&st, v.Yb, NULL, 0, &k), CHUTE_ERR_ARG);
    /* The longest allowed sid and AD are fine. */
    CHECK_EQ_INT(cpace_start(&st, CPACE_INITIATOR, NULL, 0, NULL, 0, big,
                             CPACE_SID_MAX, big, CPACE_AD_MAX, m), CHUTE_OK);
    cpace_abort(&st);
    CHECK_EQ_INT(st.stage, 0);
}

int main(void)
{
    if (sodium_init() < 0 || load_vectors() != 0) {
        fprintf(stderr, "cannot initialise or read %s/%s\n",
                unit_vectors_dir(), VECTORS);
        return 1;
    }
    RUN(test_vector_file_parses);
    RUN(test_generator_string_matches_vector);
    RUN(test_generator_hash_and_element_match_vector);
    RUN(test_zero_padding_shrinks_and_vanishes_for_long_prs);
    RUN(test_messages_match_vector);
    RUN(test_shared_point_matches_vector);
    RUN(test_transcripts_match_vector);
    RUN(test_isk_input_blocks_are_consistent);
    RUN(test_isk_and_sid_output_match_vector);
    RUN(test_state_api_reproduces_vectors);
    RUN(test_same_password_agrees);
    RUN(test_wrong_password_disagrees);
    RUN(test_different_ci_or_sid_disagrees);
    RUN(test_tampered_message_or_ad_disagrees);
    RUN(test_identity_and_noncanonical_elements_are_rejected);
    RUN(test_bad_arguments_are_refused);
    free(v.doc);
    return unit_done();
}
