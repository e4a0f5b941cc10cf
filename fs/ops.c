/* ops.c — see ops.h. Fixed entries (/, /outbox, /inbox, /status and the
 * peer folders) refuse changes with EPERM, creating where only Chute
 * creates with EACCES; a rename between peers or areas is EXDEV so mv
 * falls back to copy and delete. */
#include "ops.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "handle.h"
#include "inbox.h"
#include "outbox.h"
#include "peers.h"
#include "reseal.h"
#include "route.h"
#include "statusfile.h"
#include "uploader.h"

chutefs *chutefs_get(void) { return fuse_get_context()->private_data; }

int chutefs_errno(chute_status st)
{
    switch (st) {
    case CHUTE_OK: return 0;
    case CHUTE_ERR_NOMEM: return -ENOMEM;
    case CHUTE_ERR_NOT_FOUND: return -ENOENT;
    case CHUTE_ERR_EXISTS: return -EEXIST;
    case CHUTE_ERR_ARG: return -EINVAL;
    case CHUTE_ERR_LIMIT: return -ENAMETOOLONG;
    case CHUTE_ERR_FULL: return -ENOSPC;
    default: return -EIO;
    }
}

/* An unpaired peer's inbox folder stays while it holds what was received
 * from it (the user's files); its outbox folder goes at once (its queued
 * items stay in the queue and in the status report). */
static bool inbox_holds_past_peer(chutefs *fs, const char *peer)
{
    bool holds = false;
    return cache_peer_holds(fs->c, peer, &holds) == CHUTE_OK && holds;
}

/* A new name whose folder only Chute fills: the mount's top, outbox/ or
 * inbox/ (peer folders come from pairing). */
static bool at_top(const char *path)
{
    const char *slash = path ? strrchr(path, '/') : NULL;
    if (!slash) return false;
    size_t n = (size_t)(slash - path);
    return n == 0 || (n == 7 && strncmp(path, "/outbox", 7) == 0) ||
           (n == 6 && strncmp(path, "/inbox", 6) == 0);
}

/* Parse and check the peer's folder exists. */
static int resolve(const char *path, route *r)
{
    int rc = route_parse(path, r);
    if (rc) return rc;
    if (r->area != R_OUT && r->area != R_IN) return 0;
    chutefs *fs = chutefs_get();
    if (peers_has(fs->peers, r->peer)) return 0;
    return r->area == R_IN && inbox_holds_past_peer(fs, r->peer) ? 0 : -ENOENT;
}

static void dir_stat(struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_mtime = st->st_ctime = st->st_atime = chutefs_get()->started;
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
    st->st_uid = getuid();
    st->st_gid = getgid();
}

static handle *H(struct fuse_file_info *fi) { return (handle *)(uintptr_t)fi->fh; }

/* A file removed while open has no path any more (hard_remove): the calls
 * on its descriptors come with a NULL path and go by its handle alone. */
static bool removed_but_open(const char *path, struct fuse_file_info *fi)
{
    return !path && fi && fi->fh;
}

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    if (removed_but_open(path, fi)) {
        switch (H(fi)->kind) {
        case H_OUTBOX: return outbox_getattr(chutefs_get(), "", "", st, fi);
        case H_INBOX: return inbox_getattr_open(chutefs_get(), fi, st);
        default: return statusfile_getattr(chutefs_get(), st);
        }
    }
    route r;
    int rc = resolve(path, &r);
    if (rc) return rc;
    chutefs *fs = chutefs_get();
    switch (r.area) {
    case R_STATUS: return statusfile_getattr(fs, st);
    case R_OUT: return outbox_getattr(fs, r.peer, r.rel, st, fi);
    case R_IN: return inbox_getattr(fs, r.peer, r.rel, st);
    default: dir_stat(st); return 0;
    }
}

typedef struct {
    void *buf;
    fuse_fill_dir_t filler;
} fill_arg;

static void fill_peer(const char *name, void *arg)
{
    fill_arg *a = arg;
    a->filler(a->buf, name, NULL, 0, 0);
}

typedef struct {
    fill_arg fill;
    peers *paired;
} fill_past_arg;

/* An unpaired peer's inbox folder, listed while it holds files. */
static void fill_past_peer(const char *name, void *arg)
{
    fill_past_arg *a = arg;
    if (!peers_has(a->paired, name)) fill_peer(name, &a->fill);
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)off; (void)fi; (void)flags;
    route r;
    int rc = resolve(path, &r);
    if (rc) return rc;
    chutefs *fs = chutefs_get();
    if (r.area == R_STATUS) return -ENOTDIR;
    filler(buf, ".", NULL, 0, 0);
    filler(buf, "..", NULL, 0, 0);
    fill_arg a = {buf, filler};
    switch (r.area) {
    case R_ROOT:
        filler(buf, "outbox", NULL, 0, 0);
        filler(buf, "inbox", NULL, 0, 0);
        filler(buf, "status", NULL, 0, 0);
        return 0;
    case R_OUTBOX:
        peers_each(fs->peers, fill_peer, &a);   /* re-reads a changed list */
        return 0;
    case R_INBOX: {
        peers_each(fs->peers, fill_peer, &a);
        fill_past_arg past = {a, fs->peers};
        cache_each_peer(fs->c, fill_past_peer, &past);
        return 0;
    }
    case R_OUT: return outbox_readdir(fs, r.peer, r.rel, buf, filler);
    case R_IN: return inbox_readdir(fs, r.peer, r.rel, buf, filler);
    default: return -ENOTDIR;
    }
}

static int op_mkdir(const char *path, mode_t mode)
{
    route r;
    int rc = resolve(path, &r);
    if (rc == -ENOENT && (at_top(path) || (route_parse(path, &r) == 0 && !*r.rel)))
        return -EACCES;
    if (rc) return rc;
    if (r.area == R_OUT && *r.rel) return outbox_mkdir(chutefs_get(), r.peer, r.rel, mode);
    if (r.area == R_IN && *r.rel) return -EACCES;
    return -EEXIST;
}

static int op_rmdir(const char *path)
{
    route r;
    int rc = resolve(path, &r);
    if (rc) return rc;
    if (r.area == R_OUT && *r.rel) return outbox_rmdir(chutefs_get(), r.peer, r.rel);
    if (r.area == R_IN && *r.rel) return inbox_rmdir(chutefs_get(), r.peer, r.rel);
    return r.area == R_STATUS ? -ENOTDIR : -EPERM;
}

static int op_unlink(const char *path)
{
    route r;
    int rc = resolve(path, &r);
    if (rc) return rc;
    if (r.area == R_OUT && *r.rel) return outbox_unlink(chutefs_get(), r.peer, r.rel);
    if (r.area == R_IN && *r.rel) return inbox_unlink(chutefs_get(), r.peer, r.rel);
    return r.area == R_STATUS ? -EPERM : -EISDIR;
}

static int op_rename(const char *from, const char *to, unsigned int flags)
{
    route a, b;
    int rc = resolve(from, &a);
    if (rc) return rc;
    if ((a.area != R_OUT && a.area != R_IN) || !*a.rel) return -EPERM;
    rc = route_parse(to, &b);
    if (rc) return -EXDEV;
    if (b.area != a.area || strcmp(a.peer, b.peer) != 0 || !*b.rel)
        return b.area == R_OUT || b.area == R_IN ? -EXDEV : -EPERM;
    chutefs *fs = chutefs_get();
    return a.area == R_OUT ? outbox_rename(fs, a.peer, a.rel, b.rel, flags)
                           : inbox_rename(fs, a.peer, a.rel, b.rel, flags);
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    route r;
    int rc = resolve(path, &r);
    if (rc == -ENOENT && (at_top(path) || (route_parse(path, &r) == 0 && r.area != R_OUT)))
        return -EACCES;
    if (rc) return rc;
    if (r.area == R_OUT && *r.rel) return outbox_create(chutefs_get(), r.peer, r.rel, mode, fi);
    return -EACCES;
}

/* mknod(2) of a file is a create; a FIFO or device cannot travel. */
static int op_mknod(const char *path, mode_t mode, dev_t dev)
{
    (void)dev;
    route r;
    int rc = resolve(path, &r);
    if (rc == -ENOENT && (at_top(path) || (route_parse(path, &r) == 0 && r.area != R_OUT)))
        return -EACCES;
    if (rc) return rc;
    if (r.area != R_OUT || !*r.rel) return -EACCES;
    if (!S_ISREG(mode)) return -EPERM;
    struct fuse_file_info fi;
    memset(&fi, 0, sizeof fi);
    fi.flags = O_WRONLY | O_EXCL;
    chutefs *fs = chutefs_get();
    if ((rc = outbox_create(fs, r.peer, r.rel, mode & 07777, &fi))) return rc;
    return outbox_release(fs, &fi);   /* queued as an empty file, like touch */
}

/* Links: only files and folders travel (outbox); the inbox takes nothing. */
static int refuse_link(const char *path)
{
    route r;
    int rc = resolve(path, &r);
    if (rc == -ENOENT && (at_top(path) || (route_parse(path, &r) == 0 && r.area != R_OUT)))
        return -EACCES;
    if (rc) return rc;
    return r.area == R_OUT && *r.rel ? -EPERM : -EACCES;
}

static int op_symlink(const char *target, const char *path)
{
    (void)target;
    return refuse_link(path);
}

static int op_link(const char *from, const char *to)
{
    (void)from;
    return refuse_link(to);
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
    route r;
    int rc = resolve(path, &r);
    if (rc) return rc;
    chutefs *fs = chutefs_get();
    switch (r.area) {
    case R_STATUS: return statusfile_open(fs, fi);
    case R_OUT: return *r.rel ? outbox_open(fs, r.peer, r.rel, fi) : -EISDIR;
    case R_IN: return *r.rel ? inbox_open(fs, r.peer, r.rel, fi) : -EISDIR;
    default: return -EISDIR;
    }
}

static int op_read(const char *path, char *buf, size_t size, off_t off,
                   struct fuse_file_info *fi)
{
    (void)path;
    switch (H(fi)->kind) {
    case H_OUTBOX: return outbox_read(chutefs_get(), buf, size, off, fi);
    case H_INBOX: return inbox_read(chutefs_get(), buf, size, off, fi);
    default: return statusfile_read(buf, size, off, fi);
    }
}

static int op_write(const char *path, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    (void)path;
    if (H(fi)->kind != H_OUTBOX) return -EBADF;
    return outbox_write(chutefs_get(), buf, size, off, fi);
}

static int op_flush(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    return H(fi)->kind == H_OUTBOX ? outbox_flush(chutefs_get(), fi) : 0;
}

static int op_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    switch (H(fi)->kind) {
    case H_OUTBOX: return outbox_release(chutefs_get(), fi);
    case H_INBOX: return inbox_release(chutefs_get(), fi);
    default: return statusfile_release(fi);
    }
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)path;
    return H(fi)->kind == H_OUTBOX ? outbox_fsync(chutefs_get(), datasync, fi) : 0;
}

static int op_fallocate(const char *path, int mode, off_t off, off_t len,
                        struct fuse_file_info *fi)
{
    (void)path;
    if (H(fi)->kind != H_OUTBOX) return -EBADF;   /* inbox and status: read-only */
    return outbox_fallocate(chutefs_get(), mode, off, len, fi);
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    if (removed_but_open(path, fi))
        return H(fi)->kind == H_OUTBOX ? outbox_truncate(chutefs_get(), "", "", size, fi)
                                       : -EACCES;
    route r;
    int rc = resolve(path, &r);
    if (rc) return rc;
    if (r.area == R_OUT && *r.rel) return outbox_truncate(chutefs_get(), r.peer, r.rel, size, fi);
    return r.area == R_IN || r.area == R_STATUS ? -EACCES : -EISDIR;
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    route r;
    int rc = resolve(path, &r);
    if (rc) return rc;
    /* The peer folder too: `rsync -a dir/ outbox/home/` and `cp -a dir/.`
     * give it their folder's mode and times. */
    if (r.area == R_OUT) return outbox_chmod(chutefs_get(), r.peer, r.rel, mode, fi);
    return -EPERM;
}

static int op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
    (void)uid; (void)gid; (void)fi;
    route r;
    int rc = resolve(path, &r);
    if (rc) return rc;
    /* Ownership does not travel; accepting it keeps cp -a and tar quiet. */
    return r.area == R_OUT ? 0 : -EPERM;
}

static int op_utimens(const char *path, const struct timespec tv[2],
                      struct fuse_file_info *fi)
{
    route r;
    int rc = resolve(path, &r);
    if (rc) return rc;
    if (r.area == R_OUT) return outbox_utimens(chutefs_get(), r.peer, r.rel, tv, fi);
    return -EPERM;
}

static int op_statfs(const char *path, struct statvfs *st)
{
    (void)path;
    return statvfs(chutefs_get()->spool, st) == 0 ? 0 : -errno;
}

static int op_getxattr(const char *path, const char *name, char *value, size_t size)
{
    route r;
    int rc = resolve(path, &r);
    if (rc) return rc;
    if (r.area == R_OUT) return outbox_getxattr(chutefs_get(), r.peer, r.rel, name, value, size);
    return -ENODATA;
}

/* user.chute.state and .error are read by name, never listed: listed,
 * `cp -a` out of the outbox copies a stale state along and `rsync -X`
 * into it fails removing them (CephFS hides its virtual xattrs so too). */
static int op_listxattr(const char *path, char *list, size_t size)
{
    (void)list; (void)size;
    route r;
    return resolve(path, &r);
}

static int op_setxattr(const char *path, const char *name, const char *value,
                       size_t size, int flags)
{
    (void)path; (void)name; (void)value; (void)size; (void)flags;
    return -ENOTSUP;
}

static int op_removexattr(const char *path, const char *name)
{
    (void)path; (void)name;
    return -ENOTSUP;
}

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    /* Arrivals in an inbox and state changes must show at once, and every
     * answer comes from our local state anyway: no kernel caching of
     * names or attributes. */
    cfg->entry_timeout = 0;
    cfg->attr_timeout = 0;
    cfg->negative_timeout = 0;
    /* Unlink of an open file really unlinks (no .fuse_hidden renames in
     * the outbox); handles work on file descriptors. */
    cfg->hard_remove = 1;
    /* open(O_TRUNC) arrives as one open, not truncate-then-open (which
     * would look like a finished empty file). */
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    chutefs *fs = fuse_get_context()->private_data;
    /* Here, not in main: the mount is up and fuse_main has daemonized
     * (threads started before its fork would be lost). The threads do all
     * their I/O themselves, so the mount never waits for them. */
    if (uploader_start(fs, &fs->up) != CHUTE_OK)
        fprintf(stderr, "chutefs: cannot start the uploader; files stay queued\n");
    if (resealer_start(fs, &fs->reseal) != CHUTE_OK)
        fprintf(stderr, "chutefs: cannot start the resealer; a file not queued at its "
                "close waits for the next mount\n");
    return fs;
}

const struct fuse_operations chutefs_ops = {
    .init = op_init,
    .getattr = op_getattr,
    .readdir = op_readdir,
    .mkdir = op_mkdir,
    .rmdir = op_rmdir,
    .unlink = op_unlink,
    .rename = op_rename,
    .create = op_create,
    .mknod = op_mknod,
    .symlink = op_symlink,
    .link = op_link,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .truncate = op_truncate,
    .fallocate = op_fallocate,
    .chmod = op_chmod,
    .chown = op_chown,
    .utimens = op_utimens,
    .statfs = op_statfs,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .setxattr = op_setxattr,
    .removexattr = op_removexattr,
};
