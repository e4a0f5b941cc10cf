/* meta.c — encode, decode, seal and open the sealed meta; see meta.h and
 * PROTOCOL.md §8 for the byte layout. */
#include "meta.h"

#include <sodium.h>
#include <string.h>

#include "hkdf.h"

static const char INFO[] = "chute meta v1";

chute_status meta_key(const uint8_t link_key[32], uint8_t key[META_KEY_BYTES])
{
    if (!link_key || !key) return CHUTE_ERR_ARG;
    return hkdf_sha256(key, META_KEY_BYTES, NULL, 0, link_key, 32,
                       (const uint8_t *)INFO, sizeof INFO - 1);
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}

static uint64_t get_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

static size_t padded(size_t n) { return (n + META_PAD - 1) / META_PAD * META_PAD; }

chute_status meta_encode(const chute_meta *m, uint8_t *out, size_t cap,
                         size_t *out_len)
{
    if (!m || !out || !out_len) return CHUTE_ERR_ARG;
    size_t pl = strnlen(m->path, sizeof m->path);
    if (pl == 0 || pl > META_PATH_MAX || m->mode > 07777 ||
        m->mtime_nsec >= 1000000000u)
        return CHUTE_ERR_ARG;
    size_t total = padded(META_FIXED_BYTES + pl);
    if (cap < total) return CHUTE_ERR_LIMIT;
    memset(out, 0, total);
    out[0] = META_VERSION;
    put_be(out + 1, m->size, 8);
    put_be(out + 9, m->mode, 4);
    put_be(out + 13, (uint64_t)m->mtime_sec, 8);
    put_be(out + 21, m->mtime_nsec, 4);
    memcpy(out + 25, m->header_mac, META_MAC_BYTES);
    put_be(out + 57, pl, 2);
    memcpy(out + META_FIXED_BYTES, m->path, pl);
    *out_len = total;
    return CHUTE_OK;
}

chute_status meta_decode(const uint8_t *in, size_t len, chute_meta *m)
{
    if (!in || !m) return CHUTE_ERR_ARG;
    if (len < META_FIXED_BYTES || len % META_PAD != 0 || len > META_PLAIN_MAX)
        return CHUTE_ERR_MALFORMED;
    if (in[0] != META_VERSION) return CHUTE_ERR_UNSUPPORTED;
    size_t pl = (size_t)get_be(in + 57, 2);
    if (pl == 0 || pl > META_PATH_MAX || padded(META_FIXED_BYTES + pl) != len)
        return CHUTE_ERR_MALFORMED;
    if (memchr(in + META_FIXED_BYTES, 0, pl)) return CHUTE_ERR_MALFORMED;
    for (size_t i = META_FIXED_BYTES + pl; i < len; i++)
        if (in[i]) return CHUTE_ERR_MALFORMED;
    uint64_t mode = get_be(in + 9, 4), nsec = get_be(in + 21, 4);
    if (mode > 07777 || nsec >= 1000000000u) return CHUTE_ERR_MALFORMED;
    m->size = get_be(in + 1, 8);
    m->mode = (uint32_t)mode;
    m->mtime_sec = (int64_t)get_be(in + 13, 8);
    m->mtime_nsec = (uint32_t)nsec;
    memcpy(m->header_mac, in + 25, META_MAC_BYTES);
    memcpy(m->path, in + META_FIXED_BYTES, pl);
    m->path[pl] = '\0';
    return CHUTE_OK;
}

/* ad = "chute meta v1" 0x00 item_id 0x00 recipient. Bounded by the callers'
 * id and recipient lengths. */
static chute_status build_ad(const char *item_id, const char *recipient,
                             uint8_t *ad, size_t cap, size_t *len)
{
    size_t il = strlen(item_id), rl = strlen(recipient);
    size_t n = sizeof INFO - 1 + 1 + il + 1 + rl;
    if (n > cap) return CHUTE_ERR_ARG;
    uint8_t *p = ad;
    memcpy(p, INFO, sizeof INFO - 1); p += sizeof INFO - 1;
    *p++ = 0;
    memcpy(p, item_id, il); p += il;
    *p++ = 0;
    memcpy(p, recipient, rl);
    *len = n;
    return CHUTE_OK;
}

chute_status meta_seal(const chute_meta *m, const uint8_t key[META_KEY_BYTES],
                       const char *item_id, const char *recipient,
                       uint8_t *out, size_t cap, size_t *out_len)
{
    if (!m || !key || !item_id || !recipient || !out || !out_len)
        return CHUTE_ERR_ARG;
    uint8_t plain[META_PLAIN_MAX], ad[512];
    size_t pl, adl;
    chute_status st = meta_encode(m, plain, sizeof plain, &pl);
    if (st) return st;
    st = build_ad(item_id, recipient, ad, sizeof ad, &adl);
    if (st) goto out;
    size_t total = 1 + META_NONCE_BYTES + pl + META_TAG_BYTES;
    if (cap < total) { st = CHUTE_ERR_LIMIT; goto out; }
    out[0] = META_VERSION;
    randombytes_buf(out + 1, META_NONCE_BYTES);
    unsigned long long cl;
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        out + 1 + META_NONCE_BYTES, &cl, plain, pl, ad, adl, NULL,
        out + 1, key);
    *out_len = 1 + META_NONCE_BYTES + (size_t)cl;
out:
    sodium_memzero(plain, sizeof plain);
    return st;
}

chute_status meta_open(const uint8_t *in, size_t len,
                       const uint8_t key[META_KEY_BYTES],
                       const char *item_id, const char *recipient,
                       chute_meta *m)
{
    if (!in || !key || !item_id || !recipient || !m) return CHUTE_ERR_ARG;
    if (len < 1 + META_NONCE_BYTES + META_TAG_BYTES || len > META_SEALED_MAX)
        return CHUTE_ERR_MALFORMED;
    if (in[0] != META_VERSION) return CHUTE_ERR_UNSUPPORTED;
    uint8_t plain[META_PLAIN_MAX], ad[512];
    size_t adl;
    chute_status st = build_ad(item_id, recipient, ad, sizeof ad, &adl);
    if (st) return st;
    unsigned long long pl;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            plain, &pl, NULL, in + 1 + META_NONCE_BYTES,
            len - 1 - META_NONCE_BYTES, ad, adl, in + 1, key) != 0)
        return CHUTE_ERR_AUTH;
    st = meta_decode(plain, (size_t)pl, m);
    sodium_memzero(plain, sizeof plain);
    return st;
}
