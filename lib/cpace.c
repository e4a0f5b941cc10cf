/* cpace.c — CPace on ristretto255 with SHA-512, after draft-irtf-cfrg-cpace.
 *
 * Every string the draft builds (generator_string, the transcripts, the ISK
 * input) is written through one small "sink" that either appends to a
 * caller's buffer or feeds SHA-512. So the bytes the test vectors check and
 * the bytes the protocol hashes come from the same code, and no secret (the
 * PRS) is ever copied into a heap buffer. */
#include "cpace.h"

#include <string.h>

#include <sodium.h>

#define DSI        "CPaceRistretto255"
#define DSI_ISK    DSI "_ISK"
/* The vectors file captions this H(b"CPaceSidOut" + transcript), but its
 * bytes (and the draft's reference code) use the label "CPaceSidOutput". */
#define SID_OUT    "CPaceSidOutput"
#define H_BLOCK    128                 /* SHA-512 input block: s_in_bytes */
#define LEB128_MAX 10                  /* a 64-bit length in LEB128 */

/* ---- the sink: a buffer, a hash, or both ------------------------------- */

typedef struct {
    crypto_hash_sha512_state *hash;  /* NULL: no hashing */
    uint8_t *buf;                    /* NULL: only count */
    size_t cap;
    size_t len;                      /* bytes written so far, even past cap */
} sink;

static void sink_put(sink *s, const uint8_t *p, size_t n)
{
    if (n == 0)
        return;
    if (s->hash)
        crypto_hash_sha512_update(s->hash, p, n);
    if (s->buf && s->len < s->cap) {
        size_t room = s->cap - s->len;
        memcpy(s->buf + s->len, p, n < room ? n : room);
    }
    s->len += n;
}

static void sink_zeros(sink *s, size_t n)
{
    static const uint8_t zeros[64];
    while (n > 0) {
        size_t chunk = n < sizeof zeros ? n : sizeof zeros;
        sink_put(s, zeros, chunk);
        n -= chunk;
    }
}

/* The draft's prepend_len: the length as unsigned LEB128. */
static size_t leb128(size_t len, uint8_t out[LEB128_MAX])
{
    size_t n = 0;
    do {
        uint8_t b = (uint8_t)(len & 0x7f);
        len >>= 7;
        out[n++] = len ? (uint8_t)(b | 0x80) : b;
    } while (len);
    return n;
}

static void sink_lv(sink *s, const uint8_t *p, size_t n)
{
    uint8_t pre[LEB128_MAX];
    sink_put(s, pre, leb128(n, pre));
    sink_put(s, p, n);
}

/* ---- generator ----------------------------------------------------------- */

static void generator_string_to(sink *s, const uint8_t *prs, size_t prs_len,
                                const uint8_t *ci, size_t ci_len,
                                const uint8_t *sid, size_t sid_len)
{
    /* Zero padding fills the first hash block after DSI and PRS, so that
     * block alone depends on the password (the draft's reason). */
    uint8_t pre[LEB128_MAX];
    size_t used = 1 + (sizeof DSI - 1 + leb128(sizeof DSI - 1, pre))
                    + (prs_len + leb128(prs_len, pre));
    size_t zpad = used < H_BLOCK ? H_BLOCK - used : 0;

    sink_lv(s, (const uint8_t *)DSI, sizeof DSI - 1);
    sink_lv(s, prs, prs_len);
    sink_put(s, pre, leb128(zpad, pre));
    sink_zeros(s, zpad);
    sink_lv(s, ci, ci_len);
    sink_lv(s, sid, sid_len);
}

/* RFC 9496 decoding: libsodium 1.0.18 accepts an encoding with the top
 * bit set (it ignores that bit), which is not canonical; refuse it here. */
static int element_is_canonical(const uint8_t e[CPACE_MSG_BYTES])
{
    return (e[CPACE_MSG_BYTES - 1] & 0x80) == 0 &&
           crypto_core_ristretto255_is_valid_point(e);
}

static int bad_span(const void *p, size_t n)
{
    return p == NULL && n != 0;
}

chute_status cpace_generator_string(const uint8_t *prs, size_t prs_len,
                                    const uint8_t *ci, size_t ci_len,
                                    const uint8_t *sid, size_t sid_len,
                                    uint8_t *out, size_t out_cap,
                                    size_t *out_len)
{
    if (bad_span(prs, prs_len) || bad_span(ci, ci_len) ||
        bad_span(sid, sid_len) || bad_span(out, out_cap) || !out_len)
        return CHUTE_ERR_ARG;
    sink s = { NULL, out, out_cap, 0 };
    generator_string_to(&s, prs, prs_len, ci, ci_len, sid, sid_len);
    *out_len = s.len;
    return s.len > out_cap ? CHUTE_ERR_LIMIT : CHUTE_OK;
}

chute_status cpace_generator(const uint8_t *prs, size_t prs_len,
                             const uint8_t *ci, size_t ci_len,
                             const uint8_t *sid, size_t sid_len,
                             uint8_t g[CPACE_MSG_BYTES])
{
    if (bad_span(prs, prs_len) || bad_span(ci, ci_len) ||
        bad_span(sid, sid_len) || !g)
        return CHUTE_ERR_ARG;
    crypto_hash_sha512_state h;
    uint8_t digest[crypto_hash_sha512_BYTES];
    sink s = { &h, NULL, 0, 0 };

    crypto_hash_sha512_init(&h);
    generator_string_to(&s, prs, prs_len, ci, ci_len, sid, sid_len);
    crypto_hash_sha512_final(&h, digest);
    int rc = crypto_core_ristretto255_from_hash(g, digest);
    sodium_memzero(&h, sizeof h);
    sodium_memzero(digest, sizeof digest);
    return rc == 0 ? CHUTE_OK : CHUTE_ERR_CRYPTO;
}

/* ---- messages and the shared point -------------------------------------- */

chute_status cpace_message_from_scalar(const uint8_t y[CPACE_SCALAR_BYTES],
                                       const uint8_t g[CPACE_MSG_BYTES],
                                       uint8_t msg_out[CPACE_MSG_BYTES])
{
    if (!y || !g || !msg_out)
        return CHUTE_ERR_ARG;
    if (!element_is_canonical(g))
        return CHUTE_ERR_MALFORMED;
    if (crypto_scalarmult_ristretto255(msg_out, y, g) != 0)
        return CHUTE_ERR_CRYPTO;
    return CHUTE_OK;
}

chute_status cpace_scalar_mult_vfy(const uint8_t y[CPACE_SCALAR_BYTES],
                                   const uint8_t peer_msg[CPACE_MSG_BYTES],
                                   uint8_t k_out[CPACE_MSG_BYTES])
{
    if (!y || !peer_msg || !k_out)
        return CHUTE_ERR_ARG;
    /* Two distinct failures: bytes that are not a canonical encoding are a
     * malformed message; a valid element that makes K the identity (the
     * identity itself) is an attack on the key and refused as such. */
    if (!element_is_canonical(peer_msg))
        return CHUTE_ERR_MALFORMED;
    if (crypto_scalarmult_ristretto255(k_out, y, peer_msg) != 0) {
        sodium_memzero(k_out, CPACE_MSG_BYTES);
        return CHUTE_ERR_CRYPTO;
    }
    return CHUTE_OK;
}

/* ---- transcripts, ISK, sid output ---------------------------------------- */

/* The byte at index i of lv_cat(Y, AD), without building it. */
typedef struct {
    uint8_t head[1 + CPACE_MSG_BYTES + LEB128_MAX];
    size_t head_len;
    const uint8_t *ad;
    size_t ad_len;
} lv_pair;

static void lv_pair_init(lv_pair *p, const uint8_t y[CPACE_MSG_BYTES],
                         const uint8_t *ad, size_t ad_len)
{
    p->head[0] = CPACE_MSG_BYTES;
    memcpy(p->head + 1, y, CPACE_MSG_BYTES);
    p->head_len = 1 + CPACE_MSG_BYTES
                + leb128(ad_len, p->head + 1 + CPACE_MSG_BYTES);
    p->ad = ad;
    p->ad_len = ad_len;
}

static size_t lv_pair_len(const lv_pair *p)
{
    return p->head_len + p->ad_len;
}

static uint8_t lv_pair_at(const lv_pair *p, size_t i)
{
    return i < p->head_len ? p->head[i] : p->ad[i - p->head_len];
}

/* The draft's lexiographically_larger(a, b). */
static int lv_pair_larger(const lv_pair *a, const lv_pair *b)
{
    size_t la = lv_pair_len(a), lb = lv_pair_len(b);
    size_t n = la < lb ? la : lb;
    for (size_t i = 0; i < n; i++) {
        uint8_t x = lv_pair_at(a, i), y = lv_pair_at(b, i);
        if (x != y)
            return x > y;
    }
    return la > lb;
}

static void lv_pair_to(sink *s, const lv_pair *p)
{
    sink_put(s, p->head, p->head_len);
    sink_put(s, p->ad, p->ad_len);
}

static void transcript_to(sink *s, cpace_role mode,
                          const uint8_t ya[CPACE_MSG_BYTES],
                          const uint8_t *ada, size_t ada_len,
                          const uint8_t yb[CPACE_MSG_BYTES],
                          const uint8_t *adb, size_t adb_len)
{
    lv_pair a, b;
    lv_pair_init(&a, ya, ada, ada_len);
    lv_pair_init(&b, yb, adb, adb_len);
    if (mode == CPACE_SYMMETRIC) {
        int a_first = lv_pair_larger(&a, &b);
        sink_put(s, (const uint8_t *)"oc", 2);
        lv_pair_to(s, a_first ? &a : &b);
        lv_pair_to(s, a_first ? &b : &a);
    } else {
        lv_pair_to(s, &a);
        lv_pair_to(s, &b);
    }
}

static int valid_role(cpace_role r)
{
    return r == CPACE_INITIATOR || r == CPACE_RESPONDER || r == CPACE_SYMMETRIC;
}

chute_status cpace_transcript(cpace_role mode,
                              const uint8_t ya[CPACE_MSG_BYTES],
                              const uint8_t *ada, size_t ada_len,
                              const uint8_t yb[CPACE_MSG_BYTES],
                              const uint8_t *adb, size_t adb_len,
                              uint8_t *out, size_t out_cap, size_t *out_len)
{
    if (!valid_role(mode) || !ya || !yb || bad_span(ada, ada_len) ||
        bad_span(adb, adb_len) || bad_span(out, out_cap) || !out_len)
        return CHUTE_ERR_ARG;
    sink s = { NULL, out, out_cap, 0 };
    transcript_to(&s, mode, ya, ada, ada_len, yb, adb, adb_len);
    *out_len = s.len;
    return s.len > out_cap ? CHUTE_ERR_LIMIT : CHUTE_OK;
}

chute_status cpace_derive(cpace_role mode,
                          const uint8_t *sid, size_t sid_len,
                          const uint8_t k[CPACE_MSG_BYTES],
                          const uint8_t ya[CPACE_MSG_BYTES],
                          const uint8_t *ada, size_t ada_len,
                          const uint8_t yb[CPACE_MSG_BYTES],
                          const uint8_t *adb, size_t adb_len,
                          uint8_t isk_out[CPACE_ISK_BYTES],
                          uint8_t sid_out[CPACE_SID_OUT_BYTES])
{
    if (!valid_role(mode) || bad_span(sid, sid_len) || !k || !ya || !yb ||
        bad_span(ada, ada_len) || bad_span(adb, adb_len))
        return CHUTE_ERR_ARG;
    crypto_hash_sha512_state h;
    sink s = { &h, NULL, 0, 0 };

    if (isk_out) {
        crypto_hash_sha512_init(&h);
        sink_lv(&s, (const uint8_t *)DSI_ISK, sizeof DSI_ISK - 1);
        sink_lv(&s, sid, sid_len);
        sink_lv(&s, k, CPACE_MSG_BYTES);
        transcript_to(&s, mode, ya, ada, ada_len, yb, adb, adb_len);
        crypto_hash_sha512_final(&h, isk_out);
    }
    if (sid_out) {
        /* No length prefix on the label here: the draft's own definition. */
        crypto_hash_sha512_init(&h);
        sink_put(&s, (const uint8_t *)SID_OUT, sizeof SID_OUT - 1);
        transcript_to(&s, mode, ya, ada, ada_len, yb, adb, adb_len);
        crypto_hash_sha512_final(&h, sid_out);
    }
    sodium_memzero(&h, sizeof h);
    return CHUTE_OK;
}

/* ---- the state API -------------------------------------------------------- */

void cpace_abort(cpace_state *st)
{
    if (st)
        sodium_memzero(st, sizeof *st);
}

/* A scalar in [1, L): reducing it (padded to 64 bytes) leaves it unchanged. */
static int scalar_is_canonical_nonzero(const uint8_t s[CPACE_SCALAR_BYTES])
{
    uint8_t wide[crypto_core_ristretto255_NONREDUCEDSCALARBYTES] = { 0 };
    uint8_t reduced[crypto_core_ristretto255_SCALARBYTES];
    memcpy(wide, s, CPACE_SCALAR_BYTES);
    crypto_core_ristretto255_scalar_reduce(reduced, wide);
    int ok = sodium_memcmp(reduced, s, CPACE_SCALAR_BYTES) == 0 &&
             !sodium_is_zero(s, CPACE_SCALAR_BYTES);
    sodium_memzero(wide, sizeof wide);
    sodium_memzero(reduced, sizeof reduced);
    return ok;
}

static chute_status start(cpace_state *st, cpace_role role,
                          const uint8_t *prs, size_t prs_len,
                          const uint8_t *ci, size_t ci_len,
                          const uint8_t *sid, size_t sid_len,
                          const uint8_t *ad, size_t ad_len,
                          const uint8_t *scalar, uint8_t *msg_out)
{
    if (!st)
        return CHUTE_ERR_ARG;
    cpace_abort(st);
    if (!valid_role(role) || !msg_out || bad_span(prs, prs_len) ||
        bad_span(ci, ci_len) || bad_span(sid, sid_len) ||
        bad_span(ad, ad_len) || sid_len > CPACE_SID_MAX ||
        ad_len > CPACE_AD_MAX)
        return CHUTE_ERR_ARG;
    if (scalar && !scalar_is_canonical_nonzero(scalar))
        return CHUTE_ERR_ARG;

    uint8_t g[CPACE_MSG_BYTES];
    chute_status rc = cpace_generator(prs, prs_len, ci, ci_len, sid, sid_len, g);
    if (rc == CHUTE_OK) {
        if (scalar)
            memcpy(st->y, scalar, CPACE_SCALAR_BYTES);
        else
            crypto_core_ristretto255_scalar_random(st->y);
        rc = cpace_message_from_scalar(st->y, g, st->msg);
    }
    sodium_memzero(g, sizeof g);
    if (rc != CHUTE_OK) {
        cpace_abort(st);
        return rc;
    }
    st->role = role;
    if (sid_len)
        memcpy(st->sid, sid, sid_len);
    st->sid_len = sid_len;
    if (ad_len)
        memcpy(st->ad, ad, ad_len);
    st->ad_len = ad_len;
    st->stage = 1;
    memcpy(msg_out, st->msg, CPACE_MSG_BYTES);
    return CHUTE_OK;
}

chute_status cpace_start(cpace_state *st, cpace_role role,
                         const uint8_t *prs, size_t prs_len,
                         const uint8_t *ci, size_t ci_len,
                         const uint8_t *sid, size_t sid_len,
                         const uint8_t *ad, size_t ad_len,
                         uint8_t msg_out[CPACE_MSG_BYTES])
{
    return start(st, role, prs, prs_len, ci, ci_len, sid, sid_len, ad,
                 ad_len, NULL, msg_out);
}

chute_status cpace_start_with_scalar(cpace_state *st, cpace_role role,
                                     const uint8_t *prs, size_t prs_len,
                                     const uint8_t *ci, size_t ci_len,
                                     const uint8_t *sid, size_t sid_len,
                                     const uint8_t *ad, size_t ad_len,
                                     const uint8_t scalar[CPACE_SCALAR_BYTES],
                                     uint8_t msg_out[CPACE_MSG_BYTES])
{
    if (!scalar) {
        cpace_abort(st);
        return CHUTE_ERR_ARG;
    }
    return start(st, role, prs, prs_len, ci, ci_len, sid, sid_len, ad,
                 ad_len, scalar, msg_out);
}

chute_status cpace_finish(cpace_state *st,
                          const uint8_t peer_msg[CPACE_MSG_BYTES],
                          const uint8_t *peer_ad, size_t peer_ad_len,
                          cpace_keys *keys_out)
{
    if (!st)
        return CHUTE_ERR_ARG;
    if (st->stage != 1 || !peer_msg || !keys_out ||
        bad_span(peer_ad, peer_ad_len)) {
        cpace_abort(st);
        return CHUTE_ERR_ARG;
    }
    uint8_t k[CPACE_MSG_BYTES];
    chute_status rc = cpace_scalar_mult_vfy(st->y, peer_msg, k);
    if (rc == CHUTE_OK) {
        /* The responder's own message is the transcript's second half;
         * in the symmetric setting the order is decided inside. */
        int own_first = st->role != CPACE_RESPONDER;
        rc = cpace_derive(st->role, st->sid, st->sid_len, k,
                          own_first ? st->msg : peer_msg,
                          own_first ? st->ad : peer_ad,
                          own_first ? st->ad_len : peer_ad_len,
                          own_first ? peer_msg : st->msg,
                          own_first ? peer_ad : st->ad,
                          own_first ? peer_ad_len : st->ad_len,
                          keys_out->isk, keys_out->sid_out);
    }
    sodium_memzero(k, sizeof k);
    cpace_abort(st);
    if (rc != CHUTE_OK)
        sodium_memzero(keys_out, sizeof *keys_out);
    return rc;
}
