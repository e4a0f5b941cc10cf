/* age_fd.c — age between file descriptors, on the streaming API. */
#include "age_fd.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "age_decryptor.h"
#include "age_encryptor.h"
#include "age_stream.h"

/* Big enough that whole chunks take the zero-copy paths. */
#define FD_BUF_BYTES (4 * AGE_CHUNK_CT_BYTES)

static chute_status write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return CHUTE_ERR_IO;
        p += w;
        n -= (size_t)w;
    }
    return CHUTE_OK;
}

static ssize_t read_some(int fd, uint8_t *p, size_t n)
{
    ssize_t r;
    do
        r = read(fd, p, n);
    while (r < 0 && errno == EINTR);
    return r;
}

/* The one pump both directions share: the same calls on either object. */
typedef chute_status (*update_fn)(void *, age_io *);
typedef chute_status (*finish_fn)(void *, age_io *, bool *);

static chute_status enc_update(void *s, age_io *io)
{
    return age_encryptor_update(s, io);
}
static chute_status enc_finish(void *s, age_io *io, bool *done)
{
    return age_encryptor_finish(s, io, done);
}
static chute_status dec_update(void *s, age_io *io)
{
    return age_decryptor_update(s, io);
}
static chute_status dec_finish(void *s, age_io *io, bool *done)
{
    return age_decryptor_finish(s, io, done);
}

static chute_status pump(void *s, update_fn update, finish_fn finish,
                         int in_fd, int out_fd)
{
    uint8_t *in = malloc(FD_BUF_BYTES), *out = malloc(FD_BUF_BYTES);
    chute_status st = in && out ? CHUTE_OK : CHUTE_ERR_NOMEM;
    bool done = false;
    while (st == CHUTE_OK) {
        ssize_t r = read_some(in_fd, in, FD_BUF_BYTES);
        if (r < 0) {
            st = CHUTE_ERR_IO;
            break;
        }
        age_io io = {in, (size_t)r, NULL, 0};
        do {
            io.out = out;
            io.out_len = FD_BUF_BYTES;
            st = r > 0 ? update(s, &io) : finish(s, &io, &done);
            size_t produced = FD_BUF_BYTES - io.out_len;
            if (produced) {
                chute_status wst = write_all(out_fd, out, produced);
                if (st == CHUTE_OK)
                    st = wst;
            }
        } while (st == CHUTE_OK && (r > 0 ? io.in_len > 0 : !done));
        if (r == 0)
            break;
    }
    free(in);
    free(out);
    return st;
}

chute_status age_encrypt_fd(int in_fd, int out_fd,
                            const age_recipient *recipients, size_t n,
                            uint8_t mac[AGE_MAC_BYTES])
{
    age_encryptor *e = NULL;
    chute_status st = age_encryptor_new(&e, recipients, n);
    if (st != CHUTE_OK)
        return st;
    if (mac)
        age_encryptor_header_mac(e, mac);
    st = pump(e, enc_update, enc_finish, in_fd, out_fd);
    age_encryptor_free(e);
    return st;
}

chute_status age_decrypt_fd(int in_fd, int out_fd, const age_identity *ids,
                            size_t n_ids, uint8_t mac[AGE_MAC_BYTES])
{
    age_decryptor *d = NULL;
    chute_status st = age_decryptor_new(&d, ids, n_ids);
    if (st != CHUTE_OK)
        return st;
    st = pump(d, dec_update, dec_finish, in_fd, out_fd);
    if (st == CHUTE_OK && mac)
        st = age_decryptor_header_mac(d, mac);
    age_decryptor_free(d);
    return st;
}
