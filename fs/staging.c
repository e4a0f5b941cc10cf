/* staging.c — see staging.h. */
#include "staging.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "unqueued.h"

int staging_path(chutefs *fs, const char *peer, const char *rel, char *out,
                 size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", fs->staging, peer);
    if (n < 0 || (size_t)n >= cap) return -ENAMETOOLONG;
    /* Peers come and go; their staging folder is made at first use. */
    if (mkdir(out, 0755) != 0 && errno != EEXIST) return -errno;
    if (!*rel) return 0;
    n = snprintf(out, cap, "%s/%s/%s", fs->staging, peer, rel);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int sealed_path(chutefs *fs, const char *id, const char *ext, char *out,
                size_t cap)
{
    int n = snprintf(out, cap, "%s/%s%s", fs->sealed, id, ext);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

void sealed_unlink(chutefs *fs, const char *id)
{
    static const char *const exts[] = {".plain", ".age"};
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof exts / sizeof *exts; i++)
        if (sealed_path(fs, id, exts[i], path, sizeof path) == 0 &&
            unlink(path) != 0 && errno != ENOENT)
            fprintf(stderr, "chutefs: cannot delete %s: %s\n", path, strerror(errno));
}

int sealed_link(chutefs *fs, const char *old_id, const char *new_id)
{
    static const char *const exts[] = {".plain", ".age"};
    char from[PATH_MAX], to[PATH_MAX];
    for (size_t i = 0; i < sizeof exts / sizeof *exts; i++) {
        int rc = sealed_path(fs, old_id, exts[i], from, sizeof from);
        if (!rc) rc = sealed_path(fs, new_id, exts[i], to, sizeof to);
        if (rc) return rc;
        if (link(from, to) == 0) return fsync_dir(fs->sealed);
        if (errno != ENOENT) return -errno;
    }
    return -ENOENT;
}

#define CUT_XATTR "user.chute.cut"

static bool mark_set(int fd, const char *path, const char *name)
{
    return (fd >= 0 ? fsetxattr(fd, name, "1", 1, 0) : lsetxattr(path, name, "1", 1, 0)) == 0;
}

static bool mark_has(int fd, const char *path, const char *name)
{
    char v;
    return (fd >= 0 ? fgetxattr(fd, name, &v, sizeof v) : lgetxattr(path, name, &v, sizeof v)) >= 0;
}

static void mark_clear(int fd, const char *path, const char *name, const char *what)
{
    int rc = fd >= 0 ? fremovexattr(fd, name) : lremovexattr(path, name);
    if (rc != 0 && errno != ENODATA && errno != ENOTSUP && errno != ENOENT)
        fprintf(stderr, "chutefs: cannot clear a file's %s mark: %s\n", what, strerror(errno));
}

void staging_mark_cut(int fd)
{
    if (!mark_set(fd, NULL, CUT_XATTR))
        fprintf(stderr, "chutefs: cannot mark a file whose write failed: %s "
                "(it is kept from being sent only while it is open)\n", strerror(errno));
}

bool staging_is_cut(int fd) { return mark_has(fd, NULL, CUT_XATTR); }
bool staging_is_cut_at(const char *path) { return mark_has(-1, path, CUT_XATTR); }
void staging_clear_cut(int fd) { mark_clear(fd, NULL, CUT_XATTR, "write-failed"); }
void staging_clear_cut_at(const char *path) { mark_clear(-1, path, CUT_XATTR, "write-failed"); }

bool staging_mark_unsealed_at(const char *path)
{
    if (mark_set(-1, path, UNQUEUED_XATTR)) return true;
    fprintf(stderr, "chutefs: cannot mark a file that could not be queued: %s "
            "(it stays unsent until it is written again)\n", strerror(errno));
    return false;
}

bool staging_is_unsealed(int fd) { return mark_has(fd, NULL, UNQUEUED_XATTR); }
bool staging_is_unsealed_at(const char *path) { return mark_has(-1, path, UNQUEUED_XATTR); }
void staging_clear_unsealed(int fd) { mark_clear(fd, NULL, UNQUEUED_XATTR, "not-queued"); }
void staging_clear_unsealed_at(const char *path)
{
    mark_clear(-1, path, UNQUEUED_XATTR, "not-queued");
}

/* Copy all of src into dst: in the kernel where it can, else by hand. */
static int copy_all(int src, int dst)
{
    off_t in = 0, out = 0;
    for (;;) {
        ssize_t n = copy_file_range(src, &in, dst, &out, 1 << 30, 0);
        if (n == 0) return 0;
        if (n > 0) continue;
        if (errno == EINTR) continue;
        if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
            return -errno;
        break;
    }
    char buf[1 << 16];
    for (;;) {
        ssize_t n = pread(src, buf, sizeof buf, in);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) return 0;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = pwrite(dst, buf + done, (size_t)(n - done), out);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) return -errno;
            done += w;
            out += w;
        }
        in += n;
    }
}

/* A copy of src (or an empty file) with its mode and times, as
 * sealed/cow-*.tmp named in tmp; its fd, or -errno with nothing left. */
static int copy_to_tmp(chutefs *fs, int src, bool keep_content, char tmp[PATH_MAX])
{
    struct stat sb;
    if (fstat(src, &sb) != 0) return -errno;
    if (snprintf(tmp, PATH_MAX, "%s/cow-XXXXXX.tmp", fs->sealed) >= PATH_MAX)
        return -ENAMETOOLONG;
    int dst = mkostemps(tmp, 4, O_CLOEXEC);
    if (dst < 0) return -errno;
    int rc = fchmod(dst, sb.st_mode & 07777) == 0 ? 0 : -errno;
    if (!rc && keep_content) {
        rc = copy_all(src, dst);
        /* A copy is the same file: it keeps the times (cp -p, rsync -t). */
        struct timespec tv[2] = {sb.st_atim, sb.st_mtim};
        if (!rc && futimens(dst, tv) != 0) rc = -errno;
    }
    if (rc) {
        close(dst);
        unlink(tmp);
        return rc;
    }
    return dst;
}

int staging_unshare(chutefs *fs, const char *path, bool keep_content)
{
    int src = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (src < 0) return -errno;
    char tmp[PATH_MAX];
    int dst = copy_to_tmp(fs, src, keep_content, tmp);
    close(src);
    if (dst < 0) return dst;
    int rc = close(dst) == 0 ? 0 : -errno;
    if (!rc && rename(tmp, path) != 0) rc = -errno;
    if (rc) unlink(tmp);
    return rc;
}

int staging_orphan_copy(chutefs *fs, int fd, bool keep_content)
{
    /* fd may be write-only: read through a new open of the same inode
     * (the /proc link works for a file no longer at any path). */
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    int src = open(link, O_RDONLY | O_CLOEXEC);
    if (src < 0) return -errno;
    char tmp[PATH_MAX];
    int dst = copy_to_tmp(fs, src, keep_content, tmp);
    close(src);
    if (dst < 0) return dst;
    if (unlink(tmp) != 0) {
        int e = errno;
        close(dst);
        return -e;
    }
    return dst;
}

int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}
