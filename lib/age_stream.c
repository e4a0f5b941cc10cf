/* age_stream.c — STREAM chunks of the age payload, and their geometry. */
#include "age_stream.h"

#include <sodium.h>
#include <string.h>

#include "hkdf.h"

chute_status age_payload_key_derive(age_payload_key *pk,
                                    const uint8_t file_key[AGE_FILE_KEY_BYTES],
                                    const uint8_t nonce[AGE_NONCE_BYTES])
{
    if (!pk || !file_key || !nonce)
        return CHUTE_ERR_ARG;
    return hkdf_sha256(pk->key, sizeof pk->key, nonce, AGE_NONCE_BYTES,
                       file_key, AGE_FILE_KEY_BYTES,
                       (const uint8_t *)"payload", 7);
}

void age_payload_key_wipe(age_payload_key *pk)
{
    if (pk)
        sodium_memzero(pk, sizeof *pk);
}

static void chunk_nonce(uint8_t n[12], uint64_t index, bool last)
{
    memset(n, 0, 12);
    for (int i = 0; i < 8; i++)
        n[10 - i] = (uint8_t)(index >> (8 * i));
    n[11] = last ? 1 : 0;
}

chute_status age_chunk_encrypt(const age_payload_key *pk, uint64_t index,
                               bool last, const uint8_t *pt, size_t pt_len,
                               uint8_t *ct)
{
    if (!pk || !ct || (pt_len && !pt) || pt_len > AGE_CHUNK_BYTES ||
        (!last && pt_len != AGE_CHUNK_BYTES) ||
        (last && pt_len == 0 && index != 0))
        return CHUTE_ERR_ARG;
    uint8_t n[12];
    chunk_nonce(n, index, last);
    crypto_aead_chacha20poly1305_ietf_encrypt(ct, NULL, pt, pt_len, NULL, 0,
                                              NULL, n, pk->key);
    return CHUTE_OK;
}

chute_status age_chunk_decrypt(const age_payload_key *pk, uint64_t index,
                               bool last, const uint8_t *ct, size_t ct_len,
                               uint8_t *pt, size_t *pt_len)
{
    if (!pk || !ct || !pt || !pt_len)
        return CHUTE_ERR_ARG;
    if (ct_len < AGE_TAG_BYTES || ct_len > AGE_CHUNK_CT_BYTES ||
        (!last && ct_len != AGE_CHUNK_CT_BYTES) ||
        (last && ct_len == AGE_TAG_BYTES && index != 0))
        return CHUTE_ERR_MALFORMED;
    uint8_t n[12];
    chunk_nonce(n, index, last);
    unsigned long long len = 0;
    if (crypto_aead_chacha20poly1305_ietf_decrypt(pt, &len, NULL, ct, ct_len,
                                                  NULL, 0, n, pk->key) != 0)
        return CHUTE_ERR_AUTH;
    *pt_len = (size_t)len;
    return CHUTE_OK;
}

chute_status age_payload_geometry(uint64_t payload_len, uint64_t *pt_size,
                                  uint64_t *n_chunks)
{
    if (payload_len < AGE_NONCE_BYTES + AGE_TAG_BYTES)
        return CHUTE_ERR_MALFORMED; /* no nonce or no chunk */
    uint64_t stream = payload_len - AGE_NONCE_BYTES;
    uint64_t full = stream / AGE_CHUNK_CT_BYTES;
    uint64_t rest = stream % AGE_CHUNK_CT_BYTES;
    if (rest != 0 && rest < AGE_TAG_BYTES)
        return CHUTE_ERR_MALFORMED; /* a chunk shorter than its tag */
    if (rest == AGE_TAG_BYTES && full != 0)
        return CHUTE_ERR_MALFORMED; /* an empty last chunk after others */
    uint64_t chunks = full + (rest ? 1 : 0);
    uint64_t size = full * AGE_CHUNK_BYTES + (rest ? rest - AGE_TAG_BYTES : 0);
    if (pt_size)
        *pt_size = size;
    if (n_chunks)
        *n_chunks = chunks;
    return CHUTE_OK;
}

chute_status age_chunk_locate(uint64_t payload_len, uint64_t index,
                              age_chunk_span *span)
{
    uint64_t size = 0, chunks = 0;
    if (!span)
        return CHUTE_ERR_ARG;
    chute_status st = age_payload_geometry(payload_len, &size, &chunks);
    if (st != CHUTE_OK)
        return st;
    if (index >= chunks)
        return CHUTE_ERR_ARG;
    span->offset = AGE_NONCE_BYTES + index * AGE_CHUNK_CT_BYTES;
    span->pt_offset = index * AGE_CHUNK_BYTES;
    span->last = index == chunks - 1;
    span->pt_length = span->last ? (size_t)(size - span->pt_offset)
                                 : AGE_CHUNK_BYTES;
    span->length = span->pt_length + AGE_TAG_BYTES;
    return CHUTE_OK;
}

uint64_t age_payload_size(uint64_t pt_size)
{
    uint64_t chunks = pt_size == 0 ? 1 : (pt_size + AGE_CHUNK_BYTES - 1) /
                                             AGE_CHUNK_BYTES;
    return AGE_NONCE_BYTES + pt_size + chunks * AGE_TAG_BYTES;
}
