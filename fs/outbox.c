/* outbox.c — see outbox.h. */
#include "outbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "caller.h"
#include "growing.h"
#include "handle.h"
#include "pagecache.h"
#include "prealloc.h"
#include "meta.h"
#include "names.h"
#include "report.h"
#include "reseal.h"
#include "seal.h"
#include "staging.h"

#define STATE_XATTR "user.chute.state"
#define ERROR_XATTR "user.chute.error"   /* the last upload error, while there is one */
/* The preferred I/O size stat reports: cp, dd-less tools and most copy
 * loops size their buffer from it, and each write(2) is one FUSE round
 * trip (up to the 1 MiB max_write); 1 MiB instead of 4 KiB makes cp's
 * 128 KiB writes 1 MiB ones. */
#define OUTBOX_IO_SIZE (1 << 20)

#define STAGE(fs, peer, rel, var) \
    char var[PATH_MAX]; \
    do { int rc_ = staging_path(fs, peer, rel, var, sizeof var); \
         if (rc_) return rc_; } while (0)

/* A path in the outbox travels in the sealed meta, which holds at most
 * META_PATH_MAX bytes: a longer one is refused when it is made, not at a
 * seal that could never succeed. */
static bool path_fits(const char *rel, size_t below)
{
    size_t n = strlen(rel);
    return n <= META_PATH_MAX && below <= META_PATH_MAX - n;
}

/* The length of the longest path below the folder fd `folder` (consumed),
 * relative to it: "a/bc" is 4; 0 when empty. */
static int longest_below(int folder, size_t *out)
{
    *out = 0;
    DIR *d = fdopendir(folder);
    if (!d) { int e = errno; close(folder); return -e; }
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        size_t len = strlen(e->d_name), sub = 0;
        int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            rc = longest_below(fd, &sub);
            len += 1 + sub;
        } else if (errno != ENOTDIR && errno != ELOOP && errno != EACCES) {
            rc = -errno;                /* unreadable: counted by its own name */
        }
        if (len > *out) *out = len;
    }
    closedir(d);
    return rc;
}

static bool sendable(const char *rel) { return !names_is_temporary_path(rel); }

static bool writable(int flags) { return (flags & O_ACCMODE) != O_RDONLY; }

/* ---- sending while written (growing.h) ---------------------------------
 * Under ofiles_lock: f is no longer only appended to. Its early send, if
 * any, is handed to the caller, to be cancelled (seal_grow_cancel) once
 * the lock is let go. */
static growing *stop_growing(ofile *f)
{
    growing *g = f->g;
    f->g = NULL;
    f->appending = false;
    return g;
}

/* Under ofiles_lock, after a whole append made f append_end bytes long:
 * should it start going now? */
static bool should_grow(chutefs *fs, const ofile *f)
{
    return fs->up && !f->g && !f->grow_starting && f->appending &&
           f->append_end >= GROWING_MIN_BYTES &&
           !f->unlinked && !f->write_failed && sendable(f->path);
}

/* With the content lock held (the inode at the path is the one written):
 * start sending it; a failure only means it goes at its close. */
static void start_growing(chutefs *fs, ofile *f)
{
    ofiles_lock(fs->open);
    bool go = should_grow(fs, f);
    char *peer = go ? strdup(f->peer) : NULL, *rel = go ? strdup(f->path) : NULL;
    uint64_t size = f->append_end;
    if (go) f->grow_starting = true;
    ofiles_unlock(fs->open);
    if (!go) return;
    growing *g = NULL;
    if (peer && rel && seal_grow_start(fs, peer, rel, size, &g) != CHUTE_OK) g = NULL;
    free(peer);
    free(rel);
    ofiles_lock(fs->open);
    /* Meanwhile another write, a truncate or an unlink may have come
     * (stop_growing found nothing to stop then, but ended appending). */
    f->grow_starting = false;
    bool keep = g && f->appending && !f->unlinked && !f->write_failed && sendable(f->path);
    if (keep) {
        f->g = g;
        g = NULL;
    }
    uint64_t now = f->append_end;
    growing *tell = keep ? f->g : NULL;
    if (tell) growing_ref(tell);
    ofiles_unlock(fs->open);
    seal_grow_cancel(fs, g);
    if (tell) {
        growing_grew(tell, now);
        growing_release(fs->growing, tell);
    }
}

/* How long a last close waits for the releases of writers closed just
 * before it (they take microseconds; a writer still open never comes). */
#define RELEASE_WAIT_MS 250

/* With the ofiles lock held: h is in use again (or releasing), no longer
 * counted among the writers whose close was flushed. */
static void handle_unflush(handle *h)
{
    if (!h->flushed) return;
    h->flushed = false;
    h->of->writers_flushed--;
}

/* With the ofiles lock held, before h changes its file: a file marked as
 * owed a seal (staging.h) is not what was closed any more; its last close
 * seals it (dirty: even if the change fails, the seal is owed). Under the
 * lock, so the mark never outlives a first change. */
static void unmark_before_change(handle *h)
{
    if (!h->of->unsealed) return;
    staging_clear_unsealed(h->fd);
    h->of->unsealed = false;
    h->of->dirty = true;
}

/* A seal's failure as close(2), truncate(2) or rename(2) tell it. */
static int seal_errno(chute_status st)
{
    return st == CHUTE_OK ? 0 : st == CHUTE_ERR_FULL ? -ENOSPC : -EIO;
}

/* A closed file the queue could not take (seal_failure_passes): while a
 * handle has it open, its next close tries again; once none has, it is
 * marked and sealed again later (reseal.h). The mark is set under the
 * lock an open checks it under. */
static void not_queued(chutefs *fs, const char *peer, const char *rel, chute_status why)
{
    char path[PATH_MAX];
    if (!seal_failure_passes(why) || staging_path(fs, peer, rel, path, sizeof path)) return;
    ofiles_lock(fs->open);
    ofile *of = ofiles_find(fs->open, peer, rel);
    struct stat sb;
    bool marked = false;
    if (of) of->dirty = true;
    /* Not a file whose write or fsync failed (it stays local), nor one a
     * seal linked meanwhile (another close queued what is there now). */
    else if (lstat(path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_nlink == 1 &&
             !staging_is_cut_at(path))
        marked = staging_mark_unsealed_at(path);
    ofiles_unlock(fs->open);
    if (marked) resealer_note(fs->reseal, peer, rel, why);
}

/* ---- copy-on-write ----------------------------------------------------
 * A sealed item's plaintext is a hard link to its staging file (seal.c).
 * Before a handle changes the file, it gets an inode of its own; a handle
 * left on an inode that is no longer at its path (another handle copied,
 * a truncate by name) is pointed at the one there now. */

typedef enum { USE, CHANGE, EMPTY } intent;   /* EMPTY: a change to size 0 */

/* Point h's fd at the file at path, opened in h's own access mode. */
static int reopen_at(handle *h, const char *path)
{
    int fd = open(path, (h->flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_DIRECT)) |
                        O_CLOEXEC);
    if (fd < 0) return -errno;
    /* The fd number stays: dup2 swaps the file under it in one step. */
    int rc = dup2(fd, h->fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* The same for the file open as `from` (its /proc link works for a file
 * no longer at any path). */
static int reopen_onto(handle *h, int from)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", from);
    return reopen_at(h, link);
}

/* An unlinked file (or one replaced by a rename): no path sees its inode,
 * but a sealed item still may, until the file that replaced it is sealed.
 * Before the first change its handles move, together, to a private copy;
 * one that has not moved yet (a reader) follows on its next use. */
static int fix_orphan_handle(chutefs *fs, handle *h, intent why)
{
    struct stat hb;
    if (fstat(h->fd, &hb) != 0) return -errno;
    ofiles_lock(fs->open);
    int orphan = h->of->orphan_fd;
    ino_t ino = h->of->ino;
    ofiles_unlock(fs->open);
    if (orphan >= 0) return hb.st_ino == ino ? 0 : reopen_onto(h, orphan);
    if (why == USE || hb.st_nlink == 0) return 0;
    int copy = staging_orphan_copy(fs, h->fd, why != EMPTY);
    if (copy < 0) return copy;
    struct stat cb;
    if (fstat(copy, &cb) != 0) { int e = errno; close(copy); return -e; }
    ofiles_lock(fs->open);
    h->of->orphan_fd = copy;
    h->of->ino = cb.st_ino;
    ofiles_unlock(fs->open);
    return reopen_onto(h, copy);
}

/* Under the content lock exclusive: put h right. */
static int fix_handle(chutefs *fs, handle *h, intent why)
{
    ofiles_lock(fs->open);
    bool unlinked = h->of->unlinked;
    char *peer = strdup(h->of->peer), *rel = strdup(h->of->path);
    ofiles_unlock(fs->open);
    char path[PATH_MAX];
    struct stat pb, hb;
    int rc = !peer || !rel ? -ENOMEM : 0;
    if (!rc && !unlinked) rc = staging_path(fs, peer, rel, path, sizeof path);
    free(peer);
    free(rel);
    if (rc) return rc;
    if (unlinked) return fix_orphan_handle(fs, h, why);
    if (lstat(path, &pb) != 0) return -errno;
    if (why != USE && pb.st_nlink > 1) {
        if ((rc = staging_unshare(fs, path, why != EMPTY))) return rc;
        if (lstat(path, &pb) != 0) return -errno;
    }
    ofiles_lock(fs->open);
    h->of->ino = pb.st_ino;
    ofiles_unlock(fs->open);
    if (fstat(h->fd, &hb) != 0) return -errno;
    if (hb.st_ino == pb.st_ino) return 0;
    return reopen_at(h, path);
}

/* Make h fit for use (why: how) and return with the content lock held
 * shared — the caller does its I/O, then ofiles_content_unlock — or
 * -errno with no lock held. */
static int handle_begin(chutefs *fs, handle *h, intent why)
{
    for (int tries = 0; tries < 8; tries++) {
        ofiles_content_shared(fs->open);
        struct stat sb;
        if (fstat(h->fd, &sb) != 0) {
            int e = errno;
            ofiles_content_unlock(fs->open);
            return -e;
        }
        ofiles_lock(fs->open);
        bool live = !h->of->unlinked;
        /* Not on the inode its file is now: at the path, or the private
         * copy an unlinked file's handles moved to. */
        bool stale = (live || h->of->orphan_fd >= 0) && sb.st_ino != h->of->ino;
        /* Linked by sealed/ too (an unlinked file's only link is there). */
        bool shared = why != USE && sb.st_nlink > (live ? 1u : 0u);
        ofiles_unlock(fs->open);
        if (!stale && !shared) return 0;
        ofiles_content_unlock(fs->open);
        ofiles_content_excl(fs->open);
        int rc = fix_handle(fs, h, why);
        ofiles_content_unlock(fs->open);
        if (rc) return rc;
        /* Again under the shared lock: a seal may have linked it since. */
    }
    return -EIO;
}

/* The staging file's stat as the outbox shows it. A queued file's second
 * link is ours (sealed/<id>.plain): shown, it would make gzip, bzip2 and
 * xz refuse the file ("has 1 other link") and editors change how they
 * save it. */
static void outbox_stat(struct stat *st)
{
    st->st_blksize = OUTBOX_IO_SIZE;
    if (S_ISREG(st->st_mode) && st->st_nlink > 1) st->st_nlink = 1;
}

int outbox_getattr(chutefs *fs, const char *peer, const char *rel, struct stat *st,
                   struct fuse_file_info *fi)
{
    if (fi && fi->fh) {
        handle *h = (handle *)(uintptr_t)fi->fh;
        int rc = handle_begin(fs, h, USE);
        if (rc) return rc;
        rc = fstat(h->fd, st) == 0 ? 0 : -errno;
        ofiles_content_unlock(fs->open);
        if (!rc) outbox_stat(st);
        return rc;
    }
    STAGE(fs, peer, rel, path);
    if (lstat(path, st) != 0) return -errno;
    outbox_stat(st);
    return 0;
}

int outbox_readdir(chutefs *fs, const char *peer, const char *rel, void *buf,
                   fuse_fill_dir_t filler)
{
    STAGE(fs, peer, rel, path);
    DIR *d = opendir(path);
    if (!d) return -errno;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (filler(buf, e->d_name, NULL, 0, 0)) break;
    }
    closedir(d);
    return 0;
}

int outbox_mkdir(chutefs *fs, const char *peer, const char *rel, mode_t mode)
{
    if (!path_fits(rel, 0)) return -ENAMETOOLONG;
    STAGE(fs, peer, rel, path);
    if (mkdir(path, mode) != 0) return -errno;
    /* The mode asked for, as the kernel masked it; not ours on top. */
    return chmod(path, mode & 07777) == 0 ? 0 : -errno;
}

int outbox_rmdir(chutefs *fs, const char *peer, const char *rel)
{
    if (!*rel) return -EPERM;
    STAGE(fs, peer, rel, path);
    return rmdir(path) == 0 ? 0 : -errno;
}

/* Open the staging file and count the handle. */
static int open_handle(chutefs *fs, const char *peer, const char *rel, int flags,
                       mode_t mode, bool created, struct fuse_file_info *fi)
{
    STAGE(fs, peer, rel, path);
    handle *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    h->kind = H_OUTBOX;
    h->flags = flags;
    /* A truncating open of a queued file must not empty the item's copy:
     * it gets a new empty inode instead (exclusive: it replaces one). */
    bool trunc = flags & O_TRUNC;
    if (trunc) ofiles_content_excl(fs->open);
    else ofiles_content_shared(fs->open);
    struct stat sb;
    int rc = 0;
    growing *stopped = NULL;
    if (trunc && lstat(path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_nlink > 1)
        rc = staging_unshare(fs, path, false);
    /* O_APPEND is the kernel's business with writeback off: it sends the
     * offsets; pwrite on an O_APPEND fd would ignore them. O_DIRECT would
     * refuse libfuse's unaligned buffers (EINVAL); the seal's fsync makes
     * the bytes durable anyway. */
    h->fd = rc ? -1 : open(path, (flags & ~(O_APPEND | O_DIRECT)) | O_CLOEXEC, mode);
    if (!rc && h->fd < 0) rc = -errno;
    /* The mode asked for, as the kernel masked it; not ours on top. */
    if (!rc && created && fchmod(h->fd, mode & 07777) != 0) rc = -errno;
    if (!rc && fstat(h->fd, &sb) != 0) rc = -errno;
    /* A write failed on it before, and it was not emptied since. */
    bool cut = !rc && !trunc && !created && staging_is_cut(h->fd);
    if (!rc) {
        pid_t who = created || trunc ? caller_process() : 0;   /* not under the lock */
        ofiles_lock(fs->open);
        h->of = ofiles_acquire(fs->open, peer, rel);
        if (h->of) h->of->ino = sb.st_ino;   /* what is at the path now */
        if (h->of && writable(flags)) h->of->writers++;
        if (h->of && (created || trunc)) {
            h->of->dirty = true;
            h->of->changer = who;
        }
        /* The mark follows write_failed under the lock, so a failed write
         * and an emptying on two handles leave the two in agreement. */
        if (h->of && trunc) {   /* written anew */
            h->of->write_failed = false;
            h->of->unsealed = false;
            if (!created) {   /* a new file has no marks */
                staging_clear_cut(h->fd);
                staging_clear_unsealed(h->fd);
            }
        } else if (h->of && writable(flags) && !created && staging_is_unsealed(h->fd)) {
            h->of->unsealed = true;   /* under the lock, as it is set (not_queued) */
        }
        if (h->of && cut) h->of->write_failed = true;
        if (h->of && h->of->opens == 1) {   /* appends from here on may go early */
            h->of->appending = true;
            h->of->append_end = (unsigned long long)sb.st_size;
        } else if (h->of && trunc) {
            stopped = stop_growing(h->of);   /* emptied under another handle */
        }
        ofiles_unlock(fs->open);
        if (!h->of) rc = -ENOMEM;
    }
    ofiles_content_unlock(fs->open);
    seal_grow_cancel(fs, stopped);
    if (rc) { if (h->fd >= 0) close(h->fd); free(h); return rc; }
    fi->fh = (uint64_t)(uintptr_t)h;
    /* A write-only handle (cp, dd, tar, rsync, a shell's >) goes around the
     * kernel's page cache of the mount: written through it, every byte
     * also took a page there, kept after the close, that nobody reads (the
     * staging file holds the data). Such a handle cannot be mmapped or
     * read, so nothing else changes; others stay cached. */
    if ((flags & O_ACCMODE) == O_WRONLY) fi->direct_io = 1;
    return 0;
}

int outbox_create(chutefs *fs, const char *peer, const char *rel, mode_t mode,
                  struct fuse_file_info *fi)
{
    if (!path_fits(rel, 0)) return -ENAMETOOLONG;
    return open_handle(fs, peer, rel, fi->flags | O_CREAT, mode, true, fi);
}

int outbox_open(chutefs *fs, const char *peer, const char *rel,
                struct fuse_file_info *fi)
{
    return open_handle(fs, peer, rel, fi->flags & ~O_CREAT, 0, false, fi);
}

int outbox_read(chutefs *fs, char *buf, size_t size, off_t off,
                struct fuse_file_info *fi)
{
    handle *h = (handle *)(uintptr_t)fi->fh;
    int rc = handle_begin(fs, h, USE);
    if (rc) return rc;
    ssize_t n = pread(h->fd, buf, size, off);
    rc = n < 0 ? -errno : (int)n;
    ofiles_content_unlock(fs->open);
    return rc;
}

int outbox_write(chutefs *fs, const char *buf, size_t size, off_t off,
                 struct fuse_file_info *fi)
{
    handle *h = (handle *)(uintptr_t)fi->fh;
    pid_t writer = caller_process();
    int rc = handle_begin(fs, h, CHANGE);
    if (rc) return rc;
    ofile *of = h->of;
    /* An append, alone in flight, keeps the file fit to go early; any
     * other write ends that. */
    ofiles_lock(fs->open);
    handle_unflush(h);   /* written through after a close of a dup of it */
    unmark_before_change(h);
    bool append = of->appending && (uint64_t)off == of->append_end && !of->writes_in_flight;
    growing *stopped = append ? NULL : stop_growing(of);
    if (append) of->writes_in_flight++;
    ofiles_unlock(fs->open);
    ssize_t n = pwrite(h->fd, buf, size, off);
    rc = n < 0 ? -errno : (int)n;
    /* Write-behind and drop-behind: the fsync of the seal at close finds
     * little left to do, and a big file does not fill memory. A write
     * error it meets is the file's: bytes written before are lost, and the
     * seal's fsync would no longer say so. */
    int lost = n > 0 ? pagecache_wrote(h->fd, off, off + n) : 0;
    if (lost) {
        fprintf(stderr, "chutefs: an outbox file could not be written to disk (%s): "
                        "it will not be sent\n", strerror(-lost));
        n = -1;
        rc = -EIO;
    }
    if (n > 0) prealloc_grew(h->fd, off, off + n);   /* its blocks ahead of it */
    ofiles_lock(fs->open);
    if (n > 0) of->dirty = of->written = true;
    if (n > 0) of->changer = writer;
    if (n < 0 && !of->write_failed) staging_mark_cut(h->fd);   /* kept past the last close */
    if (n < 0) of->write_failed = true;
    growing *grew = NULL;
    bool start = false;
    if (append) {
        of->writes_in_flight--;
        if (n == (ssize_t)size) {
            of->append_end += (uint64_t)n;
            if ((grew = of->g)) growing_ref(grew);
            start = should_grow(fs, of);
        } else if (!stopped) {
            stopped = stop_growing(of);   /* short or failed: not what was meant */
        }
    }
    uint64_t end = of->append_end;
    ofiles_unlock(fs->open);
    if (grew) {
        growing_grew(grew, end);
        growing_release(fs->growing, grew);
    }
    if (start) start_growing(fs, of);
    ofiles_content_unlock(fs->open);
    seal_grow_cancel(fs, stopped);
    return rc;
}

int outbox_truncate(chutefs *fs, const char *peer, const char *rel, off_t size,
                    struct fuse_file_info *fi)
{
    if (fi && fi->fh) {
        handle *h = (handle *)(uintptr_t)fi->fh;
        int rc = handle_begin(fs, h, size == 0 ? EMPTY : CHANGE);
        if (rc) return rc;
        ofiles_lock(fs->open);
        unmark_before_change(h);
        ofiles_unlock(fs->open);
        rc = ftruncate(h->fd, size) == 0 ? 0 : -errno;
        pid_t who = caller_process();
        ofiles_lock(fs->open);
        handle_unflush(h);
        if (!rc) {
            h->of->dirty = true;
            h->of->changer = who;
        }
        if (!rc && size == 0) {
            h->of->write_failed = false;
            staging_clear_cut(h->fd);
        }
        /* To its own size changes nothing (some copiers end so). */
        growing *stopped = (uint64_t)size == h->of->append_end && !rc ? NULL
                           : stop_growing(h->of);
        ofiles_unlock(fs->open);
        ofiles_content_unlock(fs->open);
        seal_grow_cancel(fs, stopped);
        return rc;
    }
    STAGE(fs, peer, rel, path);
    ofiles_content_excl(fs->open);
    struct stat sb;
    int rc = lstat(path, &sb) == 0 ? 0 : -errno;
    if (!rc && S_ISREG(sb.st_mode) && sb.st_nlink > 1)   /* a queued item's plaintext */
        rc = staging_unshare(fs, path, size != 0);
    if (!rc && truncate(path, size) != 0) rc = -errno;
    if (!rc && size == 0) staging_clear_cut_at(path);
    if (!rc && lstat(path, &sb) != 0) rc = -errno;
    /* truncate(2) by name is a complete change: if nobody has the file
     * open, it is sealed now; otherwise at the last close (its handles
     * follow the new inode, see handle_begin). */
    pid_t who = caller_process();
    ofiles_lock(fs->open);
    ofile *of = rc ? NULL : ofiles_find(fs->open, peer, rel);
    if (of) { of->dirty = true; of->ino = sb.st_ino; of->changer = who; of->unsealed = false; }
    if (of && size == 0) of->write_failed = false;
    /* Not what was closed any more: sealed now, or at the last close. */
    if (!rc) staging_clear_unsealed_at(path);
    growing *stopped = of ? stop_growing(of) : NULL;
    ofiles_unlock(fs->open);
    ofiles_content_unlock(fs->open);
    seal_grow_cancel(fs, stopped);
    if (rc || of || !sendable(rel) || staging_is_cut_at(path)) return rc;
    chute_status st = seal_file(fs, peer, rel);
    not_queued(fs, peer, rel, st);
    return seal_errno(st);
}

/* Seal if this is the last handle and the file changed. Called from flush
 * (close(2) waits for it) and from release (a fallback when several
 * handles closed at once and no flush saw itself as the last).
 *
 * A flush of a file that is still empty and was never written waits for
 * the release: `cmd > file` and `dd of=file` open, dup2 the fd and close
 * the first one before writing a byte, and that close would have sent an
 * empty file first (delivered as "file" and the real one as "file (2)"
 * if it got there before the rest was written). */
static int maybe_seal(chutefs *fs, handle *h, bool at_flush, chute_status *why)
{
    *why = CHUTE_OK;
    struct stat sb;
    bool empty = at_flush && fstat(h->fd, &sb) == 0 && sb.st_size == 0;
    pid_t closer = at_flush ? caller_process() : 0;
    ofiles_lock(fs->open);
    ofile *of = h->of;
    if (empty && !of->written) {
        ofiles_unlock(fs->open);
        return 0;
    }
    /* A flush from a process that did not make the change — a child
     * closing the descriptors it inherited, at its exec or exit — is not
     * the end of the writing: the changer's own close, or the release
     * after the last one, seals the file. */
    if (closer && of->changer && closer != of->changer) {
        ofiles_unlock(fs->open);
        return 0;
    }
    /* The kernel sends a release without waiting for it: an earlier
     * writer's close may have returned with its release still on its way.
     * If every other writer was flushed since it last wrote, wait a
     * moment for those releases; one that does not come is a writer
     * still open (a dup of it was closed), and this close is not last. */
    if (at_flush && writable(h->flags) && !h->flushed) {
        h->flushed = true;
        of->writers_flushed++;
    }
    int mine = h->flushed ? 1 : 0;
    if (at_flush) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += RELEASE_WAIT_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
        while (of->writers - of->writers_releasing - of->writers_flushed <= 0 &&
               of->writers_flushed > mine && ofiles_wait_release(fs->open, &until)) {}
    }
    /* After a failed write (the writer was told) the file is not what it
     * meant to send: it stays local, never sent cut short. The last writer
     * to close seals; a reader's close seals only what no writer holds
     * (a truncate or rename by name while it was open). */
    bool last = of->writers - of->writers_releasing - mine <= 0;
    bool go = last && of->dirty && !of->unlinked && !of->write_failed && sendable(of->path);
    char *peer = go ? strdup(of->peer) : NULL, *rel = go ? strdup(of->path) : NULL;
    if (go) of->dirty = false;
    /* The last close ends an early send: sealed with the file, or not. */
    growing *g = last ? of->g : NULL;
    if (last) of->g = NULL;
    uint64_t size = of->append_end;
    ofiles_unlock(fs->open);
    if (!go) {
        seal_grow_cancel(fs, g);
        return 0;
    }
    if (!peer || !rel) { *why = CHUTE_ERR_NOMEM; seal_grow_cancel(fs, g); }
    else *why = seal_file_grown(fs, peer, rel, g, size);
    int rc = seal_errno(*why);
    if (rc) {   /* not queued: the next close tries again, unless a failed
                 * fsync marked the file (seal.c): then it stays local */
        bool cut = staging_is_cut(h->fd);
        ofiles_lock(fs->open);
        of->dirty = true;
        if (cut) of->write_failed = true;
        ofiles_unlock(fs->open);
    }
    free(peer);
    free(rel);
    return rc;
}

int outbox_fallocate(chutefs *fs, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
    handle *h = (handle *)(uintptr_t)fi->fh;
    /* Reserving blocks only (KEEP_SIZE) leaves the bytes as they are;
     * anything else (growing, punching, zeroing, shifting) changes them. */
    bool change = mode != FALLOC_FL_KEEP_SIZE;
    pid_t who = caller_process();
    int rc = handle_begin(fs, h, change ? CHANGE : USE);
    if (rc) return rc;
    ofiles_lock(fs->open);
    if (change) {
        handle_unflush(h);
        unmark_before_change(h);
    }
    growing *stopped = change ? stop_growing(h->of) : NULL;
    ofiles_unlock(fs->open);
    rc = fallocate(h->fd, mode, off, len) == 0 ? 0 : -errno;
    /* Failed, it may still have grown the file part of the way. */
    if (change) {
        ofiles_lock(fs->open);
        h->of->dirty = true;
        h->of->changer = who;
        ofiles_unlock(fs->open);
    }
    ofiles_content_unlock(fs->open);
    seal_grow_cancel(fs, stopped);
    return rc;
}

int outbox_flush(chutefs *fs, struct fuse_file_info *fi)
{
    handle *h = (handle *)(uintptr_t)fi->fh;
    chute_status why;
    return maybe_seal(fs, h, true, &why);
}

/* After the last close of a file whose item was delivered meanwhile: it
 * leaves the outbox now, as it would have then — unless it was opened
 * again, changed (a write made a new inode or queued it: linked twice)
 * or replaced since. */
static void drop_delivered(chutefs *fs, const char *peer, const char *rel,
                           const struct stat *sent)
{
    char path[PATH_MAX];
    struct stat sb;
    if (staging_path(fs, peer, rel, path, sizeof path) != 0) return;
    ofiles_content_excl(fs->open);
    ofiles_lock(fs->open);
    bool open_again = ofiles_find(fs->open, peer, rel) != NULL;
    ofiles_unlock(fs->open);
    if (!open_again && lstat(path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_nlink == 1 &&
        sb.st_dev == sent->st_dev && sb.st_ino == sent->st_ino)
        unlink(path);
    ofiles_content_unlock(fs->open);
}

/* The last writer leaves a file no seal took (a temporary name, a failed
 * write): the blocks reserved ahead of its writes go back, or a *.part
 * left in the outbox would hold 16 MiB more than it needs for good. */
static void trim_after_last_writer(chutefs *fs, handle *h)
{
    /* A hint, read unlocked: sealed (trimmed), or small, it has none. */
    if (!prealloc_beyond_end(h->fd)) return;
    ofiles_content_excl(fs->open);             /* no write extends it meanwhile */
    ofiles_lock(fs->open);
    /* Every writer left is releasing (this one too): two at once both
     * trim, which is harmless. */
    bool last = h->of->writers <= h->of->writers_releasing;
    ofiles_unlock(fs->open);
    if (last) (void)prealloc_trim(h->fd);      /* advice: keeps its times */
    ofiles_content_unlock(fs->open);
}

int outbox_release(chutefs *fs, struct fuse_file_info *fi)
{
    handle *h = (handle *)(uintptr_t)fi->fh;
    /* Releases run on several threads at once: each counts itself out
     * before it looks, so the last to look sees no other handle left
     * (and a seal is never missed by two releases each seeing the other). */
    ofiles_lock(fs->open);
    handle_unflush(h);   /* counted as releasing from here */
    if (writable(h->flags)) h->of->writers_releasing++;
    ofiles_note_release(fs->open);   /* a flush may be waiting for it */
    ofiles_unlock(fs->open);
    chute_status why;
    if (maybe_seal(fs, h, false, &why) != 0)
        fprintf(stderr, "chutefs: a file could not be queued at its last close: %s\n",
                chute_strstatus(why));
    if (writable(h->flags)) trim_after_last_writer(fs, h);
    close(h->fd);
    ofiles_lock(fs->open);
    if (writable(h->flags)) {
        h->of->writers_releasing--;
        h->of->writers--;
    }
    ofile *of = h->of;
    bool gone = of->opens == 1 && of->delivered && !of->unlinked && !of->dirty &&
                !of->write_failed;
    /* Its seal failed, and this was the last handle: owed a seal now. */
    bool owed = why && of->opens == 1 && !of->unlinked;
    struct stat sent = { .st_dev = of->delivered_dev, .st_ino = of->delivered_ino };
    char *peer = gone || owed ? strdup(of->peer) : NULL;
    char *rel = gone || owed ? strdup(of->path) : NULL;
    ofiles_release(fs->open, of);
    ofiles_unlock(fs->open);
    free(h);
    if (peer && rel && gone) drop_delivered(fs, peer, rel, &sent);
    if (peer && rel && owed) not_queued(fs, peer, rel, why);
    free(peer);
    free(rel);
    return 0;
}

int outbox_fsync(chutefs *fs, int datasync, struct fuse_file_info *fi)
{
    handle *h = (handle *)(uintptr_t)fi->fh;
    int rc = handle_begin(fs, h, USE);
    if (rc) return rc;
    /* A flush can take seconds: not under the lock, where a waiting seal
     * would hold every writer up. A copy-on-write meanwhile is no loss:
     * whatever this handle wrote before it is in an inode a seal fsynced. */
    int fd = dup(h->fd);
    if (fd < 0) rc = -errno;
    ofiles_content_unlock(fs->open);
    if (rc) return rc;
    rc = (datasync ? fdatasync(fd) : fsync(fd)) == 0 ? 0 : -errno;
    if (rc) {
        /* The bytes may be lost, and a later fsync would not say so: the
         * file is treated as one whose write failed (seal.c, presync). */
        ofiles_lock(fs->open);
        if (!h->of->write_failed) staging_mark_cut(fd);
        h->of->write_failed = true;
        ofiles_unlock(fs->open);
    }
    close(fd);
    return rc;
}

int outbox_unlink(chutefs *fs, const char *peer, const char *rel)
{
    STAGE(fs, peer, rel, path);
    ofiles_content_excl(fs->open);   /* no copy-on-write brings it back */
    int rc = unlink(path) == 0 ? 0 : -errno;
    ofiles_lock(fs->open);
    ofile *of = rc ? NULL : ofiles_find(fs->open, peer, rel);
    if (of) of->unlinked = true;   /* still-open handles never seal it */
    growing *stopped = of ? stop_growing(of) : NULL;
    ofiles_unlock(fs->open);
    ofiles_content_unlock(fs->open);
    seal_grow_cancel(fs, stopped);
    if (rc) return rc;
    resealer_forget(fs->reseal, peer, rel);
    /* Deleting before delivery cancels the send; the uploader deletes the
     * relay copy of a cancelled item that got that far. */
    seal_cancel(fs, peer, rel);
    return 0;
}

int outbox_rename(chutefs *fs, const char *peer, const char *from, const char *to,
                  unsigned int flags)
{
    if (!*from || !*to) return -EPERM;
    if (flags & ~(unsigned)RENAME_NOREPLACE) return -EINVAL;
    STAGE(fs, peer, from, src);
    STAGE(fs, peer, to, dst);
    struct stat sb;
    /* Exclusive: a copy-on-write renames over a path too. */
    /* A folder's walk before the lock, not holding every writer up; what
     * is made in it meanwhile is refused at its seal as before. */
    size_t below = 0;
    if (lstat(src, &sb) == 0 && S_ISDIR(sb.st_mode) && strlen(to) > strlen(from)) {
        int fd = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int wrc = fd < 0 ? -errno : longest_below(fd, &below);
        if (wrc) return wrc;
    }
    if (!path_fits(to, below ? below + 1 : 0)) return -ENAMETOOLONG;   /* to/below */
    ofiles_content_excl(fs->open);
    int rc = lstat(src, &sb) == 0 ? 0 : -errno;
    if (!rc && renameat2(AT_FDCWD, src, AT_FDCWD, dst, flags) != 0) rc = -errno;
    if (rc) {
        ofiles_content_unlock(fs->open);
        return rc;
    }
    resealer_move(fs->reseal, peer, from, to);
    if (S_ISDIR(sb.st_mode)) {
        /* The local view moves; items keep the name they were sealed with. */
        ofiles_lock(fs->open);
        ofiles_move(fs->open, peer, from, to);
        ofiles_unlock(fs->open);
        ofiles_content_unlock(fs->open);
        return queue_move(fs->q, peer, from, to) == CHUTE_OK ? 0 : -EIO;
    }
    ofiles_lock(fs->open);
    ofile *old = ofiles_find(fs->open, peer, to);
    growing *replaced = NULL, *hidden = NULL;
    if (old) {
        old->unlinked = true;                /* replaced by the rename */
        replaced = stop_growing(old);
    }
    ofiles_move(fs->open, peer, from, to);
    ofile *of = ofiles_find(fs->open, peer, to);
    if (of) of->dirty = true;                /* sealed under the new name at close */
    if (of && !sendable(to)) hidden = stop_growing(of);
    ofiles_unlock(fs->open);
    ofiles_content_unlock(fs->open);
    seal_grow_cancel(fs, replaced);
    seal_grow_cancel(fs, hidden);
    /* The item sealed under the old name is not this file any more. */
    seal_cancel(fs, peer, from);
    if (!sendable(to)) {                     /* a normal name became temporary */
        seal_cancel(fs, peer, to);
        return 0;
    }
    if (of) return 0;
    /* A file cut short by a failed write stays local under its new name
     * (rsync --partial renames it so after a full disk). */
    if (staging_is_cut_at(dst)) return 0;
    /* The send happens now: "x.part" → "x", or a queued file renamed
     * (a new item under the new name; one at the target is replaced). */
    chute_status st = seal_file(fs, peer, to);
    not_queued(fs, peer, to, st);
    return seal_errno(st);
}

/* After chmod/utimens: a closed, queued file carries the change in its
 * meta if its upload has not begun; otherwise the change stays local. */
static void attrs_changed(chutefs *fs, const char *peer, const char *rel)
{
    /* Open with a change to seal at its close: the seal takes these
     * attributes. Open unchanged (touch -d opens the file to set its
     * times): no close will seal, so now. */
    ofiles_lock(fs->open);
    ofile *of = ofiles_find(fs->open, peer, rel);
    bool pending = of && (of->dirty || of->write_failed);
    ofiles_unlock(fs->open);
    if (!pending && sendable(rel)) (void)seal_refresh_attrs(fs, peer, rel);
}

int outbox_chmod(chutefs *fs, const char *peer, const char *rel, mode_t mode,
                 struct fuse_file_info *fi)
{
    int rc;
    if (fi && fi->fh) {
        handle *h = (handle *)(uintptr_t)fi->fh;
        if ((rc = handle_begin(fs, h, USE))) return rc;
        rc = fchmod(h->fd, mode) == 0 ? 0 : -errno;
        ofiles_content_unlock(fs->open);
    } else {
        STAGE(fs, peer, rel, path);
        struct stat sb;
        /* A folder stays ours to write: the mount (as this user) makes
         * files in it and removes the delivered ones. rsync -a or cp -a
         * from read-only media would otherwise leave it 0555, and every
         * delivered file listed for good. Folders' modes do not travel. */
        if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) mode |= S_IRWXU;
        rc = chmod(path, mode) == 0 ? 0 : -errno;
    }
    if (rc == 0 && *rel) attrs_changed(fs, peer, rel);
    return rc;
}

int outbox_utimens(chutefs *fs, const char *peer, const char *rel,
                   const struct timespec tv[2], struct fuse_file_info *fi)
{
    int rc;
    if (fi && fi->fh) {
        handle *h = (handle *)(uintptr_t)fi->fh;
        if ((rc = handle_begin(fs, h, USE))) return rc;
        rc = futimens(h->fd, tv) == 0 ? 0 : -errno;
        ofiles_content_unlock(fs->open);
    } else {
        STAGE(fs, peer, rel, path);
        rc = utimensat(AT_FDCWD, path, tv, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
    }
    if (rc == 0 && *rel) attrs_changed(fs, peer, rel);
    return rc;
}

/* The state word of a file: open and changed → writing; else its item. */
static int state_of(chutefs *fs, const char *peer, const char *rel, char *out, size_t cap)
{
    STAGE(fs, peer, rel, path);
    struct stat sb;
    if (lstat(path, &sb) != 0) return -errno;
    if (!S_ISREG(sb.st_mode)) return -ENODATA;
    ofiles_lock(fs->open);
    ofile *of = ofiles_find(fs->open, peer, rel);
    bool writing = of && of->dirty;
    bool open_cut = of && of->write_failed;
    ofiles_unlock(fs->open);
    if (open_cut || (!of && staging_is_cut_at(path))) {
        snprintf(out, cap, "write failed");   /* stays local until emptied */
        return 0;
    }
    if (!writing && staging_is_unsealed_at(path)) {
        snprintf(out, cap, "not queued");     /* closed; its seal is retried */
        return 0;
    }
    queue_item *it = malloc(sizeof *it);
    if (!it) return -ENOMEM;
    char buf[32];
    if (!writing && queue_find_active(fs->q, peer, rel, it) == CHUTE_OK)
        snprintf(out, cap, "%s", report_state_text(it, buf, sizeof buf));
    else if (!writing && queue_find_latest(fs->q, peer, rel, it) == CHUTE_OK &&
             it->state == QUEUE_DELIVERED)
        snprintf(out, cap, "delivered");  /* still listed: open, or not yet removed */
    else
        snprintf(out, cap, "writing");    /* open, temporary, or not yet sealed */
    free(it);
    return 0;
}

/* The active item's last error ("" if none) — why a file stays queued —
 * or why a file closed whole is not queued yet. */
static int error_of(chutefs *fs, const char *peer, const char *rel, char *out, size_t cap)
{
    STAGE(fs, peer, rel, path);
    out[0] = '\0';
    if (staging_is_unsealed_at(path)) {
        if (!resealer_error(fs->reseal, peer, rel, out, cap))
            snprintf(out, cap, "not queued yet");
        return 0;
    }
    queue_item *it = malloc(sizeof *it);
    if (!it) return -ENOMEM;
    if (queue_find_active(fs->q, peer, rel, it) == CHUTE_OK)
        snprintf(out, cap, "%s", it->last_error);
    free(it);
    return 0;
}

int outbox_getxattr(chutefs *fs, const char *peer, const char *rel,
                    const char *name, char *value, size_t size)
{
    if (!*rel) return -ENODATA;
    char text[QUEUE_ERR_MAX];
    int rc;
    if (strcmp(name, STATE_XATTR) == 0)
        rc = state_of(fs, peer, rel, text, sizeof text);
    else if (strcmp(name, ERROR_XATTR) == 0)
        rc = error_of(fs, peer, rel, text, sizeof text);
    else
        return -ENODATA;
    if (rc) return rc;
    if (!text[0]) return -ENODATA;
    size_t len = strlen(text);
    if (size == 0) return (int)len;
    if (size < len) return -ERANGE;
    memcpy(value, text, len);
    return (int)len;
}

/* Is the staging file sb the one item it sent? Its sealed plaintext is a
 * hard link to that inode (plain, if it was still there); an item queued
 * by an earlier version has none, and is known by size and mtime. */
static bool is_what_was_sent(const struct stat *sb, const struct stat *plain,
                             const queue_item *it)
{
    if (plain) return sb->st_dev == plain->st_dev && sb->st_ino == plain->st_ino;
    return (uint64_t)sb->st_size == it->size && sb->st_mtim.tv_sec == it->mtime_sec &&
           sb->st_mtim.tv_nsec == it->mtime_nsec;
}

void outbox_delivered(chutefs *fs, const queue_item *it)
{
    char path[PATH_MAX];
    struct stat plain, sb;
    bool have_plain = sealed_path(fs, it->id, ".plain", path, sizeof path) == 0 &&
                      stat(path, &plain) == 0;
    sealed_unlink(fs, it->id);
    queue_item *newer = malloc(sizeof *newer);
    if (!newer) return;
    bool replaced = queue_find_active(fs->q, it->peer, it->path, newer) == CHUTE_OK;
    free(newer);
    ofiles_content_excl(fs->open);
    ofiles_lock(fs->open);
    ofile *of = ofiles_find(fs->open, it->peer, it->path);
    if (of && !replaced && have_plain) {   /* it goes at its last close */
        of->delivered = true;
        of->delivered_dev = plain.st_dev;
        of->delivered_ino = plain.st_ino;
    }
    bool open_now = of != NULL;
    ofiles_unlock(fs->open);
    /* Not a newer file at the same path that is not queued (its write
     * failed, or its seal): that one stays. */
    if (!replaced && !open_now &&
        staging_path(fs, it->peer, it->path, path, sizeof path) == 0 &&
        lstat(path, &sb) == 0 && S_ISREG(sb.st_mode) &&
        is_what_was_sent(&sb, have_plain ? &plain : NULL, it))
        unlink(path);
    ofiles_content_unlock(fs->open);
}
