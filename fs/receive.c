/* receive.c — see receive.h. */
#include "receive.h"

#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "age_decryptor.h"
#include "age_stream.h"
#include "storer.h"

#define FEED_BLOCK 65536   /* reads of a .part file */

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
        /* Not retried: the same item would stop every later one forever. */
        else if (st == CHUTE_ERR_UNSUPPORTED)
            *reason = "meta version not supported (sent by a newer Chute?)";
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

struct receiving {
    age_decryptor *d;
    cache_txn *t;
    storer *store;            /* appends to t while we decrypt the next */
    const chute_meta *m;
    bool mac_checked;
    uint64_t total;
    uint64_t stored;          /* whole chunks an earlier try left in the cache */
    const char *reason;
};

/* Check the header MAC as soon as the decryptor has one, and that the
 * n bytes of plaintext it just produced fit the meta's size. */
static chute_status check_output(receiving *r, size_t n)
{
    if (!r->mac_checked) {
        uint8_t mac[AGE_MAC_BYTES];
        if (age_decryptor_header_mac(r->d, mac) == CHUTE_OK) {
            /* The meta names the blob it was sealed for: another blob,
             * even a valid one for us, is not this item. Without a meta
             * yet (an item of deferred length) the check waits for the
             * resume that has it: nothing is committed before. */
            if (r->m && sodium_memcmp(mac, r->m->header_mac, AGE_MAC_BYTES) != 0) {
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
    if (r->m && n > r->m->size - r->total) {
        r->reason = "blob's size differs from the meta's";
        return CHUTE_ERR_MALFORMED;
    }
    r->total += n;
    return CHUTE_OK;
}

/* One decryptor step into a free slot; what checks out goes on to the
 * storer. update: age_decryptor_update with io, else _finish (*done). */
static chute_status decrypt_step(receiving *r, age_io *io, bool update, bool *done)
{
    uint8_t *slot;
    chute_status st = storer_slot(r->store, &slot);
    if (st) return st;
    io->out = slot;
    io->out_len = STORER_SLOT_BYTES;
    st = update ? age_decryptor_update(r->d, io) : age_decryptor_finish(r->d, io, done);
    size_t n = STORER_SLOT_BYTES - io->out_len;
    if (st) r->reason = age_refusal(st);
    else st = check_output(r, n);
    chute_status put = storer_put(r->store, st ? 0 : n);
    return st ? st : put;
}

chute_status receive_begin(cache *c, const char *peer, const char *item,
                           const chute_meta *m, const age_identity *id,
                           bool resume, uint64_t blob_chunks, receiving **out)
{
    *out = NULL;
    receiving *r = calloc(1, sizeof *r);
    if (!r) return CHUTE_ERR_NOMEM;
    r->m = m;
    chute_status st = age_decryptor_new(&r->d, id, 1);
    /* Never the last chunk: the decryptor must see it to know the end.
     * Without a meta the end is not known: keep all. */
    uint64_t max = !resume ? 0 : !m ? UINT64_MAX / CACHE_CHUNK
                 : m->size ? (m->size - 1) / CACHE_CHUNK : 0;
    /* Nor the blob's own last: a meta that declares more than the blob
     * holds would have it skipped, and the blob called truncated. */
    if (blob_chunks && max > blob_chunks - 1) max = blob_chunks - 1;
    if (!st) st = cache_item_resume(c, peer, item, max, &r->t, &r->stored);
    if (st) r->t = NULL;
    if (!st) st = storer_start(r->t, &r->store);
    if (st) {
        receive_abort(r);
        return st;
    }
    *out = r;
    return CHUTE_OK;
}

chute_status receive_feed(receiving *r, const uint8_t *in, size_t len,
                          const char **reason)
{
    *reason = NULL;
    age_io io = {.in = in, .in_len = len};
    chute_status st = CHUTE_OK;
    /* An update stops early only when out is full: drain and repeat. */
    do {
        st = decrypt_step(r, &io, true, NULL);
    } while (!st && io.in_len);
    *reason = r->reason;
    return st;
}

chute_status receive_finish(receiving *r, char *final_path, size_t cap,
                            const char **reason)
{
    chute_status st = r->m ? CHUTE_OK : CHUTE_ERR_ARG;   /* nothing shows without one */
    bool done = false;
    while (!st && !done) {
        age_io io = {0};
        st = decrypt_step(r, &io, false, &done);
    }
    if (!st) st = storer_drain(r->store);
    if (!st && !r->mac_checked) {
        r->reason = "blob has no age header";
        st = CHUTE_ERR_MALFORMED;
    }
    if (!st && r->total != r->m->size) {
        r->reason = "blob's size differs from the meta's";
        st = CHUTE_ERR_MALFORMED;
    }
    /* Nothing is visible before this one transaction. */
    if (!st) {
        storer_free(r->store);
        r->store = NULL;
        st = cache_item_commit(r->t, r->m, final_path, cap);
        r->t = NULL;   /* freed by the commit, whatever its result */
    }
    *reason = r->reason;
    receive_abort(r);
    return st;
}

chute_status receive_payload_start(const receiving *r, uint64_t *offset)
{
    return age_decryptor_payload_start(r->d, offset);
}

chute_status receive_skip_stored(receiving *r, uint64_t *resume_at)
{
    uint64_t start;
    chute_status st = age_decryptor_payload_start(r->d, &start);
    if (!st && !r->mac_checked) st = CHUTE_ERR_ARG;   /* the header MAC first */
    if (!st) st = age_decryptor_skip_chunks(r->d, r->stored);
    if (st) return st;
    r->total = r->stored * CACHE_CHUNK;
    *resume_at = start + r->stored * AGE_CHUNK_CT_BYTES;
    return CHUTE_OK;
}

uint64_t receive_stored_chunks(const receiving *r)
{
    return r->stored;
}

void receive_suspend(receiving *r)
{
    if (!r) return;
    storer_free(r->store);   /* what was put is stored first */
    r->store = NULL;
    cache_item_suspend(r->t);
    r->t = NULL;
    receive_abort(r);
}

void receive_abort(receiving *r)
{
    if (!r) return;
    storer_free(r->store);   /* before the transaction it writes to; wipes */
    if (r->t) cache_item_abort(r->t);
    age_decryptor_free(r->d);
    free(r);
}

chute_status receive_feed_fd(receiving *r, int fd, uint64_t len, const char **reason)
{
    *reason = NULL;
    uint8_t *in = malloc(FEED_BLOCK);
    if (!in) return CHUTE_ERR_NOMEM;
    chute_status st = CHUTE_OK;
    off_t pos = 0;
    while (!st && (uint64_t)pos < len) {
        size_t want = len - (uint64_t)pos < FEED_BLOCK ? (size_t)(len - (uint64_t)pos) : FEED_BLOCK;
        ssize_t got = pread(fd, in, want, pos);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) { st = CHUTE_ERR_IO; break; }
        if (got == 0) break;
        pos += got;
        st = receive_feed(r, in, (size_t)got, reason);
    }
    free(in);   /* ciphertext: nothing to wipe */
    return st;
}
