/* inbox.c — see inbox.h. */
#include "inbox.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handle.h"

static void fill_stat(const cache_node *n, struct stat *st)
{
    memset(st, 0, sizeof *st);
    if (n->is_dir) {
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
    } else {
        /* Read-only: the sender's permission bits without write. */
        st->st_mode = S_IFREG | (n->mode & 0555);
        st->st_nlink = 1;
        st->st_size = (off_t)n->size;
        st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
    }
    st->st_mtim.tv_sec = n->mtime_sec;
    st->st_mtim.tv_nsec = n->mtime_nsec;
    st->st_ctim = st->st_mtim;
    st->st_atim = st->st_mtim;
    st->st_uid = getuid();
    st->st_gid = getgid();
}

int inbox_getattr(chutefs *fs, const char *peer, const char *rel, struct stat *st)
{
    cache_node n;
    chute_status s = cache_lookup(fs->c, peer, rel, &n);
    if (s) return chutefs_errno(s);
    fill_stat(&n, st);
    /* The peer's folder is no arrival: it dates from the mount, as the
     * other fixed folders. */
    if (n.id == 0) st->st_mtime = st->st_ctime = st->st_atime = fs->started;
    return 0;
}

int inbox_getattr_open(chutefs *fs, struct fuse_file_info *fi, struct stat *st)
{
    (void)fs;
    fill_stat(&((handle *)(uintptr_t)fi->fh)->node, st);
    return 0;
}

typedef struct {
    void *buf;
    fuse_fill_dir_t filler;
} list_arg;

static int list_one(const char *name, const cache_node *n, void *arg)
{
    list_arg *a = arg;
    struct stat st;
    fill_stat(n, &st);
    return a->filler(a->buf, name, &st, 0, 0);
}

int inbox_readdir(chutefs *fs, const char *peer, const char *rel, void *buf,
                  fuse_fill_dir_t filler)
{
    cache_node n;
    chute_status s = cache_lookup(fs->c, peer, rel, &n);
    if (s) return chutefs_errno(s);
    if (!n.is_dir) return -ENOTDIR;
    list_arg a = {buf, filler};
    return chutefs_errno(cache_list(fs->c, peer, n.id, list_one, &a));
}

int inbox_open(chutefs *fs, const char *peer, const char *rel,
               struct fuse_file_info *fi)
{
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) return -EACCES;
    handle *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    h->kind = H_INBOX;
    chute_status s = cache_open_file(fs->c, peer, rel, &h->node);
    if (!s && h->node.is_dir) s = CHUTE_ERR_ARG;
    if (s) { free(h); return s == CHUTE_ERR_ARG ? -EISDIR : chutefs_errno(s); }
    /* A file's bytes never change once committed: the page cache may keep
     * them across opens. */
    fi->keep_cache = 1;
    fi->fh = (uint64_t)(uintptr_t)h;
    return 0;
}

int inbox_read(chutefs *fs, char *buf, size_t size, off_t off,
               struct fuse_file_info *fi)
{
    handle *h = (handle *)(uintptr_t)fi->fh;
    if (off < 0) return -EINVAL;
    size_t got;
    chute_status s = cache_read(fs->c, &h->node, (uint64_t)off,
                                buf, size, &got);
    return s ? chutefs_errno(s) : (int)got;
}

int inbox_release(chutefs *fs, struct fuse_file_info *fi)
{
    handle *h = (handle *)(uintptr_t)fi->fh;
    cache_close_file(fs->c, &h->node);
    free(h);
    return 0;
}

int inbox_unlink(chutefs *fs, const char *peer, const char *rel)
{
    cache_node n;
    chute_status s = cache_lookup(fs->c, peer, rel, &n);
    if (s) return chutefs_errno(s);
    if (n.is_dir) return -EISDIR;
    return chutefs_errno(cache_remove(fs->c, peer, rel));
}

int inbox_rmdir(chutefs *fs, const char *peer, const char *rel)
{
    if (!*rel) return -EPERM;
    cache_node n;
    chute_status s = cache_lookup(fs->c, peer, rel, &n);
    if (s) return chutefs_errno(s);
    if (!n.is_dir) return -ENOTDIR;
    s = cache_remove(fs->c, peer, rel);
    return s == CHUTE_ERR_EXISTS ? -ENOTEMPTY : chutefs_errno(s);
}

int inbox_rename(chutefs *fs, const char *peer, const char *from, const char *to,
                 unsigned int flags)
{
    if (!*from || !*to) return -EPERM;
    if (flags & ~(unsigned)RENAME_NOREPLACE) return -EINVAL;
    cache_node src, dst;
    chute_status s = cache_lookup(fs->c, peer, from, &src);
    if (s) return chutefs_errno(s);
    s = cache_lookup(fs->c, peer, to, &dst);
    if (s == CHUTE_OK) {
        if (flags & RENAME_NOREPLACE) return -EEXIST;
        if (dst.is_dir && !src.is_dir) return -EISDIR;
        if (!dst.is_dir && src.is_dir) return -ENOTDIR;
    }
    bool noreplace = flags & RENAME_NOREPLACE;
    s = cache_rename(fs->c, peer, from, to, noreplace);
    if (s == CHUTE_ERR_EXISTS) return noreplace ? -EEXIST : -ENOTEMPTY;
    if (s == CHUTE_ERR_ARG) return -EINVAL;
    return chutefs_errno(s);
}
