/* test_cpace_confirm.c — key confirmation, SAS and derived keys: known
 * answers (computed with Python's hmac/hashlib from the spec text in
 * docs/PROTOCOL.md §5, from the draft's ISK vector), then whole pairings
 * run as the protocol runs them, and every way one must fail. */
#include <sodium.h>

#include "cpace_confirm.h"
#include "unit.h"

static void hex(const char *h, unsigned char *out, size_t n)
{
    size_t bin_len = 0;
    if (sodium_hex2bin(out, n, h, strlen(h), NULL, &bin_len, NULL) != 0 ||
        bin_len != n)
        memset(out, 0, n);
}

/* ISK_IR and sid output of the draft's ristretto255 vectors. */
static void vector_keys(cpace_keys *k)
{
    hex("4c5469a16b2364c4b944ebc1a79e51d1674ad47db26e8718154f59faebfaa52d"
        "8346f30aa58377117eb20d527f2cbc5c76381f7fd372e89df8239f87f2e02ed1",
        k->isk, 64);
    hex("2a76d3bbc499dfdc4dcacc9ff042f4e1a54e3843258e100ccd7c60f0a541f9d3"
        "ebf025e68a460dde218bd39f0711bc6fa11409c9d7b69d8ccf6b32fc51ddb699",
        k->sid_out, 64);
}

static void test_known_answers(void)
{
    cpace_keys k;
    cpace_confirm ci, cr;
    unsigned char ta[32], tb[32], want[32], nonce[32], commit[32], key[32];
    char sas[CPACE_SAS_STRING_BYTES];
    vector_keys(&k);
    for (int i = 0; i < 32; i++)
        nonce[i] = (unsigned char)i;

    CHECK_EQ_INT(cpace_confirm_init(&ci, CPACE_INITIATOR, &k), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_init(&cr, CPACE_RESPONDER, &k), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_tag(&ci, ta), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_tag(&cr, tb), CHUTE_OK);
    hex("7a2b20f27fa2b4387a43023f33b0c1998c792adc496b863a4b420792de1ac6d9",
        want, 32);
    CHECK_MEM(ta, want, 32);
    hex("9f70b86f15bffe8268d1263d16bb43031d191459473810b1ee77f2fbda2977d5",
        want, 32);
    CHECK_MEM(tb, want, 32);

    CHECK_EQ_INT(cpace_confirm_verify(&ci, tb), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_verify(&cr, ta), CHUTE_OK);

    hex("54c18f9fee1316654b82b13b515401594797bd18b21955fc19e56e771972abfa",
        commit, 32);
    CHECK_EQ_INT(cpace_confirm_sas(&ci, nonce, commit, sas), CHUTE_OK);
    CHECK(strcmp(sas, "824 132") == 0);
    CHECK_EQ_INT(cpace_confirm_channel_key(&cr, key), CHUTE_OK);
    hex("f2f41712c98634cded05fe73e2152b015f73bd837d97d6463a6137658c299858",
        want, 32);
    CHECK_MEM(key, want, 32);
    CHECK_EQ_INT(cpace_confirm_link_key(&cr, key), CHUTE_OK);
    hex("20a82aab08ff7125b1c03ef3d93f7c3856cfc1bb1177ba4738c365fd3281a22d",
        want, 32);
    CHECK_MEM(key, want, 32);
}

static void test_channel_identifier(void)
{
    unsigned char out[128], want[64];
    size_t len = 0;
    CHECK_EQ_INT(cpace_pair_ci("https://relay.example.org", "4213", out,
                               sizeof out, &len), CHUTE_OK);
    CHECK_EQ_INT(len, 45);
    hex("0d63687574652d706169722d76311968747470733a2f2f72656c61792e657861"
        "6d706c652e6f72670434323133", want, 45);
    CHECK_MEM(out, want, 45);
    CHECK_EQ_INT(cpace_pair_ci("https://relay.example.org", "4213", out, 10,
                               &len), CHUTE_ERR_LIMIT);
    CHECK_EQ_INT(len, 45);
    CHECK_EQ_INT(cpace_pair_ci("", "4213", out, sizeof out, &len),
                 CHUTE_ERR_ARG);
    CHECK_EQ_INT(cpace_pair_ci("https://r", "", out, sizeof out, &len),
                 CHUTE_ERR_ARG);
    CHECK_EQ_INT(cpace_pair_ci(NULL, "1", out, sizeof out, &len),
                 CHUTE_ERR_ARG);
    /* Length prefixes keep ("ab", "c") apart from ("a", "bc"). */
    unsigned char other[128];
    size_t other_len = 0;
    CHECK_EQ_INT(cpace_pair_ci("https://r1", "2", out, sizeof out, &len),
                 CHUTE_OK);
    CHECK_EQ_INT(cpace_pair_ci("https://r", "12", other, sizeof other,
                               &other_len), CHUTE_OK);
    CHECK(len == other_len && memcmp(out, other, len) != 0);
}

/* ---- whole pairings ------------------------------------------------------ */

typedef struct {
    /* what each side ends with */
    chute_status inviter_verify, joiner_verify;
    char inviter_sas[CPACE_SAS_STRING_BYTES], joiner_sas[CPACE_SAS_STRING_BYTES];
    unsigned char inviter_channel[32], joiner_channel[32];
    unsigned char inviter_link[32], joiner_link[32];
    /* the wire, for tests that replay it */
    unsigned char ta[32], tb[32];
} pairing;

/* Flip bit `flip` (0..255) of Yb in flight when flip >= 0. */
static void pair(const char *inviter_code, const char *joiner_code, int flip,
                 pairing *out)
{
    memset(out, 0, sizeof *out);
    unsigned char ci[128], sid[CPACE_PAIR_SID_BYTES], nonce[32], commit[32];
    size_t ci_len;
    CHECK_EQ_INT(cpace_pair_ci("https://relay.example.org", "4213", ci,
                               sizeof ci, &ci_len), CHUTE_OK);
    randombytes_buf(sid, sizeof sid);

    /* inviter: msg1 = sid, Ya, commit */
    cpace_state inv, joi;
    unsigned char ya[32], yb[32];
    cpace_sas_commit_make(nonce, commit);
    CHECK_EQ_INT(cpace_start(&inv, CPACE_INITIATOR,
                             (const uint8_t *)inviter_code,
                             strlen(inviter_code), ci, ci_len, sid,
                             sizeof sid, commit, sizeof commit, ya), CHUTE_OK);

    /* joiner: msg2 = Yb, Tb */
    cpace_keys kj, ki;
    cpace_confirm cj, cinv;
    CHECK_EQ_INT(cpace_start(&joi, CPACE_RESPONDER,
                             (const uint8_t *)joiner_code,
                             strlen(joiner_code), ci, ci_len, sid,
                             sizeof sid, NULL, 0, yb), CHUTE_OK);
    CHECK_EQ_INT(cpace_finish(&joi, ya, commit, sizeof commit, &kj), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_init(&cj, CPACE_RESPONDER, &kj), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_tag(&cj, out->tb), CHUTE_OK);
    if (flip >= 0)
        yb[flip / 8] ^= (unsigned char)(1u << (flip % 8));

    /* inviter: verify Tb, then msg3 = Ta, nonce */
    chute_status st = cpace_finish(&inv, yb, NULL, 0, &ki);
    if (st != CHUTE_OK) {
        out->inviter_verify = st;
        out->joiner_verify = CHUTE_ERR_PROTOCOL;     /* never got msg3 */
        cpace_confirm_wipe(&cj);
        return;
    }
    CHECK_EQ_INT(cpace_confirm_init(&cinv, CPACE_INITIATOR, &ki), CHUTE_OK);
    out->inviter_verify = cpace_confirm_verify(&cinv, out->tb);
    /* Even a failed inviter's tag is computed, to show the joiner refuses
     * it; a real inviter stops here and sends nothing. */
    cpace_confirm tmp;
    CHECK_EQ_INT(cpace_confirm_init(&tmp, CPACE_INITIATOR, &ki), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_tag(&tmp, out->ta), CHUTE_OK);
    cpace_confirm_wipe(&tmp);
    out->joiner_verify = cpace_confirm_verify(&cj, out->ta);

    if (out->inviter_verify == CHUTE_OK) {
        CHECK_EQ_INT(cpace_confirm_sas(&cinv, nonce, commit, out->inviter_sas),
                     CHUTE_OK);
        CHECK_EQ_INT(cpace_confirm_channel_key(&cinv, out->inviter_channel),
                     CHUTE_OK);
        CHECK_EQ_INT(cpace_confirm_link_key(&cinv, out->inviter_link),
                     CHUTE_OK);
    }
    if (out->joiner_verify == CHUTE_OK) {
        CHECK_EQ_INT(cpace_confirm_sas(&cj, nonce, commit, out->joiner_sas),
                     CHUTE_OK);
        CHECK_EQ_INT(cpace_confirm_channel_key(&cj, out->joiner_channel),
                     CHUTE_OK);
        CHECK_EQ_INT(cpace_confirm_link_key(&cj, out->joiner_link), CHUTE_OK);
    }
    cpace_confirm_wipe(&cinv);
    cpace_confirm_wipe(&cj);
    sodium_memzero(&ki, sizeof ki);
    sodium_memzero(&kj, sizeof kj);
}

static void test_same_code_pairs(void)
{
    pairing p;
    pair("k7qmx2dp", "k7qmx2dp", -1, &p);
    CHECK_EQ_INT(p.inviter_verify, CHUTE_OK);
    CHECK_EQ_INT(p.joiner_verify, CHUTE_OK);
    CHECK_EQ_INT(strlen(p.inviter_sas), 7);
    CHECK(strcmp(p.inviter_sas, p.joiner_sas) == 0);
    CHECK(p.inviter_sas[3] == ' ');
    CHECK_MEM(p.inviter_channel, p.joiner_channel, 32);
    CHECK_MEM(p.inviter_link, p.joiner_link, 32);
    CHECK(memcmp(p.inviter_channel, p.inviter_link, 32) != 0);
    CHECK(!sodium_is_zero(p.inviter_link, 32));
    /* Tags differ per direction. */
    CHECK(memcmp(p.ta, p.tb, 32) != 0);
}

static void test_wrong_code_fails_confirmation_both_ways(void)
{
    pairing p;
    pair("k7qmx2dp", "k7qmx2dq", -1, &p);
    CHECK_EQ_INT(p.inviter_verify, CHUTE_ERR_AUTH);
    CHECK_EQ_INT(p.joiner_verify, CHUTE_ERR_AUTH);
    CHECK(sodium_is_zero(p.inviter_link, 32));
}

static void test_tampered_element_never_pairs(void)
{
    for (int bit = 0; bit < 256; bit += 9) {
        pairing p;
        pair("k7qmx2dp", "k7qmx2dp", bit, &p);
        CHECK(p.inviter_verify != CHUTE_OK);
        CHECK(p.joiner_verify != CHUTE_OK);
    }
}

static void test_swapped_replayed_or_reflected_tags_fail(void)
{
    pairing old;
    pair("k7qmx2dp", "k7qmx2dp", -1, &old);

    cpace_keys k;
    cpace_confirm c;
    unsigned char own[32];
    vector_keys(&k);

    /* Reflection: the initiator is sent its own tag back. */
    CHECK_EQ_INT(cpace_confirm_init(&c, CPACE_INITIATOR, &k), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_tag(&c, own), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_verify(&c, own), CHUTE_ERR_AUTH);
    CHECK_EQ_INT(c.stage, 0);                 /* wiped: no second guess */
    CHECK_EQ_INT(cpace_confirm_verify(&c, own), CHUTE_ERR_ARG);

    /* Replay: tags of another (successful) run do not verify here. */
    CHECK_EQ_INT(cpace_confirm_init(&c, CPACE_INITIATOR, &k), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_verify(&c, old.tb), CHUTE_ERR_AUTH);
    CHECK_EQ_INT(cpace_confirm_init(&c, CPACE_RESPONDER, &k), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_verify(&c, old.ta), CHUTE_ERR_AUTH);

    /* Swapped: the responder is given the responder's tag. */
    cpace_confirm r;
    unsigned char tb[32];
    CHECK_EQ_INT(cpace_confirm_init(&r, CPACE_RESPONDER, &k), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_tag(&r, tb), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_verify(&r, tb), CHUTE_ERR_AUTH);

    /* A tag with one bit flipped. */
    unsigned char ta[32];
    CHECK_EQ_INT(cpace_confirm_init(&c, CPACE_INITIATOR, &k), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_init(&r, CPACE_RESPONDER, &k), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_tag(&c, ta), CHUTE_OK);
    ta[31] ^= 0x80;
    CHECK_EQ_INT(cpace_confirm_verify(&r, ta), CHUTE_ERR_AUTH);

    /* Replaying the right tag a second time to a verified state. */
    CHECK_EQ_INT(cpace_confirm_init(&r, CPACE_RESPONDER, &k), CHUTE_OK);
    ta[31] ^= 0x80;
    CHECK_EQ_INT(cpace_confirm_verify(&r, ta), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_verify(&r, ta), CHUTE_ERR_ARG);
}

static void test_nothing_comes_out_before_verification(void)
{
    cpace_keys k;
    cpace_confirm c;
    unsigned char key[32], nonce[32], commit[32];
    char sas[CPACE_SAS_STRING_BYTES] = "";
    vector_keys(&k);
    cpace_sas_commit_make(nonce, commit);
    CHECK_EQ_INT(cpace_confirm_init(&c, CPACE_INITIATOR, &k), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_channel_key(&c, key), CHUTE_ERR_ARG);
    CHECK_EQ_INT(cpace_confirm_link_key(&c, key), CHUTE_ERR_ARG);
    CHECK_EQ_INT(cpace_confirm_sas(&c, nonce, commit, sas), CHUTE_ERR_ARG);
    CHECK_EQ_INT(cpace_confirm_init(&c, CPACE_SYMMETRIC, &k), CHUTE_ERR_ARG);
    CHECK_EQ_INT(cpace_confirm_tag(&c, key), CHUTE_ERR_ARG);
    CHECK_EQ_INT(cpace_confirm_init(NULL, CPACE_INITIATOR, &k), CHUTE_ERR_ARG);
    CHECK_EQ_INT(cpace_confirm_init(&c, CPACE_INITIATOR, NULL), CHUTE_ERR_ARG);
}

static void verified(cpace_confirm *c, const cpace_keys *k)
{
    cpace_confirm peer;
    unsigned char t[32];
    CHECK_EQ_INT(cpace_confirm_init(&peer, CPACE_RESPONDER, k), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_tag(&peer, t), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_init(c, CPACE_INITIATOR, k), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_verify(c, t), CHUTE_OK);
}

static void test_sas_depends_on_isk_and_opened_nonce(void)
{
    cpace_keys k1, k2;
    cpace_confirm c1, c2;
    unsigned char nonce[32], commit[32];
    char s1[CPACE_SAS_STRING_BYTES], s2[CPACE_SAS_STRING_BYTES];
    vector_keys(&k1);
    k2 = k1;
    k2.isk[0] ^= 1;
    for (int i = 0; i < 32; i++)
        nonce[i] = (unsigned char)i;
    cpace_sas_commit_make(nonce, commit);    /* overwrites the nonce */
    verified(&c1, &k1);
    verified(&c2, &k2);
    CHECK_EQ_INT(cpace_confirm_sas(&c1, nonce, commit, s1), CHUTE_OK);
    CHECK_EQ_INT(cpace_confirm_sas(&c2, nonce, commit, s2), CHUTE_OK);
    CHECK(strcmp(s1, s2) != 0);

    /* A nonce that does not open the commitment is refused. */
    nonce[5] ^= 1;
    CHECK_EQ_INT(cpace_confirm_sas(&c1, nonce, commit, s2), CHUTE_ERR_AUTH);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    RUN(test_known_answers);
    RUN(test_channel_identifier);
    RUN(test_same_code_pairs);
    RUN(test_wrong_code_fails_confirmation_both_ways);
    RUN(test_tampered_element_never_pairs);
    RUN(test_swapped_replayed_or_reflected_tags_fail);
    RUN(test_nothing_comes_out_before_verification);
    RUN(test_sas_depends_on_isk_and_opened_nonce);
    return unit_done();
}
