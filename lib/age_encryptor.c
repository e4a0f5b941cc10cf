/* age_encryptor.c — streaming age encryption. */
#include "age_encryptor.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "age_stream.h"

struct age_encryptor {
    age_payload_key key;
    uint8_t mac[AGE_MAC_BYTES];
    uint8_t *head;           /* header and nonce, written out first */
    size_t head_len, head_pos;
    uint64_t index;          /* of the next chunk to seal */
    size_t pt_len;           /* plaintext buffered in pt */
    size_t ct_len, ct_pos;   /* a sealed chunk in ct not yet written */
    bool finished;           /* the last chunk has been sealed */
    uint8_t pt[AGE_CHUNK_BYTES];
    uint8_t ct[AGE_CHUNK_CT_BYTES];
};

chute_status age_encryptor_new(age_encryptor **out,
                               const age_recipient *recipients, size_t n)
{
    if (sodium_init() < 0)
        return CHUTE_ERR_CRYPTO;
    uint8_t file_key[AGE_FILE_KEY_BYTES], nonce[AGE_NONCE_BYTES];
    randombytes_buf(file_key, sizeof file_key);
    randombytes_buf(nonce, sizeof nonce);
    chute_status st = age_encryptor_new_keyed(out, recipients, n, file_key, nonce);
    sodium_memzero(file_key, sizeof file_key);
    return st;
}

chute_status age_encryptor_new_keyed(age_encryptor **out,
                                     const age_recipient *recipients, size_t n,
                                     const uint8_t file_key[AGE_FILE_KEY_BYTES],
                                     const uint8_t nonce[AGE_NONCE_BYTES])
{
    if (!out)
        return CHUTE_ERR_ARG;
    *out = NULL;
    if (!recipients || n == 0 || !file_key || !nonce)
        return CHUTE_ERR_ARG;
    if (sodium_init() < 0)
        return CHUTE_ERR_CRYPTO;
    age_encryptor *e = calloc(1, sizeof *e);
    if (!e)
        return CHUTE_ERR_NOMEM;

    uint8_t *header = NULL;
    size_t header_len = 0;
    chute_status st = age_header_build(file_key, recipients, n, &header,
                                       &header_len, e->mac);
    if (st == CHUTE_OK)
        st = age_payload_key_derive(&e->key, file_key, nonce);
    if (st == CHUTE_OK) {
        e->head = realloc(header, header_len + AGE_NONCE_BYTES);
        if (e->head) {
            memcpy(e->head + header_len, nonce, AGE_NONCE_BYTES);
            e->head_len = header_len + AGE_NONCE_BYTES;
        } else {
            free(header);
            st = CHUTE_ERR_NOMEM;
        }
    } else {
        free(header);
    }
    if (st != CHUTE_OK) {
        age_encryptor_free(e);
        return st;
    }
    *out = e;
    return CHUTE_OK;
}

static void copy_out(age_io *io, const uint8_t *src, size_t *pos, size_t len)
{
    size_t n = len - *pos;
    if (n > io->out_len)
        n = io->out_len;
    if (n == 0)
        return;
    memcpy(io->out, src + *pos, n);
    io->out += n;
    io->out_len -= n;
    *pos += n;
}

/* Writes pending header and ciphertext; true when nothing is pending. */
static bool flush(age_encryptor *e, age_io *io)
{
    if (e->head_pos < e->head_len)
        copy_out(io, e->head, &e->head_pos, e->head_len);
    if (e->head_pos == e->head_len && e->ct_pos < e->ct_len)
        copy_out(io, e->ct, &e->ct_pos, e->ct_len);
    return e->head_pos == e->head_len && e->ct_pos == e->ct_len;
}

static chute_status seal_buffered(age_encryptor *e, bool last)
{
    chute_status st = age_chunk_encrypt(&e->key, e->index, last, e->pt,
                                        e->pt_len, e->ct);
    if (st != CHUTE_OK)
        return st;
    e->ct_len = e->pt_len + AGE_TAG_BYTES;
    e->ct_pos = 0;
    e->pt_len = 0;
    e->index++;
    return CHUTE_OK;
}

chute_status age_encryptor_update(age_encryptor *e, age_io *io)
{
    if (!e || !io || (io->in_len && !io->in) || (io->out_len && !io->out))
        return CHUTE_ERR_ARG;
    if (e->finished)
        return CHUTE_ERR_ARG;
    while (flush(e, io) && io->in_len > 0) {
        if (e->pt_len == AGE_CHUNK_BYTES) {
            /* More plaintext follows, so the held chunk is not the last. */
            chute_status st = seal_buffered(e, false);
            if (st != CHUTE_OK)
                return st;
        } else if (e->pt_len == 0 && io->in_len > AGE_CHUNK_BYTES &&
                   io->out_len >= AGE_CHUNK_CT_BYTES) {
            /* Fast path: a whole chunk with more after it, sealed straight
             * from the caller's input into the caller's output. */
            age_chunk_encrypt(&e->key, e->index++, false, io->in,
                              AGE_CHUNK_BYTES, io->out);
            io->in += AGE_CHUNK_BYTES;
            io->in_len -= AGE_CHUNK_BYTES;
            io->out += AGE_CHUNK_CT_BYTES;
            io->out_len -= AGE_CHUNK_CT_BYTES;
        } else {
            size_t n = AGE_CHUNK_BYTES - e->pt_len;
            if (n > io->in_len)
                n = io->in_len;
            memcpy(e->pt + e->pt_len, io->in, n);
            e->pt_len += n;
            io->in += n;
            io->in_len -= n;
        }
    }
    return CHUTE_OK;
}

chute_status age_encryptor_finish(age_encryptor *e, age_io *io, bool *done)
{
    if (!e || !io || !done || (io->out_len && !io->out))
        return CHUTE_ERR_ARG;
    *done = false;
    if (!e->finished) {
        if (!flush(e, io))
            return CHUTE_OK; /* the caller drains, then calls again */
        /* Held-back full chunks mean pt is empty here only for an empty
         * file, whose single chunk is empty and last. */
        chute_status st = seal_buffered(e, true);
        if (st != CHUTE_OK)
            return st;
        e->finished = true;
    }
    *done = flush(e, io);
    return CHUTE_OK;
}

void age_encryptor_header_mac(const age_encryptor *e,
                              uint8_t mac[AGE_MAC_BYTES])
{
    memcpy(mac, e->mac, AGE_MAC_BYTES);
}

void age_encryptor_free(age_encryptor *e)
{
    if (!e)
        return;
    if (e->head) {
        sodium_memzero(e->head, e->head_len);
        free(e->head);
    }
    sodium_memzero(e, sizeof *e);
    free(e);
}
