/* blobs.c — item bodies as files (see blobs.h). */
#include "blobs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "log.h"
#include "pagecache.h"
#include "prealloc.h"
#include "relay_wire.h"

struct blobs {
    char *dir;          /* DATA/items */
    int dirfd;
    atomic_uint writers;   /* open blob_writers: each may write before it checks */
};

/* Bodies never take the last MIN_FREE bytes of the filesystem: SQLite needs
 * room to record the acks and deletions that free space again. */
#define MIN_FREE (256u << 10)
#define CHECK_EVERY (256u << 10)

struct blob_writer {
    int fd;
    /* The same file opened again, for the drop-behind (pagecache.h): its
     * waits take a write error from this open file only, so fd's
     * fdatasync — on the checkpoint's thread, at any moment — still gets
     * it. -1: no drop-behind. */
    int advice_fd;
    int dirfd;              /* the blobs' folder (borrowed) */
    atomic_uint *writers;   /* the blobs' count of open writers (borrowed) */
    bool created;           /* no offset acknowledged yet: its name may not be durable */
    atomic_bool sync_failed;   /* a sync failed: no later one may vouch for the bytes
                                  (set by the writer or the checkpoint's thread) */
    uint64_t offset;
    uint64_t limit;         /* the body never passes this: nothing is reserved beyond */
    uint64_t unchecked;     /* bytes written since free space was checked */
};

/* CHUTE_ERR_LIMIT when the next CHECK_EVERY bytes (and len) of every open
 * writer could eat into MIN_FREE: each writes that much before it checks
 * again, so one alone must leave room for all of them. */
static chute_status check_space(int fd, size_t len, unsigned writers)
{
    struct statvfs vfs;
    if (fstatvfs(fd, &vfs) != 0)
        return CHUTE_OK;            /* cannot tell: let write() decide */
    uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    uint64_t ahead = ((uint64_t)CHECK_EVERY + len) * (writers ? writers : 1);
    return avail < (uint64_t)MIN_FREE + ahead ? CHUTE_ERR_LIMIT : CHUTE_OK;
}

/* "<inbox>.<item>" or "<inbox>.<item>.part" */
static void body_name(char *out, size_t cap, const char *inbox, const char *item,
                      bool part)
{
    snprintf(out, cap, "%s.%s%s", inbox, item, part ? ".part" : "");
}

#define NAME_MAX_LEN (RELAY_ID_CHARS + 1 + RELAY_ITEM_ID_MAX + 6)

chute_status blobs_open(const char *data_dir, blobs **out)
{
    blobs *b = calloc(1, sizeof *b);
    if (!b)
        return CHUTE_ERR_NOMEM;
    if (asprintf(&b->dir, "%s/items", data_dir) < 0) {
        free(b);
        return CHUTE_ERR_NOMEM;
    }
    if (mkdir(b->dir, 0700) != 0 && errno != EEXIST) {
        log_error("mkdir %s: %s", b->dir, strerror(errno));
        blobs_close(b);
        return CHUTE_ERR_IO;
    }
    b->dirfd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (b->dirfd < 0) {
        log_error("open %s: %s", b->dir, strerror(errno));
        free(b->dir);
        free(b);
        return CHUTE_ERR_IO;
    }
    *out = b;
    return CHUTE_OK;
}

void blobs_close(blobs *b)
{
    if (!b)
        return;
    if (b->dirfd >= 0)
        close(b->dirfd);
    free(b->dir);
    free(b);
}

chute_status blob_append_begin(blobs *b, const char *inbox, const char *item,
                               uint64_t offset, uint64_t limit, blob_writer **out)
{
    char name[NAME_MAX_LEN + 1];
    body_name(name, sizeof name, inbox, item, true);
    blob_writer *w = malloc(sizeof *w);
    if (!w)
        return CHUTE_ERR_NOMEM;
    w->dirfd = b->dirfd;
    w->writers = &b->writers;
    w->created = false;
    atomic_init(&w->sync_failed, false);
    w->advice_fd = -1;
    /* Only a first append makes the file: one missing under a later
     * offset was lost, and an empty one would not bring it back. */
    w->fd = openat(b->dirfd, name, O_WRONLY | O_CLOEXEC | (offset == 0 ? O_CREAT : 0), 0600);
    if (w->fd < 0) {
        log_error("open body %s: %s", name, strerror(errno));
        free(w);
        return CHUTE_ERR_IO;
    }
    struct stat st;
    chute_status rc = CHUTE_OK;
    if (fstat(w->fd, &st) != 0) {
        rc = CHUTE_ERR_IO;
    } else if ((uint64_t)st.st_size < offset) {
        log_error("body %s has %lld bytes, its committed offset is %llu", name,
                  (long long)st.st_size, (unsigned long long)offset);
        rc = CHUTE_ERR_IO;
    } else if ((uint64_t)st.st_size > offset && ftruncate(w->fd, (off_t)offset) != 0) {
        /* Bytes after the committed offset were never acknowledged. */
        rc = CHUTE_ERR_IO;
    } else if (lseek(w->fd, (off_t)offset, SEEK_SET) < 0) {
        rc = CHUTE_ERR_IO;
    }
    if (rc != CHUTE_OK) {
        log_error("prepare body %s: %s", name, strerror(errno));
        close(w->fd);
        free(w);
        return rc;
    }
    w->advice_fd = openat(b->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (w->advice_fd < 0)
        log_warn("open body %s again for its page cache: %s", name, strerror(errno));
    w->offset = offset;
    w->limit = limit;
    /* Nothing acknowledged yet: whichever request made the file, its name
     * is made durable with the first offset (an earlier request may have
     * ended before its sync). */
    w->created = offset == 0;
    w->unchecked = CHECK_EVERY;     /* check before the first write */
    atomic_fetch_add(w->writers, 1);
    *out = w;
    return CHUTE_OK;
}

chute_status blob_part_length(blobs *b, const char *inbox, const char *item, uint64_t *have)
{
    char name[NAME_MAX_LEN + 1];
    body_name(name, sizeof name, inbox, item, true);
    struct stat st;
    *have = 0;
    if (fstatat(b->dirfd, name, &st, 0) == 0) {
        *have = (uint64_t)st.st_size;
        return CHUTE_OK;
    }
    if (errno == ENOENT)
        return CHUTE_OK;
    log_error("stat body %s: %s", name, strerror(errno));
    return CHUTE_ERR_IO;
}

chute_status blob_write(blob_writer *w, const void *buf, size_t len)
{
    const char *p = buf;
    w->unchecked += len;
    if (w->unchecked >= CHECK_EVERY) {
        if (check_space(w->fd, len, atomic_load(w->writers)) != CHUTE_OK) {
            log_warn("data folder nearly full: refusing more body bytes");
            return CHUTE_ERR_LIMIT;
        }
        w->unchecked = 0;
    }
    while (len > 0) {
        ssize_t n = write(w->fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error("write body: %s", strerror(errno));
            return errno == ENOSPC || errno == EDQUOT ? CHUTE_ERR_LIMIT : CHUTE_ERR_IO;
        }
        /* A body is read once, by its owner: it need not stay in memory.
         * A write error met on the way is the body's (see sync_failed). */
        int lost = pagecache_wrote(w->advice_fd, (off_t)w->offset,
                                   (off_t)(w->offset + (uint64_t)n));
        if (lost) {
            log_error("write body back to disk: %s", strerror(-lost));
            atomic_store(&w->sync_failed, true);
            return CHUTE_ERR_IO;
        }
        prealloc_grew_within(w->fd, (off_t)w->offset, (off_t)(w->offset + (uint64_t)n),
                             w->limit > INT64_MAX ? INT64_MAX : (off_t)w->limit);
        p += n;
        len -= (size_t)n;
        w->offset += (uint64_t)n;
    }
    return CHUTE_OK;
}

chute_status blob_writer_sync(blob_writer *w)
{
    /* Linux reports a writeback error once and marks the lost pages clean:
     * a later fdatasync returns 0 without the bytes being on disk. */
    if (atomic_load(&w->sync_failed))
        return CHUTE_ERR_IO;
    if (fdatasync(w->fd) != 0) {
        log_error("fdatasync body: %s", strerror(errno));
        atomic_store(&w->sync_failed, true);
        return CHUTE_ERR_IO;
    }
    /* A new file's bytes are durable, its name only once the folder is
     * (POSIX; ext4 happens to do both): before an offset counts on it. */
    if (w->created && fsync(w->dirfd) != 0) {
        log_error("fsync the items folder: %s", strerror(errno));
        return CHUTE_ERR_IO;
    }
    w->created = false;
    return CHUTE_OK;
}

uint64_t blob_writer_offset(const blob_writer *w) { return w->offset; }

void blob_writer_close(blob_writer *w)
{
    if (!w)
        return;
    /* What was reserved ahead goes back: an upload left here may never
     * resume (until its item expires), and one that does reserves again. */
    (void)prealloc_trim(w->fd);
    atomic_fetch_sub(w->writers, 1);
    if (w->advice_fd >= 0)
        close(w->advice_fd);
    close(w->fd);
    free(w);
}

chute_status blob_finish(blobs *b, const char *inbox, const char *item, uint64_t size,
                         uint64_t *have)
{
    char part[NAME_MAX_LEN + 1], final[NAME_MAX_LEN + 1];
    body_name(part, sizeof part, inbox, item, true);
    body_name(final, sizeof final, inbox, item, false);
    *have = 0;
    /* Complete: what was reserved beyond its end goes back (advice). */
    int part_fd = openat(b->dirfd, part, O_WRONLY | O_CLOEXEC);
    if (part_fd >= 0) {
        struct stat st;
        bool whole = fstat(part_fd, &st) != 0 || (uint64_t)st.st_size >= size;
        if (whole) (void)prealloc_trim(part_fd);
        close(part_fd);
        if (!whole) {
            *have = (uint64_t)st.st_size;
            log_error("body %s has %llu of its %llu bytes", part,
                      (unsigned long long)*have, (unsigned long long)size);
            return CHUTE_ERR_TRUNCATED;
        }
    }
    if (renameat(b->dirfd, part, b->dirfd, final) != 0) {
        int err = errno;
        struct stat st;
        if (err != ENOENT) {
            log_error("rename body %s: %s", part, strerror(err));
            return CHUTE_ERR_IO;
        }
        /* Already final: renamed by a call that crashed or whose folder
         * sync failed, so the rename may not be durable yet; the fsync
         * below still vouches for it (or the commit waits). */
        bool renamed = fstatat(b->dirfd, final, &st, 0) == 0;
        if (!renamed && size > 0) {
            log_error("body %s is missing", part);
            return CHUTE_ERR_TRUNCATED;
        }
        if (!renamed) {
            /* A body that never got a byte: create it empty. */
            int fd = openat(b->dirfd, final, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
            if (fd < 0) {
                log_error("create body %s: %s", final, strerror(errno));
                return CHUTE_ERR_IO;
            }
            close(fd);
        }
    }
    /* The rename is durable once the folder is. */
    if (fsync(b->dirfd) != 0) {
        log_error("fsync %s: %s", b->dir, strerror(errno));
        return CHUTE_ERR_IO;
    }
    return CHUTE_OK;
}

chute_status blob_open_read(blobs *b, const char *inbox, const char *item,
                            bool complete, int *fd)
{
    char name[NAME_MAX_LEN + 1];
    *fd = -1;
    /* An uploading body may become final between our look and the open:
     * try both names. */
    for (int i = complete ? 1 : 0; i < 2; i++) {
        body_name(name, sizeof name, inbox, item, i == 0);
        *fd = openat(b->dirfd, name, O_RDONLY | O_CLOEXEC);
        if (*fd >= 0)
            return CHUTE_OK;
        if (errno != ENOENT) {
            log_error("open body %s: %s", name, strerror(errno));
            return CHUTE_ERR_IO;
        }
    }
    return complete ? CHUTE_ERR_NOT_FOUND : CHUTE_OK;
}

struct blob_reader {
    int fd;
    uint64_t first;
    pagecache_stream read;
    pagecache_follower *follower;   /* NULL: not following an upload */
};

chute_status blob_reader_new(int fd, uint64_t first, bool following, blob_reader **out)
{
    blob_reader *r = malloc(sizeof *r);
    if (!r) {
        close(fd);
        return CHUTE_ERR_NOMEM;
    }
    r->fd = fd;
    r->first = first;
    r->read.released = (off_t)first;
    r->follower = following ? pagecache_follow(fd, (off_t)first) : NULL;
    *out = r;
    return CHUTE_OK;
}

ssize_t blob_reader_read(blob_reader *r, uint64_t pos, void *buf, size_t max)
{
    ssize_t n;
    do {
        n = pread(r->fd, buf, max, (off_t)(r->first + pos));
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        log_error("read body: %s", strerror(errno));
    else {
        pagecache_read_to(&r->read, r->fd, (off_t)(r->first + pos) + n);
        pagecache_follow_at(r->follower, (off_t)(r->first + pos) + n);
    }
    return n;
}

void blob_reader_free(blob_reader *r)
{
    if (!r)
        return;
    pagecache_unfollow(r->follower);
    close(r->fd);
    free(r);
}

void blob_remove(blobs *b, const char *inbox, const char *item)
{
    char name[NAME_MAX_LEN + 1];
    /* The part first: a commit renaming it to final meanwhile either finds
     * it gone or leaves a final that the second unlink takes. */
    for (int part = 1; part >= 0; part--) {
        body_name(name, sizeof name, inbox, item, part);
        if (unlinkat(b->dirfd, name, 0) != 0 && errno != ENOENT)
            log_warn("unlink body %s: %s", name, strerror(errno));
    }
}

void blobs_remove_orphans(blobs *b, blob_live_fn is_live, void *cls)
{
    int fd = openat(b->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *e;
    int removed = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char inbox[RELAY_ID_CHARS + 1], item[RELAY_ITEM_ID_MAX + 1];
        const char *dot = strchr(e->d_name, '.');
        bool ok = dot && (size_t)(dot - e->d_name) == RELAY_ID_CHARS;
        size_t rest = ok ? strlen(dot + 1) : 0;
        if (ok && rest > 5 && strcmp(dot + 1 + rest - 5, ".part") == 0)
            rest -= 5;
        ok = ok && relay_valid_item_id(dot + 1, rest);
        if (!ok)
            continue;               /* not ours: leave it alone */
        memcpy(inbox, e->d_name, RELAY_ID_CHARS);
        inbox[RELAY_ID_CHARS] = '\0';
        memcpy(item, dot + 1, rest);
        item[rest] = '\0';
        if (!is_live(cls, inbox, item)) {
            if (unlinkat(b->dirfd, e->d_name, 0) == 0)
                removed++;
        }
    }
    closedir(d);
    if (removed)
        log_info("removed %d orphaned item bodies", removed);
}
