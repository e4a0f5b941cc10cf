/* test_age.c — age keys, round trips, streaming, random access and every
 * error path of lib/age*. The CCTV vectors are in test_age_vectors.c. */
#include <sodium.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "age.h"
#include "bech32.h"
#include "hkdf.h"
#include "unit.h"

/* --- helpers -------------------------------------------------------------- */

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void buf_put(struct buf *b, const uint8_t *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *grown = realloc(b->p, cap);
        if (!grown) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        b->p = grown;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

static uint8_t *pattern(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    if (!p)
        exit(2);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 131 + (i >> 16) * 7 + 3);
    return p;
}

/* Encrypts pt, pushing `push` bytes at a time through an output window of
 * `window` bytes. */
static chute_status encrypt_buf(const uint8_t *pt, size_t n,
                                const age_recipient *r, size_t nr,
                                size_t push, size_t window, struct buf *out,
                                uint8_t mac[AGE_MAC_BYTES])
{
    age_encryptor *e = NULL;
    chute_status st = age_encryptor_new(&e, r, nr);
    if (st != CHUTE_OK)
        return st;
    if (mac)
        age_encryptor_header_mac(e, mac);
    uint8_t *win = malloc(window);
    size_t pos = 0;
    bool done = false;
    while (st == CHUTE_OK && !done) {
        size_t k = n - pos < push ? n - pos : push;
        age_io io = {pt + pos, k, win, window};
        st = k ? age_encryptor_update(e, &io)
               : age_encryptor_finish(e, &io, &done);
        buf_put(out, win, window - io.out_len);
        pos += k - io.in_len;
    }
    free(win);
    age_encryptor_free(e);
    return st;
}

static chute_status decrypt_buf(const uint8_t *ct, size_t n,
                                const age_identity *ids, size_t nids,
                                size_t push, size_t window, struct buf *out,
                                uint8_t mac[AGE_MAC_BYTES])
{
    age_decryptor *d = NULL;
    chute_status st = age_decryptor_new(&d, ids, nids);
    if (st != CHUTE_OK)
        return st;
    uint8_t *win = malloc(window);
    size_t pos = 0;
    bool done = false;
    while (st == CHUTE_OK && !done) {
        size_t k = n - pos < push ? n - pos : push;
        age_io io = {ct + pos, k, win, window};
        st = k ? age_decryptor_update(d, &io)
               : age_decryptor_finish(d, &io, &done);
        buf_put(out, win, window - io.out_len);
        pos += k - io.in_len;
    }
    if (st == CHUTE_OK && mac)
        st = age_decryptor_header_mac(d, mac);
    free(win);
    age_decryptor_free(d);
    return st;
}

/* Decrypts all at once; returns the status, frees the output. */
static chute_status decrypt_status(const uint8_t *ct, size_t n,
                                   const age_identity *id)
{
    struct buf out = {0};
    chute_status st = decrypt_buf(ct, n, id, 1, n + 1, 1 << 20, &out, NULL);
    free(out.p);
    return st;
}

static size_t header_length(const uint8_t *ct, size_t n)
{
    age_header *h = NULL;
    size_t len = 0;
    if (age_header_parse(ct, n, &h, &len) != CHUTE_OK)
        return 0;
    age_header_free(h);
    return len;
}

static age_identity alice, bob, carol, mallory;
static age_recipient alice_r, bob_r, carol_r;

static void make_keys(void)
{
    age_identity_generate(&alice);
    age_identity_generate(&bob);
    age_identity_generate(&carol);
    age_identity_generate(&mallory);
    age_identity_recipient(&alice, &alice_r);
    age_identity_recipient(&bob, &bob_r);
    age_identity_recipient(&carol, &carol_r);
}

/* --- keys ----------------------------------------------------------------- */

static const char vector_identity[] =
    "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0";
static const char vector_recipient[] =
    "age1xmwwc06ly3ee5rytxm9mflaz2u56jjj36s0mypdrwsvlul66mv4q47ryef";

static void test_known_identity_gives_the_recipient_age_keygen_gives(void)
{
    age_identity id;
    age_recipient r;
    char s[AGE_RECIPIENT_STR_BYTES], back[AGE_IDENTITY_STR_BYTES];
    CHECK_EQ_INT(age_identity_parse(&id, vector_identity), CHUTE_OK);
    age_identity_recipient(&id, &r);
    CHECK_EQ_INT(age_recipient_encode(&r, s), CHUTE_OK);
    CHECK(strcmp(s, vector_recipient) == 0);
    CHECK_EQ_INT(age_identity_encode(&id, back), CHUTE_OK);
    CHECK(strcmp(back, vector_identity) == 0);
    age_recipient parsed;
    CHECK_EQ_INT(age_recipient_parse(&parsed, vector_recipient), CHUTE_OK);
    CHECK_MEM(parsed.public_key, r.public_key, 32);
    age_identity_wipe(&id);
}

static void test_generated_keys_encode_and_parse_back(void)
{
    char is[AGE_IDENTITY_STR_BYTES], rs[AGE_RECIPIENT_STR_BYTES];
    age_identity id2;
    age_recipient r2;
    CHECK_EQ_INT(age_identity_encode(&alice, is), CHUTE_OK);
    CHECK_EQ_INT(age_recipient_encode(&alice_r, rs), CHUTE_OK);
    CHECK_EQ_INT(strlen(is), 74);
    CHECK_EQ_INT(strlen(rs), 62);
    CHECK(strncmp(is, "AGE-SECRET-KEY-1", 16) == 0);
    CHECK(strncmp(rs, "age1", 4) == 0);
    CHECK_EQ_INT(age_identity_parse(&id2, is), CHUTE_OK);
    CHECK_MEM(id2.secret, alice.secret, 32);
    CHECK_MEM(id2.public_key, alice.public_key, 32);
    CHECK_EQ_INT(age_recipient_parse(&r2, rs), CHUTE_OK);
    CHECK_MEM(r2.public_key, alice_r.public_key, 32);
    CHECK(memcmp(alice.secret, bob.secret, 32) != 0);
}

static void test_key_parsing_refuses_bad_strings(void)
{
    age_identity id;
    age_recipient r;
    char s[128];
    /* a changed character breaks the checksum */
    snprintf(s, sizeof s, "%s", vector_recipient);
    s[20] = s[20] == 'q' ? 'p' : 'q';
    CHECK_EQ_INT(age_recipient_parse(&r, s), CHUTE_ERR_MALFORMED);
    snprintf(s, sizeof s, "%s", vector_identity);
    s[30] = s[30] == 'Q' ? 'P' : 'Q';
    CHECK_EQ_INT(age_identity_parse(&id, s), CHUTE_ERR_MALFORMED);
    /* the wrong kind of key, or the wrong case */
    CHECK_EQ_INT(age_recipient_parse(&r, vector_identity), CHUTE_ERR_MALFORMED);
    CHECK_EQ_INT(age_identity_parse(&id, vector_recipient), CHUTE_ERR_MALFORMED);
    snprintf(s, sizeof s, "%s", vector_identity);
    for (char *p = s; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    CHECK_EQ_INT(age_identity_parse(&id, s), CHUTE_ERR_MALFORMED);
    snprintf(s, sizeof s, "%s", vector_recipient);
    for (char *p = s; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    CHECK_EQ_INT(age_recipient_parse(&r, s), CHUTE_ERR_MALFORMED);
    snprintf(s, sizeof s, "%s", vector_recipient);
    s[10] = (char)(s[10] - 32); /* mixed case */
    CHECK_EQ_INT(age_recipient_parse(&r, s), CHUTE_ERR_MALFORMED);
    /* another HRP with a valid checksum */
    uint8_t key[32] = {0};
    char other[128];
    CHECK_EQ_INT(bech32_encode(other, sizeof other, "agf", key, 32), CHUTE_OK);
    CHECK_EQ_INT(age_recipient_parse(&r, other), CHUTE_ERR_MALFORMED);
    /* the right HRP, the wrong length */
    CHECK_EQ_INT(bech32_encode(other, sizeof other, "age", key, 31), CHUTE_OK);
    CHECK_EQ_INT(age_recipient_parse(&r, other), CHUTE_ERR_MALFORMED);
    CHECK_EQ_INT(age_recipient_parse(&r, ""), CHUTE_ERR_MALFORMED);
    CHECK_EQ_INT(age_identity_parse(&id, " " "AGE-SECRET-KEY-1"),
                 CHUTE_ERR_MALFORMED);
    /* hybrid post-quantum keys are refused as unsupported */
    CHECK_EQ_INT(age_recipient_parse(&r, "age1pq1qqqqqqq"),
                 CHUTE_ERR_UNSUPPORTED);
    CHECK_EQ_INT(age_identity_parse(&id, "AGE-SECRET-KEY-PQ-1QQQQQQ"),
                 CHUTE_ERR_UNSUPPORTED);
    CHECK_EQ_INT(age_recipient_parse(NULL, vector_recipient), CHUTE_ERR_ARG);
}

/* --- round trips ---------------------------------------------------------- */

static void round_trip(size_t n, const age_recipient *r, size_t nr,
                       const age_identity *ids, size_t nids)
{
    uint8_t *pt = pattern(n);
    struct buf ct = {0};
    uint8_t mac_e[AGE_MAC_BYTES], mac_d[AGE_MAC_BYTES];
    CHECK_EQ_INT(encrypt_buf(pt, n, r, nr, 1 << 20, 1 << 20, &ct, mac_e),
                 CHUTE_OK);
    size_t hl = header_length(ct.p, ct.len);
    CHECK(hl > 0);
    CHECK_EQ_INT(ct.len, hl + age_payload_size(n));
    for (size_t i = 0; i < nids; i++) {
        struct buf back = {0};
        CHECK_EQ_INT(decrypt_buf(ct.p, ct.len, &ids[i], 1, 1 << 20, 1 << 20,
                                 &back, mac_d), CHUTE_OK);
        CHECK_EQ_INT(back.len, n);
        CHECK(back.len == n && (n == 0 || memcmp(back.p, pt, n) == 0));
        CHECK_MEM(mac_d, mac_e, AGE_MAC_BYTES);
        free(back.p);
    }
    CHECK_EQ_INT(decrypt_status(ct.p, ct.len, &mallory), CHUTE_ERR_NO_MATCH);
    free(ct.p);
    free(pt);
}

static const size_t sizes[] = {0, 1, 65535, 65536, 65537, 131072,
                               3 * 1024 * 1024 + 123};

static void test_round_trip_one_recipient_all_sizes(void)
{
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        round_trip(sizes[i], &alice_r, 1, &alice, 1);
}

static void test_round_trip_three_recipients_each_can_decrypt(void)
{
    age_recipient rs[3] = {alice_r, bob_r, carol_r};
    age_identity ids[3] = {alice, bob, carol};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        round_trip(sizes[i], rs, 3, ids, 3);
}

static void test_low_order_recipient_is_refused_when_encrypting(void)
{
    /* All zeros is a valid bech32 recipient but a low-order point: the
     * shared secret would be zero, so wrapping to it must fail. */
    age_recipient zero = {{0}}, rs[2] = {alice_r, {{0}}};
    char s[AGE_RECIPIENT_STR_BYTES];
    age_recipient parsed;
    CHECK_EQ_INT(age_recipient_encode(&zero, s), CHUTE_OK);
    CHECK_EQ_INT(age_recipient_parse(&parsed, s), CHUTE_OK);
    age_encryptor *e = NULL;
    CHECK_EQ_INT(age_encryptor_new(&e, &parsed, 1), CHUTE_ERR_CRYPTO);
    CHECK(e == NULL);
    CHECK_EQ_INT(age_encryptor_new(&e, rs, 2), CHUTE_ERR_CRYPTO);
    CHECK(e == NULL);
}

static void test_decryptor_tries_every_identity_it_holds(void)
{
    uint8_t *pt = pattern(1000);
    struct buf ct = {0}, back = {0};
    age_identity ids[3] = {mallory, carol, bob};
    CHECK_EQ_INT(encrypt_buf(pt, 1000, &bob_r, 1, 99999, 99999, &ct, NULL),
                 CHUTE_OK);
    CHECK_EQ_INT(decrypt_buf(ct.p, ct.len, ids, 3, 99999, 99999, &back,
                             NULL), CHUTE_OK);
    CHECK(back.len == 1000 && memcmp(back.p, pt, 1000) == 0);
    free(back.p);
    back = (struct buf){0};
    CHECK_EQ_INT(decrypt_buf(ct.p, ct.len, ids, 0, 99999, 99999, &back,
                             NULL), CHUTE_ERR_NO_MATCH);
    free(back.p);
    free(ct.p);
    free(pt);
}

static void test_streaming_with_odd_push_and_window_sizes(void)
{
    const size_t n = 3 * 65536 + 1000;
    uint8_t *pt = pattern(n);
    const size_t pushes[] = {1, 7, 65537, 65536, 65552, 300000};
    const size_t windows[] = {1, 13, 65536, 65552, 70000, 1 << 20};
    struct buf ref = {0};
    CHECK_EQ_INT(encrypt_buf(pt, n, &alice_r, 1, n, 1 << 20, &ref, NULL),
                 CHUTE_OK);
    for (size_t i = 0; i < sizeof pushes / sizeof *pushes; i++) {
        size_t push = pushes[i], window = windows[i];
        if (push == 1 && window == 1)
            window = 3; /* keep the byte-by-byte case quick enough */
        struct buf ct = {0}, back = {0}, back2 = {0};
        CHECK_EQ_INT(encrypt_buf(pt, n, &alice_r, 1, push, window, &ct, NULL),
                     CHUTE_OK);
        CHECK_EQ_INT(ct.len, ref.len);
        CHECK_EQ_INT(decrypt_buf(ct.p, ct.len, &alice, 1, push, window,
                                 &back, NULL), CHUTE_OK);
        CHECK(back.len == n && memcmp(back.p, pt, n) == 0);
        /* and the reference ciphertext, split another way */
        size_t j = (i + 1) % (sizeof pushes / sizeof *pushes);
        CHECK_EQ_INT(decrypt_buf(ref.p, ref.len, &alice, 1, pushes[j],
                                 windows[j] == 1 ? 3 : windows[j], &back2,
                                 NULL), CHUTE_OK);
        CHECK(back2.len == n && memcmp(back2.p, pt, n) == 0);
        free(ct.p);
        free(back.p);
        free(back2.p);
    }
    free(ref.p);
    free(pt);
}

/* --- random access -------------------------------------------------------- */

static void random_access(size_t n)
{
    uint8_t *pt = pattern(n);
    struct buf ct = {0};
    CHECK_EQ_INT(encrypt_buf(pt, n, &bob_r, 1, 4096, 5000, &ct, NULL),
                 CHUTE_OK);
    age_header *h = NULL;
    size_t hl = 0;
    uint8_t file_key[AGE_FILE_KEY_BYTES];
    CHECK_EQ_INT(age_header_parse(ct.p, ct.len, &h, &hl), CHUTE_OK);
    CHECK_EQ_INT(age_header_unwrap(h, &bob, 1, file_key), CHUTE_OK);
    age_header_free(h);
    age_payload_key pk;
    CHECK_EQ_INT(age_payload_key_derive(&pk, file_key, ct.p + hl), CHUTE_OK);

    uint64_t payload = ct.len - hl, size = 0, chunks = 0;
    CHECK_EQ_INT(age_payload_geometry(payload, &size, &chunks), CHUTE_OK);
    CHECK_EQ_INT(size, n);
    CHECK_EQ_INT(chunks, n == 0 ? 1 : (n + 65535) / 65536);
    static uint8_t out[AGE_CHUNK_BYTES];
    /* backwards, as a reader seeking around would */
    for (uint64_t i = chunks; i-- > 0;) {
        age_chunk_span sp;
        size_t got = 0;
        CHECK_EQ_INT(age_chunk_locate(payload, i, &sp), CHUTE_OK);
        CHECK_EQ_INT(sp.last, i == chunks - 1);
        CHECK_EQ_INT(sp.pt_offset, i * AGE_CHUNK_BYTES);
        CHECK_EQ_INT(age_chunk_index(sp.pt_offset), i);
        CHECK_EQ_INT(sp.offset + sp.length <= payload, 1);
        CHECK_EQ_INT(age_chunk_decrypt(&pk, i, sp.last, ct.p + hl + sp.offset,
                                       sp.length, out, &got), CHUTE_OK);
        CHECK_EQ_INT(got, sp.pt_length);
        CHECK(got == 0 || memcmp(out, pt + sp.pt_offset, got) == 0);
        /* the wrong index or last flag does not authenticate */
        if (sp.length == AGE_CHUNK_CT_BYTES)
            CHECK_EQ_INT(age_chunk_decrypt(&pk, i, !sp.last,
                                           ct.p + hl + sp.offset, sp.length,
                                           out, &got), CHUTE_ERR_AUTH);
        CHECK_EQ_INT(age_chunk_decrypt(&pk, i + 1, sp.last,
                                       ct.p + hl + sp.offset, sp.length, out,
                                       &got), i + 1 == chunks && sp.length ==
                         AGE_TAG_BYTES ? CHUTE_ERR_MALFORMED : CHUTE_ERR_AUTH);
    }
    age_chunk_span sp;
    CHECK_EQ_INT(age_chunk_locate(payload, chunks, &sp), CHUTE_ERR_ARG);
    age_payload_key_wipe(&pk);
    free(ct.p);
    free(pt);
}

static void test_random_access_of_every_chunk_matches_plaintext(void)
{
    random_access(0);
    random_access(1);
    random_access(65536);
    random_access(5 * 65536 + 100);
    random_access(4 * 65536);
}

/* Feed the header and nonce, skip `skip` chunks, feed the rest: the
 * output is the plaintext from chunk `skip` on, and the end verifies. */
static void resume_after(size_t n, uint64_t skip)
{
    uint8_t *pt = pattern(n);
    struct buf ct = {0}, out = {0};
    CHECK_EQ_INT(encrypt_buf(pt, n, &alice_r, 1, n + 1, 1 << 20, &ct, NULL), CHUTE_OK);
    size_t start = header_length(ct.p, ct.len) + AGE_NONCE_BYTES;
    age_decryptor *d = NULL;
    CHECK_EQ_INT(age_decryptor_new(&d, &alice, 1), CHUTE_OK);
    uint8_t *win = malloc(1 << 20);
    uint64_t at = 0;
    CHECK_EQ_INT(age_decryptor_payload_start(d, &at), CHUTE_ERR_NOT_FOUND);
    CHECK_EQ_INT(age_decryptor_skip_chunks(d, skip), CHUTE_ERR_ARG);   /* no header yet */
    age_io io = {ct.p, start, win, 1 << 20};
    CHECK_EQ_INT(age_decryptor_update(d, &io), CHUTE_OK);
    CHECK_EQ_INT(io.in_len, 0);
    CHECK_EQ_INT(age_decryptor_payload_start(d, &at), CHUTE_OK);
    CHECK_EQ_INT(at, start);
    CHECK_EQ_INT(age_decryptor_skip_chunks(d, skip), CHUTE_OK);
    size_t from = start + skip * AGE_CHUNK_CT_BYTES;
    io = (age_io){ct.p + from, ct.len - from, win, 1 << 20};
    CHECK_EQ_INT(age_decryptor_update(d, &io), CHUTE_OK);
    buf_put(&out, win, (1 << 20) - io.out_len);
    bool done = false;
    while (!done) {
        io = (age_io){NULL, 0, win, 1 << 20};
        if (age_decryptor_finish(d, &io, &done) != CHUTE_OK) { CHECK(0); break; }
        buf_put(&out, win, (1 << 20) - io.out_len);
    }
    size_t off = skip * AGE_CHUNK_BYTES;
    CHECK(out.len == n - off && memcmp(out.p, pt + off, out.len) == 0);
    /* skipping is only allowed before any payload */
    CHECK_EQ_INT(age_decryptor_skip_chunks(d, 1), CHUTE_ERR_ARG);
    age_decryptor_free(d);
    free(win); free(pt); free(ct.p); free(out.p);
}

static void test_decryptor_resumes_at_a_chunk_boundary(void)
{
    resume_after(5 * 65536 + 100, 0);
    resume_after(5 * 65536 + 100, 3);
    resume_after(5 * 65536 + 100, 5);       /* only the short last chunk left */
    resume_after(4 * 65536, 3);             /* only the full last chunk left */
    /* a wrong count does not go unnoticed: chunk 2 opened as chunk 3 */
    uint8_t *pt = pattern(5 * 65536);
    struct buf ct = {0}, out = {0};
    CHECK_EQ_INT(encrypt_buf(pt, 5 * 65536, &alice_r, 1, 1 << 20, 1 << 20, &ct, NULL), CHUTE_OK);
    size_t start = header_length(ct.p, ct.len) + AGE_NONCE_BYTES;
    age_decryptor *d = NULL;
    CHECK_EQ_INT(age_decryptor_new(&d, &alice, 1), CHUTE_OK);
    uint8_t *win = malloc(1 << 20);
    age_io io = {ct.p, start, win, 1 << 20};
    CHECK_EQ_INT(age_decryptor_update(d, &io), CHUTE_OK);
    CHECK_EQ_INT(age_decryptor_skip_chunks(d, 3), CHUTE_OK);
    size_t from = start + 2 * AGE_CHUNK_CT_BYTES;
    io = (age_io){ct.p + from, ct.len - from, win, 1 << 20};
    CHECK_EQ_INT(age_decryptor_update(d, &io), CHUTE_ERR_AUTH);
    age_decryptor_free(d);
    free(win); free(pt); free(ct.p); free(out.p);
}

static void test_payload_geometry_refuses_impossible_lengths(void)
{
    uint64_t size, chunks;
    CHECK_EQ_INT(age_payload_geometry(0, &size, &chunks), CHUTE_ERR_MALFORMED);
    CHECK_EQ_INT(age_payload_geometry(31, &size, &chunks), CHUTE_ERR_MALFORMED);
    CHECK_EQ_INT(age_payload_geometry(32, &size, &chunks), CHUTE_OK);
    CHECK_EQ_INT(size, 0);
    CHECK_EQ_INT(chunks, 1);
    /* one full chunk and an empty one after it cannot happen */
    CHECK_EQ_INT(age_payload_geometry(16 + 65552 + 16, &size, &chunks),
                 CHUTE_ERR_MALFORMED);
    /* a chunk shorter than a tag */
    CHECK_EQ_INT(age_payload_geometry(16 + 65552 + 5, &size, &chunks),
                 CHUTE_ERR_MALFORMED);
    CHECK_EQ_INT(age_payload_geometry(16 + 2 * 65552, &size, &chunks),
                 CHUTE_OK);
    CHECK_EQ_INT(size, 2 * 65536);
    CHECK_EQ_INT(chunks, 2);
    CHECK_EQ_INT(age_payload_geometry(16 + 65552 + 17, &size, &chunks),
                 CHUTE_OK);
    CHECK_EQ_INT(size, 65537);
    CHECK_EQ_INT(chunks, 2);
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        CHECK_EQ_INT(age_payload_geometry(age_payload_size(sizes[i]), &size,
                                          NULL), CHUTE_OK);
        CHECK_EQ_INT(size, sizes[i]);
    }
}

/* --- errors --------------------------------------------------------------- */

static struct buf sample(size_t n)
{
    uint8_t *pt = pattern(n);
    struct buf ct = {0};
    CHECK_EQ_INT(encrypt_buf(pt, n, &alice_r, 1, n + 1, 1 << 20, &ct, NULL),
                 CHUTE_OK);
    free(pt);
    return ct;
}

static void test_wrong_identity_is_no_match(void)
{
    struct buf ct = sample(100);
    CHECK_EQ_INT(decrypt_status(ct.p, ct.len, &bob), CHUTE_ERR_NO_MATCH);
    free(ct.p);
}

static void test_tampered_header_is_refused(void)
{
    struct buf ct = sample(100);
    size_t hl = header_length(ct.p, ct.len);
    const char *text = (const char *)ct.p;
    const char *body = strchr(text, '\n');        /* end of version line */
    body = strchr(body + 1, '\n') + 1;            /* stanza body line */
    const char *mac = strstr(text, "\n--- ") + 5; /* MAC characters */
    size_t body_at = (size_t)(body - text), mac_at = (size_t)(mac - text);

    /* A changed character of the wrapped file key: no stanza opens. */
    ct.p[body_at] = ct.p[body_at] == 'A' ? 'B' : 'A';
    CHECK_EQ_INT(decrypt_status(ct.p, ct.len, &alice), CHUTE_ERR_NO_MATCH);
    ct.p[body_at] = (uint8_t)text[body_at] == 'A' ? 'B' : 'A';
    free(ct.p);

    /* A changed MAC: the file key opens but the MAC does not verify. */
    ct = sample(100);
    ct.p[mac_at] = ct.p[mac_at] == 'A' ? 'B' : 'A';
    CHECK_EQ_INT(decrypt_status(ct.p, ct.len, &alice), CHUTE_ERR_HMAC);
    free(ct.p);

    /* A changed byte of the version line: not an age v1 file. */
    ct = sample(100);
    ct.p[3] ^= 1;
    CHECK_EQ_INT(decrypt_status(ct.p, ct.len, &alice), CHUTE_ERR_MALFORMED);
    free(ct.p);
    ct = sample(100);
    ct.p[20] = '2'; /* age-encryption.org/v2 */
    CHECK_EQ_INT(decrypt_status(ct.p, ct.len, &alice),
                 CHUTE_ERR_UNSUPPORTED);
    free(ct.p);

    /* A header byte turned into a CR, a space or non-canonical base64. */
    ct = sample(100);
    ct.p[hl - 1] = '\r';
    CHECK_EQ_INT(decrypt_status(ct.p, ct.len, &alice), CHUTE_ERR_MALFORMED);
    free(ct.p);
    ct = sample(100);
    ct.p[mac_at - 1] = 'x'; /* "---x" */
    CHECK_EQ_INT(decrypt_status(ct.p, ct.len, &alice), CHUTE_ERR_MALFORMED);
    free(ct.p);
    ct = sample(100);
    /* the 43rd MAC character carries 4 unused bits: setting one of them
     * keeps the bytes but makes the encoding non-canonical */
    {
        static const char b64[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        uint8_t *last = &ct.p[mac_at + 42];
        int v = (int)(strchr(b64, *last) - b64);
        *last = (uint8_t)b64[v | 1];
        CHECK_EQ_INT(decrypt_status(ct.p, ct.len, &alice),
                     CHUTE_ERR_MALFORMED);
    }
    free(ct.p);
}

static void test_tampered_or_cut_payload_is_refused(void)
{
    const size_t n = 2 * 65536 + 500;
    struct buf ct = sample(n);
    size_t hl = header_length(ct.p, ct.len);
    size_t first = hl + AGE_NONCE_BYTES; /* first chunk */

    /* a flipped byte in any chunk */
    size_t at[] = {first + 10, first + AGE_CHUNK_CT_BYTES + 5, ct.len - 1};
    for (size_t i = 0; i < 3; i++) {
        ct.p[at[i]] ^= 0x40;
        CHECK_EQ_INT(decrypt_status(ct.p, ct.len, &alice), CHUTE_ERR_AUTH);
        ct.p[at[i]] ^= 0x40;
    }
    /* a flipped nonce byte changes every payload key */
    ct.p[hl] ^= 1;
    CHECK_EQ_INT(decrypt_status(ct.p, ct.len, &alice), CHUTE_ERR_AUTH);
    ct.p[hl] ^= 1;
    CHECK_EQ_INT(decrypt_status(ct.p, ct.len, &alice), CHUTE_OK);

    /* cut at a chunk boundary: the last chunk is missing */
    CHECK_EQ_INT(decrypt_status(ct.p, first + 2 * AGE_CHUNK_CT_BYTES, &alice),
                 CHUTE_ERR_TRUNCATED);
    CHECK_EQ_INT(decrypt_status(ct.p, first, &alice), CHUTE_ERR_TRUNCATED);
    /* cut inside a chunk: the short piece is not a valid last chunk */
    CHECK_EQ_INT(decrypt_status(ct.p, ct.len - 1, &alice), CHUTE_ERR_AUTH);
    CHECK_EQ_INT(decrypt_status(ct.p, first + 100, &alice), CHUTE_ERR_AUTH);
    CHECK_EQ_INT(decrypt_status(ct.p, first + 7, &alice),
                 CHUTE_ERR_TRUNCATED);
    /* cut inside the nonce or the header */
    CHECK_EQ_INT(decrypt_status(ct.p, hl + 5, &alice), CHUTE_ERR_MALFORMED);
    CHECK_EQ_INT(decrypt_status(ct.p, hl, &alice), CHUTE_ERR_MALFORMED);
    CHECK_EQ_INT(decrypt_status(ct.p, hl - 1, &alice), CHUTE_ERR_MALFORMED);
    CHECK_EQ_INT(decrypt_status(ct.p, 0, &alice), CHUTE_ERR_MALFORMED);

    /* trailing data after the last chunk */
    uint8_t extra = 0;
    buf_put(&ct, &extra, 1);
    CHECK_EQ_INT(decrypt_status(ct.p, ct.len, &alice), CHUTE_ERR_AUTH);
    free(ct.p);
    /* ... also when the last chunk is full, so it can be opened first */
    ct = sample(65536);
    buf_put(&ct, &extra, 1);
    CHECK_EQ_INT(decrypt_status(ct.p, ct.len, &alice), CHUTE_ERR_MALFORMED);
    free(ct.p);
}

static void test_swapped_chunks_do_not_authenticate(void)
{
    struct buf ct = sample(3 * 65536 + 1);
    size_t first = header_length(ct.p, ct.len) + AGE_NONCE_BYTES;
    static uint8_t tmp[AGE_CHUNK_CT_BYTES];
    uint8_t *a = ct.p + first, *b = a + AGE_CHUNK_CT_BYTES;
    memcpy(tmp, a, sizeof tmp);
    memcpy(a, b, sizeof tmp);
    memcpy(b, tmp, sizeof tmp);
    CHECK_EQ_INT(decrypt_status(ct.p, ct.len, &alice), CHUTE_ERR_AUTH);
    free(ct.p);
}

static void test_released_plaintext_before_an_error_is_authentic(void)
{
    const size_t n = 3 * 65536 + 10;
    uint8_t *pt = pattern(n);
    struct buf ct = {0}, back = {0};
    CHECK_EQ_INT(encrypt_buf(pt, n, &alice_r, 1, n, 1 << 20, &ct, NULL),
                 CHUTE_OK);
    size_t first = header_length(ct.p, ct.len) + AGE_NONCE_BYTES;
    ct.p[first + 2 * AGE_CHUNK_CT_BYTES + 3] ^= 1; /* third chunk */
    CHECK_EQ_INT(decrypt_buf(ct.p, ct.len, &alice, 1, 1000, 777, &back,
                             NULL), CHUTE_ERR_AUTH);
    CHECK_EQ_INT(back.len, 2 * 65536);
    CHECK(memcmp(back.p, pt, back.len) == 0);
    free(back.p);
    free(ct.p);
    free(pt);
}

static void test_errors_are_sticky_and_calls_after_finish_refused(void)
{
    struct buf ct = sample(10);
    age_decryptor *d = NULL;
    uint8_t out[64], mac[AGE_MAC_BYTES];
    bool done = false;
    CHECK_EQ_INT(age_decryptor_new(&d, &bob, 1), CHUTE_OK);
    CHECK_EQ_INT(age_decryptor_header_mac(d, mac), CHUTE_ERR_NOT_FOUND);
    age_io io = {ct.p, ct.len, out, sizeof out};
    CHECK_EQ_INT(age_decryptor_update(d, &io), CHUTE_ERR_NO_MATCH);
    io = (age_io){ct.p, ct.len, out, sizeof out};
    CHECK_EQ_INT(age_decryptor_update(d, &io), CHUTE_ERR_NO_MATCH);
    CHECK_EQ_INT(age_decryptor_finish(d, &io, &done), CHUTE_ERR_NO_MATCH);
    CHECK(!done);
    age_decryptor_free(d);

    age_encryptor *e = NULL;
    CHECK_EQ_INT(age_encryptor_new(&e, &alice_r, 1), CHUTE_OK);
    do {
        io = (age_io){NULL, 0, out, sizeof out};
        CHECK_EQ_INT(age_encryptor_finish(e, &io, &done), CHUTE_OK);
    } while (!done);
    io = (age_io){out, 1, out, sizeof out};
    CHECK_EQ_INT(age_encryptor_update(e, &io), CHUTE_ERR_ARG);
    age_encryptor_free(e);
    CHECK_EQ_INT(age_encryptor_new(&e, &alice_r, 0), CHUTE_ERR_ARG);
    CHECK(e == NULL);
    free(ct.p);
}

/* --- the header on its own ------------------------------------------------ */

static void test_header_parse_asks_for_more_bytes_then_succeeds(void)
{
    struct buf ct = sample(0);
    size_t hl = header_length(ct.p, ct.len);
    for (size_t cut = 1; cut < hl; cut++) {
        age_header *h = NULL;
        size_t len = 0;
        CHECK_EQ_INT(age_header_parse(ct.p, cut, &h, &len),
                     CHUTE_ERR_TRUNCATED);
        CHECK(h == NULL);
    }
    age_header *h = NULL;
    size_t len = 0;
    CHECK_EQ_INT(age_header_parse(ct.p, ct.len, &h, &len), CHUTE_OK);
    CHECK_EQ_INT(len, hl);
    CHECK_EQ_INT(age_header_stanza_count(h), 1);
    age_header_free(h);
    /* not age at all is refused from the first byte */
    CHECK_EQ_INT(age_header_parse((const uint8_t *)"x", 1, &h, &len),
                 CHUTE_ERR_MALFORMED);
    free(ct.p);
}

static void test_header_longer_than_the_limit_is_refused(void)
{
    size_t n = AGE_HEADER_MAX + 10;
    uint8_t *big = malloc(n);
    memcpy(big, "age-encryption.org/v1\n-> a\n", 27);
    memset(big + 27, 'A', n - 27); /* one endless body line */
    age_header *h = NULL;
    size_t len;
    CHECK_EQ_INT(age_header_parse(big, n, &h, &len), CHUTE_ERR_MALFORMED);
    memset(big + 22, 'A', n - 22);
    memcpy(big + 22, "-> ", 3); /* one endless argument line */
    CHECK_EQ_INT(age_header_parse(big, n, &h, &len), CHUTE_ERR_LIMIT);
    age_identity ids[1] = {alice};
    struct buf out = {0};
    CHECK_EQ_INT(decrypt_buf(big, n, ids, 1, 4096, 4096, &out, NULL),
                 CHUTE_ERR_LIMIT);
    free(out.p);
    free(big);
}

/* A header of ~10,000 stanzas of one byte each, within the size limit:
 * parsed whole at every line it took 20 s of CPU before anything was
 * authenticated. The child has 10 CPU-s; it needs a few milliseconds. */
static void test_a_header_of_many_tiny_stanzas_costs_one_parse(void)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct rlimit cpu = { 10, 10 };
        setrlimit(RLIMIT_CPU, &cpu);
        size_t n = 0, cap = AGE_HEADER_MAX + 64;
        uint8_t *hdr = malloc(cap);
        if (!hdr) _exit(2);
        n += (size_t)sprintf((char *)hdr, "age-encryption.org/v1\n");
        while (n + 6 + 48 < AGE_HEADER_MAX) { memcpy(hdr + n, "-> a\n\n", 6); n += 6; }
        memcpy(hdr + n, "--- ", 4);
        memset(hdr + n + 4, 'A', 43);
        hdr[n + 47] = '\n';
        n += 48;
        memset(hdr + n, 0, 16 + 17);   /* nonce and a chunk */
        n += 33;
        struct buf out = {0};
        age_identity ids[1] = {alice};
        chute_status st = decrypt_buf(hdr, n, ids, 1, 1, 4096, &out, NULL);
        _exit(st == CHUTE_ERR_NO_MATCH ? 0 : 1);
    }
    int status = 0;
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    CHECK(!WIFSIGNALED(status));          /* SIGXCPU: quadratic again */
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_a_line_no_header_can_hold_is_refused_at_once(void)
{
    static const char *bad[] = {
        "age-encryption.org/v1\n-> X25519 abc\nnot base64!\n",
        "age-encryption.org/v1\n-> a\n"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",   /* 65 */
        "age-encryption.org/v1\n-- MAC\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        age_decryptor *d = NULL;
        CHECK_EQ_INT(age_decryptor_new(&d, &alice, 1), CHUTE_OK);
        uint8_t out[64];
        age_io io = { (const uint8_t *)bad[i], strlen(bad[i]), out, sizeof out };
        /* refused with what arrived so far, not after 64 KiB more */
        CHECK_EQ_INT(age_decryptor_update(d, &io), CHUTE_ERR_MALFORMED);
        age_decryptor_free(d);
    }
}

static void test_header_mac_is_the_same_everywhere(void)
{
    struct buf ct = {0}, back = {0};
    uint8_t *pt = pattern(5);
    uint8_t mac_e[AGE_MAC_BYTES], mac_d[AGE_MAC_BYTES];
    CHECK_EQ_INT(encrypt_buf(pt, 5, &alice_r, 1, 5, 100, &ct, mac_e),
                 CHUTE_OK);
    CHECK_EQ_INT(decrypt_buf(ct.p, ct.len, &alice, 1, 5, 100, &back, mac_d),
                 CHUTE_OK);
    age_header *h = NULL;
    size_t hl;
    CHECK_EQ_INT(age_header_parse(ct.p, ct.len, &h, &hl), CHUTE_OK);
    CHECK_MEM(age_header_mac(h), mac_e, AGE_MAC_BYTES);
    CHECK_MEM(mac_d, mac_e, AGE_MAC_BYTES);
    age_header_free(h);
    /* and two encryptions of the same bytes differ */
    struct buf ct2 = {0};
    uint8_t mac2[AGE_MAC_BYTES];
    CHECK_EQ_INT(encrypt_buf(pt, 5, &alice_r, 1, 5, 100, &ct2, mac2),
                 CHUTE_OK);
    CHECK(memcmp(mac2, mac_e, AGE_MAC_BYTES) != 0);
    free(ct.p);
    free(ct2.p);
    free(back.p);
    free(pt);
}

static void test_scrypt_stanza_is_unsupported(void)
{
    /* Built from an X25519 file: put an scrypt stanza first. */
    struct buf ct = sample(3);
    struct buf f = {0};
    const char *scrypt = "-> scrypt c2FsdHNhbHRzYWx0c2FsdA 18\n"
                         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n";
    buf_put(&f, ct.p, 22);
    buf_put(&f, (const uint8_t *)scrypt, strlen(scrypt));
    buf_put(&f, ct.p + 22, ct.len - 22);
    age_header *h = NULL;
    size_t hl;
    uint8_t key[AGE_FILE_KEY_BYTES];
    CHECK_EQ_INT(age_header_parse(f.p, f.len, &h, &hl), CHUTE_OK);
    CHECK_EQ_INT(age_header_stanza_count(h), 2);
    CHECK_EQ_INT(age_header_unwrap(h, &alice, 1, key), CHUTE_ERR_UNSUPPORTED);
    age_header_free(h);
    CHECK_EQ_INT(decrypt_status(f.p, f.len, &alice), CHUTE_ERR_UNSUPPORTED);
    free(f.p);
    free(ct.p);
}

/* Inserts `stanza` after the version line and re-MACs the header with
 * the file key, as a sender that knows it would. */
static struct buf insert_stanza(const struct buf *ct, const char *stanza,
                                const age_identity *id)
{
    struct buf f = {0};
    age_header *h = NULL;
    size_t hl = 0;
    uint8_t key[AGE_FILE_KEY_BYTES], hk[32], mac[32];
    CHECK_EQ_INT(age_header_parse(ct->p, ct->len, &h, &hl), CHUTE_OK);
    CHECK_EQ_INT(age_header_unwrap(h, id, 1, key), CHUTE_OK);
    age_header_free(h);
    buf_put(&f, ct->p, 22);
    buf_put(&f, (const uint8_t *)stanza, strlen(stanza));
    buf_put(&f, ct->p + 22, hl - 22 - 45); /* up to and including "---" */
    CHECK_EQ_INT(hkdf_sha256(hk, 32, NULL, 0, key, sizeof key,
                             (const uint8_t *)"header", 6), CHUTE_OK);
    crypto_auth_hmacsha256(mac, f.p, f.len, hk);
    char b64[64];
    sodium_bin2base64(b64, sizeof b64, mac, 32,
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    buf_put(&f, (const uint8_t *)" ", 1);
    buf_put(&f, (const uint8_t *)b64, 43);
    buf_put(&f, (const uint8_t *)"\n", 1);
    buf_put(&f, ct->p + hl, ct->len - hl);
    return f;
}

static void test_unknown_stanzas_are_skipped_but_covered_by_the_mac(void)
{
    struct buf ct = {0}, back = {0};
    uint8_t *pt = pattern(3);
    CHECK_EQ_INT(encrypt_buf(pt, 3, &alice_r, 1, 3, 1000, &ct, NULL),
                 CHUTE_OK);
    const char *grease = "-> grease x y\nAAAA\n";
    struct buf f = insert_stanza(&ct, grease, &alice);
    CHECK_EQ_INT(decrypt_buf(f.p, f.len, &alice, 1, 7, 1000, &back, NULL),
                 CHUTE_OK);
    CHECK(back.len == 3 && memcmp(back.p, pt, 3) == 0);
    /* the same stanza spliced in without a new MAC fails on the MAC */
    struct buf g = {0};
    buf_put(&g, ct.p, 22);
    buf_put(&g, (const uint8_t *)grease, strlen(grease));
    buf_put(&g, ct.p + 22, ct.len - 22);
    CHECK_EQ_INT(decrypt_status(g.p, g.len, &alice), CHUTE_ERR_HMAC);
    /* a malformed X25519 stanza is refused even beside a good one */
    struct buf m = insert_stanza(&ct, "-> X25519 AAAA\nAAAA\n", &alice);
    CHECK_EQ_INT(decrypt_status(m.p, m.len, &alice), CHUTE_ERR_MALFORMED);
    free(m.p);
    free(g.p);
    free(f.p);
    free(ct.p);
    free(back.p);
    free(pt);
}

/* --- file descriptors ----------------------------------------------------- */

static int memfd_with(const uint8_t *p, size_t n)
{
    int fd = memfd_create("age-test", 0);
    if (fd < 0)
        return -1;
    if (n && write(fd, p, n) != (ssize_t)n) {
        close(fd);
        return -1;
    }
    lseek(fd, 0, SEEK_SET);
    return fd;
}

static void test_fd_round_trip_and_tamper(void)
{
    const size_t n = 1000000;
    uint8_t *pt = pattern(n);
    int in = memfd_with(pt, n), ct = memfd_with(NULL, 0),
        back = memfd_with(NULL, 0);
    CHECK(in >= 0 && ct >= 0 && back >= 0);
    age_recipient rs[2] = {bob_r, alice_r};
    uint8_t mac_e[AGE_MAC_BYTES], mac_d[AGE_MAC_BYTES];
    CHECK_EQ_INT(age_encrypt_fd(in, ct, rs, 2, mac_e), CHUTE_OK);
    lseek(ct, 0, SEEK_SET);
    CHECK_EQ_INT(age_decrypt_fd(ct, back, &alice, 1, mac_d), CHUTE_OK);
    CHECK_MEM(mac_d, mac_e, AGE_MAC_BYTES);
    off_t len = lseek(back, 0, SEEK_END);
    CHECK_EQ_INT(len, n);
    uint8_t *got = mmap(NULL, n, PROT_READ, MAP_SHARED, back, 0);
    CHECK(got != MAP_FAILED);
    if (got != MAP_FAILED) {
        CHECK(memcmp(got, pt, n) == 0);
        munmap(got, n);
    }
    /* a flipped byte near the end */
    off_t ct_len = lseek(ct, 0, SEEK_END);
    uint8_t b;
    CHECK_EQ_INT(pread(ct, &b, 1, ct_len - 3), 1);
    b ^= 1;
    CHECK_EQ_INT(pwrite(ct, &b, 1, ct_len - 3), 1);
    lseek(ct, 0, SEEK_SET);
    CHECK_EQ_INT(ftruncate(back, 0), 0);
    CHECK_EQ_INT(age_decrypt_fd(ct, back, &alice, 1, NULL), CHUTE_ERR_AUTH);
    /* a bad descriptor */
    CHECK_EQ_INT(age_decrypt_fd(-1, back, &alice, 1, NULL), CHUTE_ERR_IO);
    close(in);
    close(ct);
    close(back);
    free(pt);
}

int main(void)
{
    if (sodium_init() < 0)
        return 2;
    make_keys();
    RUN(test_known_identity_gives_the_recipient_age_keygen_gives);
    RUN(test_generated_keys_encode_and_parse_back);
    RUN(test_key_parsing_refuses_bad_strings);
    RUN(test_round_trip_one_recipient_all_sizes);
    RUN(test_round_trip_three_recipients_each_can_decrypt);
    RUN(test_low_order_recipient_is_refused_when_encrypting);
    RUN(test_decryptor_tries_every_identity_it_holds);
    RUN(test_streaming_with_odd_push_and_window_sizes);
    RUN(test_random_access_of_every_chunk_matches_plaintext);
    RUN(test_decryptor_resumes_at_a_chunk_boundary);
    RUN(test_payload_geometry_refuses_impossible_lengths);
    RUN(test_wrong_identity_is_no_match);
    RUN(test_tampered_header_is_refused);
    RUN(test_tampered_or_cut_payload_is_refused);
    RUN(test_swapped_chunks_do_not_authenticate);
    RUN(test_released_plaintext_before_an_error_is_authentic);
    RUN(test_errors_are_sticky_and_calls_after_finish_refused);
    RUN(test_header_parse_asks_for_more_bytes_then_succeeds);
    RUN(test_header_longer_than_the_limit_is_refused);
    RUN(test_a_header_of_many_tiny_stanzas_costs_one_parse);
    RUN(test_a_line_no_header_can_hold_is_refused_at_once);
    RUN(test_header_mac_is_the_same_everywhere);
    RUN(test_scrypt_stanza_is_unsupported);
    RUN(test_unknown_stanzas_are_skipped_but_covered_by_the_mac);
    RUN(test_fd_round_trip_and_tamper);
    return unit_done();
}
