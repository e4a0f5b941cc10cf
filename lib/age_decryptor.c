/* age_decryptor.c — streaming age decryption. */
#include "age_decryptor.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "age_stream.h"

enum stage { READ_HEADER, READ_NONCE, READ_PAYLOAD, ALL_READ };

struct age_decryptor {
    age_identity *ids;
    size_t n_ids;
    enum stage stage;
    chute_status error;      /* sticky once set */
    uint8_t *hdr;            /* header bytes gathered so far */
    size_t hdr_len, hdr_cap;
    size_t line_start;       /* where the header's current line begins */
    uint8_t file_key[AGE_FILE_KEY_BYTES];
    uint8_t mac[AGE_MAC_BYTES];
    bool have_mac;
    uint8_t nonce[AGE_NONCE_BYTES];
    size_t nonce_len;
    age_payload_key key;
    uint64_t index;          /* of the next chunk to open */
    uint64_t header_bytes;   /* the header's length, once parsed */
    bool final_seen;         /* a full last chunk has been opened */
    size_t ct_len;           /* ciphertext buffered in ct */
    size_t pt_len, pt_pos;   /* opened plaintext in pt not yet written */
    uint8_t ct[AGE_CHUNK_CT_BYTES];
    uint8_t pt[AGE_CHUNK_BYTES];
};

chute_status age_decryptor_new(age_decryptor **out, const age_identity *ids,
                               size_t n_ids)
{
    if (!out)
        return CHUTE_ERR_ARG;
    *out = NULL;
    if (n_ids && !ids)
        return CHUTE_ERR_ARG;
    if (sodium_init() < 0)
        return CHUTE_ERR_CRYPTO;
    age_decryptor *d = calloc(1, sizeof *d);
    if (!d)
        return CHUTE_ERR_NOMEM;
    if (n_ids) {
        d->ids = calloc(n_ids, sizeof *ids);
        if (!d->ids) {
            free(d);
            return CHUTE_ERR_NOMEM;
        }
        memcpy(d->ids, ids, n_ids * sizeof *ids);
        d->n_ids = n_ids;
    }
    *out = d;
    return CHUTE_OK;
}

static void wipe_identities(age_decryptor *d)
{
    if (d->ids)
        sodium_memzero(d->ids, d->n_ids * sizeof *d->ids);
    free(d->ids);
    d->ids = NULL;
    d->n_ids = 0;
}

static chute_status fail(age_decryptor *d, chute_status st)
{
    d->error = st;
    sodium_memzero(d->file_key, sizeof d->file_key);
    age_payload_key_wipe(&d->key);
    sodium_memzero(d->pt, sizeof d->pt);
    d->pt_len = d->pt_pos = 0;
    wipe_identities(d);
    return st;
}

/* Writes pending plaintext; true when nothing is pending. */
static bool flush(age_decryptor *d, age_io *io)
{
    size_t n = d->pt_len - d->pt_pos;
    if (n > io->out_len)
        n = io->out_len;
    if (n == 0)
        return d->pt_pos == d->pt_len;
    memcpy(io->out, d->pt + d->pt_pos, n);
    io->out += n;
    io->out_len -= n;
    d->pt_pos += n;
    return d->pt_pos == d->pt_len;
}

/* Called at each LF: if the header is complete, open it. */
static chute_status try_header(age_decryptor *d)
{
    age_header *h = NULL;
    size_t len = 0;
    chute_status st = age_header_parse(d->hdr, d->hdr_len, &h, &len);
    if (st == CHUTE_ERR_TRUNCATED)
        return CHUTE_OK; /* more lines to come */
    if (st == CHUTE_OK)
        st = age_header_unwrap(h, d->ids, d->n_ids, d->file_key);
    if (st == CHUTE_OK) {
        memcpy(d->mac, age_header_mac(h), AGE_MAC_BYTES);
        d->have_mac = true;
        d->header_bytes = d->hdr_len;   /* read_header stops at each LF */
        d->stage = READ_NONCE;
        free(d->hdr);
        d->hdr = NULL;
        d->hdr_len = d->hdr_cap = 0;
        wipe_identities(d);
    }
    age_header_free(h);
    return st;
}

/* Could line (without its LF) sit inside a header: a stanza's first line
 * or a body line of base64? If not, the full parse says what is wrong. */
static bool plausible_line(const uint8_t *line, size_t len)
{
    if (len >= 3 && memcmp(line, "-> ", 3) == 0)
        return true;
    if (len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = line[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return false;
    }
    return true;
}

static chute_status read_header(age_decryptor *d, age_io *io)
{
    const uint8_t *nl = memchr(io->in, '\n', io->in_len);
    size_t n = nl ? (size_t)(nl - io->in) + 1 : io->in_len;
    if (d->hdr_len + n > AGE_HEADER_MAX)
        return CHUTE_ERR_LIMIT;
    if (d->hdr_len + n > d->hdr_cap) {
        size_t cap = d->hdr_cap ? d->hdr_cap * 2 : 1024;
        while (cap < d->hdr_len + n)
            cap *= 2;
        uint8_t *grown = realloc(d->hdr, cap);
        if (!grown)
            return CHUTE_ERR_NOMEM;
        d->hdr = grown;
        d->hdr_cap = cap;
    }
    memcpy(d->hdr + d->hdr_len, io->in, n);
    d->hdr_len += n;
    io->in += n;
    io->in_len -= n;
    /* Refuse non-age input early, before its first LF. */
    if (d->hdr_len < 32 && !nl) {
        age_header *h = NULL;
        size_t len;
        chute_status st = age_header_parse(d->hdr, d->hdr_len, &h, &len);
        age_header_free(h);
        return st == CHUTE_ERR_TRUNCATED ? CHUTE_OK : st;
    }
    if (!nl)
        return CHUTE_OK;
    size_t start = d->line_start;
    d->line_start = d->hdr_len;
    /* A whole parse at every line made a header of 10,000 tiny stanzas
     * cost seconds: parse at the first line, at "---" (the only line that
     * can end a header) and at a line no header can hold (to say so). */
    const uint8_t *line = d->hdr + start;
    size_t len = d->hdr_len - 1 - start;
    bool mac_line = len >= 3 && memcmp(line, "---", 3) == 0;
    return start == 0 || mac_line || !plausible_line(line, len) ? try_header(d) : CHUTE_OK;
}

static chute_status read_nonce(age_decryptor *d, age_io *io)
{
    size_t n = AGE_NONCE_BYTES - d->nonce_len;
    if (n > io->in_len)
        n = io->in_len;
    memcpy(d->nonce + d->nonce_len, io->in, n);
    d->nonce_len += n;
    io->in += n;
    io->in_len -= n;
    if (d->nonce_len < AGE_NONCE_BYTES)
        return CHUTE_OK;
    chute_status st = age_payload_key_derive(&d->key, d->file_key, d->nonce);
    sodium_memzero(d->file_key, sizeof d->file_key);
    d->stage = READ_PAYLOAD;
    return st;
}

chute_status age_decryptor_payload_start(const age_decryptor *d, uint64_t *offset)
{
    if (!d || !offset)
        return CHUTE_ERR_ARG;
    if (d->error)
        return d->error;
    if (d->stage < READ_PAYLOAD)
        return CHUTE_ERR_NOT_FOUND;
    *offset = d->header_bytes + AGE_NONCE_BYTES;
    return CHUTE_OK;
}

chute_status age_decryptor_skip_chunks(age_decryptor *d, uint64_t n)
{
    if (!d)
        return CHUTE_ERR_ARG;
    if (d->error)
        return d->error;
    /* Only between the nonce and the first payload byte. */
    if (d->stage != READ_PAYLOAD || d->index != 0 || d->ct_len != 0 ||
        d->pt_pos != d->pt_len || d->final_seen)
        return CHUTE_ERR_ARG;
    d->index = n;
    return CHUTE_OK;
}

/* Opens a full chunk as soon as it is whole: it is a middle chunk if it
 * opens as one, else it must be a full last chunk. Either way its
 * plaintext is authentic and is released at once. */
static chute_status open_full(age_decryptor *d, const uint8_t *ct,
                              uint8_t *pt)
{
    size_t n = 0;
    chute_status st = age_chunk_decrypt(&d->key, d->index, false, ct,
                                        AGE_CHUNK_CT_BYTES, pt, &n);
    if (st == CHUTE_ERR_AUTH) {
        st = age_chunk_decrypt(&d->key, d->index, true, ct,
                               AGE_CHUNK_CT_BYTES, pt, &n);
        d->final_seen = st == CHUTE_OK;
    }
    if (st == CHUTE_OK)
        d->index++;
    return st;
}

static chute_status read_payload(age_decryptor *d, age_io *io)
{
    chute_status st = CHUTE_OK;
    if (d->final_seen) {
        st = CHUTE_ERR_MALFORMED; /* data after the last chunk */
    } else if (d->ct_len == 0 && io->in_len >= AGE_CHUNK_CT_BYTES &&
               io->out_len >= AGE_CHUNK_BYTES) {
        /* Fast path: straight from the caller's input to its output. */
        st = open_full(d, io->in, io->out);
        if (st == CHUTE_OK) {
            io->in += AGE_CHUNK_CT_BYTES;
            io->in_len -= AGE_CHUNK_CT_BYTES;
            io->out += AGE_CHUNK_BYTES;
            io->out_len -= AGE_CHUNK_BYTES;
        }
    } else {
        size_t n = AGE_CHUNK_CT_BYTES - d->ct_len;
        if (n > io->in_len)
            n = io->in_len;
        memcpy(d->ct + d->ct_len, io->in, n);
        d->ct_len += n;
        io->in += n;
        io->in_len -= n;
        if (d->ct_len == AGE_CHUNK_CT_BYTES) {
            st = open_full(d, d->ct, d->pt);
            if (st == CHUTE_OK) {
                d->pt_len = AGE_CHUNK_BYTES;
                d->pt_pos = 0;
                d->ct_len = 0;
            }
        }
    }
    return st;
}

chute_status age_decryptor_update(age_decryptor *d, age_io *io)
{
    if (!d || !io || (io->in_len && !io->in) || (io->out_len && !io->out))
        return CHUTE_ERR_ARG;
    if (d->error)
        return d->error;
    while (flush(d, io) && io->in_len > 0) {
        chute_status st;
        switch (d->stage) {
        case READ_HEADER:  st = read_header(d, io); break;
        case READ_NONCE:   st = read_nonce(d, io); break;
        case READ_PAYLOAD: st = read_payload(d, io); break;
        default:           st = CHUTE_ERR_ARG; break; /* after finish */
        }
        if (st != CHUTE_OK)
            return fail(d, st);
    }
    return CHUTE_OK;
}

/* The ciphertext has ended: what is buffered must be a short last chunk,
 * unless a full last chunk has already been opened. */
static chute_status open_last(age_decryptor *d)
{
    if (d->final_seen)
        return CHUTE_OK;
    if (d->ct_len < AGE_TAG_BYTES)
        return CHUTE_ERR_TRUNCATED; /* no last chunk, or a cut one */
    size_t n = 0;
    chute_status st = age_chunk_decrypt(&d->key, d->index, true, d->ct,
                                        d->ct_len, d->pt, &n);
    if (st != CHUTE_OK)
        return st;
    d->pt_len = n;
    d->pt_pos = 0;
    d->ct_len = 0;
    return CHUTE_OK;
}

chute_status age_decryptor_finish(age_decryptor *d, age_io *io, bool *done)
{
    if (!d || !io || !done || (io->out_len && !io->out))
        return CHUTE_ERR_ARG;
    *done = false;
    if (d->error)
        return d->error;
    if (!flush(d, io))
        return CHUTE_OK; /* the caller drains, then calls again */
    if (d->stage != ALL_READ) {
        chute_status st;
        if (d->stage == READ_PAYLOAD)
            st = open_last(d);
        else
            st = CHUTE_ERR_MALFORMED; /* the header or nonce is cut short */
        if (st != CHUTE_OK)
            return fail(d, st);
        d->stage = ALL_READ;
        age_payload_key_wipe(&d->key);
    }
    *done = flush(d, io);
    return CHUTE_OK;
}

chute_status age_decryptor_header_mac(const age_decryptor *d,
                                      uint8_t mac[AGE_MAC_BYTES])
{
    if (!d || !mac)
        return CHUTE_ERR_ARG;
    if (!d->have_mac)
        return CHUTE_ERR_NOT_FOUND;
    memcpy(mac, d->mac, AGE_MAC_BYTES);
    return CHUTE_OK;
}

void age_decryptor_free(age_decryptor *d)
{
    if (!d)
        return;
    wipe_identities(d);
    free(d->hdr);
    sodium_memzero(d, sizeof *d);
    free(d);
}
