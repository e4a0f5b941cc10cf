/* chute_blob — the age file of a queued item, byte for byte what the
 * uploader sends: made from the row's header, nonce and file key and the
 * plaintext HOME/spool/sealed/<ID>.plain (lib/age_source.h), or copied from
 * the finished blob <ID>.age of a row from an earlier version. For the
 * system tests, which decrypt it with stock age.
 *
 *   chute_blob HOME ID OUT
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "age_source.h"
#include "queue.h"

static int die(const char *what, const char *why)
{
    fprintf(stderr, "chute_blob: %s: %s\n", what, why);
    return 1;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) return die("usage", "chute_blob HOME ID OUT");
    const char *home = argv[1], *id = argv[2], *out = argv[3];
    char db[4096], path[4096];
    snprintf(db, sizeof db, "%s/chutefs.db", home);
    queue *q = NULL;
    chute_status st = queue_open(db, &q);
    if (st) return die("queue", chute_strstatus(st));
    queue_item *it = malloc(sizeof *it);
    queue_age *age = malloc(sizeof *age);
    if (!it || !age) return die("memory", "out of memory");
    if ((st = queue_get(q, id, it))) return die(id, chute_strstatus(st));
    st = queue_get_age(q, id, age);
    queue_close(q);
    bool legacy = st == CHUTE_ERR_NOT_FOUND;
    if (st && !legacy) return die("age parts", chute_strstatus(st));
    snprintf(path, sizeof path, "%s/spool/sealed/%s%s", home, id, legacy ? ".age" : ".plain");
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) return die(path, strerror(errno));
    age_source *src = NULL;
    if (!legacy) {
        st = age_source_new(&src, age->header, age->header_len, age->nonce, age->file_key,
                            in, it->size);
        if (st) return die("age_source", chute_strstatus(st));
    }
    queue_age_wipe(age);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return die(out, strerror(errno));
    static uint8_t buf[1 << 20];
    for (uint64_t off = 0; off < it->blob_size;) {
        size_t n = it->blob_size - off < sizeof buf ? (size_t)(it->blob_size - off) : sizeof buf;
        if (src) {
            if ((st = age_source_read(src, off, buf, n))) return die("read", chute_strstatus(st));
        } else if (pread(in, buf, n, (off_t)off) != (ssize_t)n) {
            return die(path, "short read");
        }
        if (write_all(fd, buf, n)) return die(out, strerror(errno));
        off += n;
    }
    if (close(fd) != 0) return die(out, strerror(errno));
    age_source_free(src);
    close(in);
    free(it);
    free(age);
    return 0;
}
