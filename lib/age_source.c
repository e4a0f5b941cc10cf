/* age_source.c — see age_source.h. */
#include "age_source.h"

#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pagecache.h"

#define NO_CHUNK UINT64_MAX

struct age_source {
    age_payload_key key;
    int fd;
    uint64_t pt_size, n_chunks;
    uint8_t *head;              /* header || nonce */
    size_t head_len;
    uint64_t ct_index;          /* the chunk sealed in ct, or NO_CHUNK */
    size_t ct_len;
    pagecache_stream read;      /* the plaintext is read once, in order */
    uint8_t pt[AGE_CHUNK_BYTES];
    uint8_t ct[AGE_CHUNK_CT_BYTES];
};

chute_status age_source_new(age_source **out, const uint8_t *header,
                            size_t header_len,
                            const uint8_t nonce[AGE_NONCE_BYTES],
                            const uint8_t file_key[AGE_FILE_KEY_BYTES],
                            int pt_fd, uint64_t pt_size)
{
    if (!out)
        return CHUTE_ERR_ARG;
    *out = NULL;
    if (!header || !header_len || !nonce || !file_key || pt_fd < 0)
        return CHUTE_ERR_ARG;
    if (sodium_init() < 0)
        return CHUTE_ERR_CRYPTO;
    age_source *s = calloc(1, sizeof *s);
    if (!s)
        return CHUTE_ERR_NOMEM;
    s->head = malloc(header_len + AGE_NONCE_BYTES);
    chute_status st = s->head ? age_payload_key_derive(&s->key, file_key, nonce)
                              : CHUTE_ERR_NOMEM;
    if (st != CHUTE_OK) {
        age_source_free(s);
        return st;
    }
    memcpy(s->head, header, header_len);
    memcpy(s->head + header_len, nonce, AGE_NONCE_BYTES);
    s->head_len = header_len + AGE_NONCE_BYTES;
    s->fd = pt_fd;
    s->pt_size = pt_size;
    /* An empty file still has one (empty, last) chunk. */
    s->n_chunks = pt_size == 0 ? 1 : (pt_size + AGE_CHUNK_BYTES - 1) / AGE_CHUNK_BYTES;
    s->ct_index = NO_CHUNK;
    *out = s;
    return CHUTE_OK;
}

uint64_t age_source_size(const age_source *s)
{
    return s->head_len - AGE_NONCE_BYTES + age_payload_size(s->pt_size);
}

/* Read and seal chunk `index` into s->ct, unless it is there already. */
static chute_status seal_chunk(age_source *s, uint64_t index)
{
    if (s->ct_index == index)
        return CHUTE_OK;
    uint64_t pos = index * AGE_CHUNK_BYTES;
    bool last = index == s->n_chunks - 1;
    size_t want = last ? (size_t)(s->pt_size - pos) : AGE_CHUNK_BYTES;
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(s->fd, s->pt + got, want - got, (off_t)(pos + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {   /* an error, or the file is shorter than it was */
            if (r == 0)
                errno = EIO;
            s->ct_index = NO_CHUNK;
            return CHUTE_ERR_IO;
        }
        got += (size_t)r;
    }
    pagecache_read_to(&s->read, s->fd, (off_t)(pos + want));
    chute_status st = age_chunk_encrypt(&s->key, index, last, s->pt, want, s->ct);
    if (st != CHUTE_OK) {
        s->ct_index = NO_CHUNK;
        return st;
    }
    s->ct_index = index;
    s->ct_len = want + AGE_TAG_BYTES;
    return CHUTE_OK;
}

chute_status age_source_read(age_source *s, uint64_t offset, uint8_t *buf,
                             size_t len)
{
    if (!s || (len && !buf))
        return CHUTE_ERR_ARG;
    uint64_t size = age_source_size(s);
    if (offset > size || len > size - offset)
        return CHUTE_ERR_ARG;
    while (len > 0) {
        size_t n;
        if (offset < s->head_len) {
            n = s->head_len - (size_t)offset;
            if (n > len)
                n = len;
            memcpy(buf, s->head + offset, n);
        } else {
            uint64_t rel = offset - s->head_len;
            uint64_t index = rel / AGE_CHUNK_CT_BYTES;
            size_t in = (size_t)(rel % AGE_CHUNK_CT_BYTES);
            chute_status st = seal_chunk(s, index);
            if (st != CHUTE_OK)
                return st;
            n = s->ct_len - in;
            if (n > len)
                n = len;
            memcpy(buf, s->ct + in, n);
        }
        buf += n;
        offset += n;
        len -= n;
    }
    return CHUTE_OK;
}

void age_source_free(age_source *s)
{
    if (!s)
        return;
    if (s->head) {
        sodium_memzero(s->head, s->head_len);
        free(s->head);
    }
    sodium_memzero(s, sizeof *s);   /* the payload key and both buffers */
    free(s);
}
