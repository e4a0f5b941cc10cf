/* outbox.c — see outbox.h. */
#include "outbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "handle.h"
#include "names.h"
#include "report.h"
#include "seal.h"
#include "staging.h"

#define STATE_XATTR "user.chute.state"
#define ERROR_XATTR "user.chute.error"   /* the last upload error, while there is one */

#define STAGE(fs, peer, rel, var) \
    char var[PATH_MAX]; \
    do { int rc_ = staging_path(fs, peer, rel, var, sizeof var); \
         if (rc_) return rc_; } while (0)

static const char *base_of(const char *rel)
{
    const char *s = strrchr(rel, '/');
    return s ? s + 1 : rel;
}

static bool sendable(const char *rel) { return !names_is_temporary(base_of(rel)); }

int outbox_getattr(chutefs *fs, const char *peer, const char *rel, struct stat *st,
                   struct fuse_file_info *fi)
{
    if (fi && fi->fh) {
        handle *h = (handle *)(uintptr_t)fi->fh;
        return fstat(h->fd, st) == 0 ? 0 : -errno;
    }
    STAGE(fs, peer, rel, path);
    return lstat(path, st) == 0 ? 0 : -errno;
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
    STAGE(fs, peer, rel, path);
    return mkdir(path, mode) == 0 ? 0 : -errno;
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
    /* O_APPEND is the kernel's business with writeback off: it sends the
     * offsets; pwrite on an O_APPEND fd would ignore them. */
    h->fd = open(path, (flags & ~O_APPEND) | O_CLOEXEC, mode);
    if (h->fd < 0) { int e = errno; free(h); return -e; }
    ofiles_lock(fs->open);
    h->of = ofiles_acquire(fs->open, peer, rel);
    if (h->of && (created || (flags & O_TRUNC))) h->of->dirty = true;
    ofiles_unlock(fs->open);
    if (!h->of) { close(h->fd); free(h); return -ENOMEM; }
    fi->fh = (uint64_t)(uintptr_t)h;
    return 0;
}

int outbox_create(chutefs *fs, const char *peer, const char *rel, mode_t mode,
                  struct fuse_file_info *fi)
{
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
    (void)fs;
    handle *h = (handle *)(uintptr_t)fi->fh;
    ssize_t n = pread(h->fd, buf, size, off);
    return n < 0 ? -errno : (int)n;
}

int outbox_write(chutefs *fs, const char *buf, size_t size, off_t off,
                 struct fuse_file_info *fi)
{
    handle *h = (handle *)(uintptr_t)fi->fh;
    ssize_t n = pwrite(h->fd, buf, size, off);
    if (n < 0) return -errno;
    ofiles_lock(fs->open);
    h->of->dirty = true;
    ofiles_unlock(fs->open);
    return (int)n;
}

int outbox_truncate(chutefs *fs, const char *peer, const char *rel, off_t size,
                    struct fuse_file_info *fi)
{
    if (fi && fi->fh) {
        handle *h = (handle *)(uintptr_t)fi->fh;
        if (ftruncate(h->fd, size) != 0) return -errno;
        ofiles_lock(fs->open);
        h->of->dirty = true;
        ofiles_unlock(fs->open);
        return 0;
    }
    STAGE(fs, peer, rel, path);
    if (truncate(path, size) != 0) return -errno;
    /* truncate(2) by name is a complete change: if nobody has the file
     * open, it is sealed now; otherwise at the last close. */
    ofiles_lock(fs->open);
    ofile *of = ofiles_find(fs->open, peer, rel);
    if (of) of->dirty = true;
    ofiles_unlock(fs->open);
    if (!of && sendable(rel) && seal_file(fs, peer, rel) != CHUTE_OK) return -EIO;
    return 0;
}

/* Seal if this is the last handle and the file changed. Called from flush
 * (close(2) waits for it) and from release (a fallback when several
 * handles closed at once and no flush saw itself as the last). */
static int maybe_seal(chutefs *fs, handle *h, int last_opens)
{
    ofiles_lock(fs->open);
    ofile *of = h->of;
    bool go = of->opens <= last_opens && of->dirty && !of->unlinked && sendable(of->path);
    char *peer = go ? strdup(of->peer) : NULL, *rel = go ? strdup(of->path) : NULL;
    if (go) of->dirty = false;
    ofiles_unlock(fs->open);
    if (!go) return 0;
    int rc = 0;
    if (!peer || !rel) rc = -ENOMEM;
    else if (seal_file(fs, peer, rel) != CHUTE_OK) rc = -EIO;
    if (rc) {   /* not queued: the next close tries again */
        ofiles_lock(fs->open);
        of->dirty = true;
        ofiles_unlock(fs->open);
    }
    free(peer);
    free(rel);
    return rc;
}

int outbox_flush(chutefs *fs, struct fuse_file_info *fi)
{
    handle *h = (handle *)(uintptr_t)fi->fh;
    return maybe_seal(fs, h, 1);
}

int outbox_release(chutefs *fs, struct fuse_file_info *fi)
{
    handle *h = (handle *)(uintptr_t)fi->fh;
    if (maybe_seal(fs, h, 1) != 0)
        fprintf(stderr, "chutefs: a file could not be queued at its last close\n");
    close(h->fd);
    ofiles_lock(fs->open);
    ofiles_release(fs->open, h->of);
    ofiles_unlock(fs->open);
    free(h);
    return 0;
}

int outbox_fsync(chutefs *fs, int datasync, struct fuse_file_info *fi)
{
    (void)fs;
    handle *h = (handle *)(uintptr_t)fi->fh;
    int rc = datasync ? fdatasync(h->fd) : fsync(h->fd);
    return rc == 0 ? 0 : -errno;
}

int outbox_unlink(chutefs *fs, const char *peer, const char *rel)
{
    STAGE(fs, peer, rel, path);
    if (unlink(path) != 0) return -errno;
    ofiles_lock(fs->open);
    ofile *of = ofiles_find(fs->open, peer, rel);
    if (of) of->unlinked = true;   /* still-open handles never seal it */
    ofiles_unlock(fs->open);
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
    if (lstat(src, &sb) != 0) return -errno;
    if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, flags) != 0) return -errno;
    if (S_ISDIR(sb.st_mode)) {
        /* The local view moves; items keep the name they were sealed with. */
        ofiles_lock(fs->open);
        ofiles_move(fs->open, peer, from, to);
        ofiles_unlock(fs->open);
        return queue_move(fs->q, peer, from, to) == CHUTE_OK ? 0 : -EIO;
    }
    ofiles_lock(fs->open);
    ofile *old = ofiles_find(fs->open, peer, to);
    if (old) old->unlinked = true;           /* replaced by the rename */
    ofiles_move(fs->open, peer, from, to);
    ofile *of = ofiles_find(fs->open, peer, to);
    if (of) of->dirty = true;                /* sealed under the new name at close */
    ofiles_unlock(fs->open);
    /* The item sealed under the old name is not this file any more. */
    seal_cancel(fs, peer, from);
    if (!sendable(to)) {                     /* a normal name became temporary */
        seal_cancel(fs, peer, to);
        return 0;
    }
    if (of) return 0;
    /* The send happens now: "x.part" → "x", or a queued file renamed
     * (a new item under the new name; one at the target is replaced). */
    return seal_file(fs, peer, to) == CHUTE_OK ? 0 : -EIO;
}

/* After chmod/utimens: a closed, queued file carries the change in its
 * meta if its upload has not begun; otherwise the change stays local. */
static void attrs_changed(chutefs *fs, const char *peer, const char *rel)
{
    ofiles_lock(fs->open);
    bool open_now = ofiles_find(fs->open, peer, rel) != NULL;
    ofiles_unlock(fs->open);
    if (!open_now && sendable(rel)) (void)seal_refresh_attrs(fs, peer, rel);
}

int outbox_chmod(chutefs *fs, const char *peer, const char *rel, mode_t mode,
                 struct fuse_file_info *fi)
{
    int rc;
    if (fi && fi->fh) {
        handle *h = (handle *)(uintptr_t)fi->fh;
        rc = fchmod(h->fd, mode) == 0 ? 0 : -errno;
    } else {
        STAGE(fs, peer, rel, path);
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
        rc = futimens(h->fd, tv) == 0 ? 0 : -errno;
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
    ofiles_unlock(fs->open);
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

/* The active item's last error ("" if none) — why a file stays queued. */
static int error_of(chutefs *fs, const char *peer, const char *rel, char *out, size_t cap)
{
    queue_item *it = malloc(sizeof *it);
    if (!it) return -ENOMEM;
    out[0] = '\0';
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

int outbox_listxattr(chutefs *fs, const char *peer, const char *rel,
                     char *list, size_t size)
{
    char text[QUEUE_ERR_MAX];
    if (!*rel || state_of(fs, peer, rel, text, sizeof text) != 0) return 0;
    bool err = error_of(fs, peer, rel, text, sizeof text) == 0 && text[0];
    size_t len = sizeof STATE_XATTR + (err ? sizeof ERROR_XATTR : 0);   /* with NULs */
    if (size == 0) return (int)len;
    if (size < len) return -ERANGE;
    memcpy(list, STATE_XATTR, sizeof STATE_XATTR);
    if (err) memcpy(list + sizeof STATE_XATTR, ERROR_XATTR, sizeof ERROR_XATTR);
    return (int)len;
}

void outbox_delivered(chutefs *fs, const queue_item *it)
{
    char blob[PATH_MAX], path[PATH_MAX];
    if (!sealed_path(fs, it->id, NULL, blob, sizeof blob)) unlink(blob);
    queue_item *newer = malloc(sizeof *newer);
    if (!newer) return;
    bool replaced = queue_find_active(fs->q, it->peer, it->path, newer) == CHUTE_OK;
    free(newer);
    ofiles_lock(fs->open);
    bool open_now = ofiles_find(fs->open, it->peer, it->path) != NULL;
    ofiles_unlock(fs->open);
    if (!replaced && !open_now &&
        staging_path(fs, it->peer, it->path, path, sizeof path) == 0)
        unlink(path);
}
