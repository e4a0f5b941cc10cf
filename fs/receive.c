/* receive.c — see receive.h. */
#include "receive.h"

#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "age_decryptor.h"

#define READ_BLOCK 65536

chute_status receive_open_meta(const char *meta_b64, const devstate_peer *peer,
                               const char *item, const char *my_recipient,
                               chute_meta *m, const char **reason)
{
    *reason = NULL;
    size_t b64_len = strlen(meta_b64), sealed_len = 0;
    uint8_t *sealed = malloc(META_SEALED_MAX);
    if (!sealed) return CHUTE_ERR_NOMEM;
    chute_status st = CHUTE_OK;
    if (b64_len > 2 * META_SEALED_MAX ||
        sodium_base642bin(sealed, META_SEALED_MAX, meta_b64, b64_len, NULL, &sealed_len,
                          NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
        *reason = "meta is not valid base64 or too long";
        st = CHUTE_ERR_MALFORMED;
    }
    uint8_t key[META_KEY_BYTES];
    if (!st) st = meta_key(peer->link_key, key);
    if (!st) {
        st = meta_open(sealed, sealed_len, key, item, my_recipient, m);
        if (st == CHUTE_ERR_AUTH || st == CHUTE_ERR_MALFORMED)
            *reason = "meta does not open with the peer's link key";
    }
    sodium_memzero(key, sizeof key);
    free(sealed);
    return st;
}

/* Why a decryptor error makes the item bad; NULL: not the item's fault. */
static const char *age_refusal(chute_status st)
{
    switch (st) {
    case CHUTE_ERR_NO_MATCH: return "blob is not encrypted to this device";
    case CHUTE_ERR_HMAC: return "blob's age header MAC does not verify";
    case CHUTE_ERR_AUTH: return "payload does not authenticate (tampered)";
    case CHUTE_ERR_TRUNCATED: return "blob is truncated";
    case CHUTE_ERR_MALFORMED:
    case CHUTE_ERR_UNSUPPORTED:
    case CHUTE_ERR_LIMIT:
    case CHUTE_ERR_CRYPTO: return "blob is not a valid age file";
    default: return NULL;
    }
}

typedef struct {
    age_decryptor *d;
    cache_txn *t;
    const chute_meta *m;
    uint8_t *out;
    bool mac_checked;
    uint64_t total;
    const char *reason;
} receiving;

/* Check the header MAC as soon as the decryptor has one, then pass the
 * plaintext produced into out[0..n) on to the cache. */
static chute_status take_output(receiving *r, size_t n)
{
    if (!r->mac_checked) {
        uint8_t mac[AGE_MAC_BYTES];
        if (age_decryptor_header_mac(r->d, mac) == CHUTE_OK) {
            /* The meta names the blob it was sealed for: another blob,
             * even a valid one for us, is not this item. */
            if (sodium_memcmp(mac, r->m->header_mac, AGE_MAC_BYTES) != 0) {
                r->reason = "blob's header MAC differs from the meta's";
                return CHUTE_ERR_AUTH;
            }
            r->mac_checked = true;
        } else if (n) {
            r->reason = "plaintext before a verified header";
            return CHUTE_ERR_PROTOCOL;
        }
    }
    if (!n) return CHUTE_OK;
    if (n > r->m->size - r->total) {
        r->reason = "blob's size differs from the meta's";
        return CHUTE_ERR_MALFORMED;
    }
    r->total += n;
    return cache_item_append(r->t, r->out, n);
}

static chute_status decrypt_into_cache(receiving *r, int fd)
{
    uint8_t *in = malloc(READ_BLOCK);
    if (!in) return CHUTE_ERR_NOMEM;
    chute_status st = CHUTE_OK;
    off_t pos = 0;
    while (!st) {
        ssize_t got = pread(fd, in, READ_BLOCK, pos);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) { st = CHUTE_ERR_IO; break; }
        if (got == 0) break;
        pos += got;
        age_io io = {.in = in, .in_len = (size_t)got};
        /* An update stops early only when out is full: drain and repeat. */
        do {
            io.out = r->out;
            io.out_len = READ_BLOCK;
            st = age_decryptor_update(r->d, &io);
            if (st) r->reason = age_refusal(st);
            else st = take_output(r, READ_BLOCK - io.out_len);
        } while (!st && io.in_len);
    }
    bool done = false;
    while (!st && !done) {
        age_io io = {.out = r->out, .out_len = READ_BLOCK};
        st = age_decryptor_finish(r->d, &io, &done);
        if (st) r->reason = age_refusal(st);
        else st = take_output(r, READ_BLOCK - io.out_len);
    }
    if (!st && !r->mac_checked) {
        r->reason = "blob has no age header";
        st = CHUTE_ERR_MALFORMED;
    }
    if (!st && r->total != r->m->size) {
        r->reason = "blob's size differs from the meta's";
        st = CHUTE_ERR_MALFORMED;
    }
    sodium_memzero(in, READ_BLOCK);
    free(in);
    return st;
}

chute_status verify_and_store(cache *c, const char *peer, const char *item,
                              const chute_meta *m, int blob_fd,
                              const age_identity *id,
                              char *final_path, size_t cap, const char **reason)
{
    *reason = NULL;
    receiving r = {.m = m};
    r.out = malloc(READ_BLOCK);
    if (!r.out) return CHUTE_ERR_NOMEM;
    chute_status st = age_decryptor_new(&r.d, id, 1);
    if (!st) st = cache_item_begin(c, peer, item, &r.t);
    if (!st) {
        st = decrypt_into_cache(&r, blob_fd);
        /* Nothing is visible before this one transaction. */
        if (!st) st = cache_item_commit(r.t, m, final_path, cap);
        else cache_item_abort(r.t);
    }
    *reason = r.reason;
    age_decryptor_free(r.d);
    sodium_memzero(r.out, READ_BLOCK);   /* plaintext */
    free(r.out);
    return st;
}
