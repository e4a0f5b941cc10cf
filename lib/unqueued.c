/* unqueued.c — see unqueued.h. */
#include "unqueued.h"

#include <errno.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

/* nftw's callback takes no argument: the walk in progress, per thread. */
typedef struct {
    size_t root_len;
    unqueued_fn fn;
    void *arg;
} walk;

static _Thread_local walk *current;

static int visit(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    char v;
    /* staging/<peer>/<path>: a file at level 2 or deeper */
    if (type != FTW_F || !S_ISREG(sb->st_mode) || ftw->level < 2 ||
        lgetxattr(path, UNQUEUED_XATTR, &v, sizeof v) < 0)
        return 0;
    const char *peer = path + current->root_len + 1;
    const char *slash = strchr(peer, '/');
    if (!slash) return 0;
    char *name = strndup(peer, (size_t)(slash - peer));
    if (!name) { errno = ENOMEM; return -1; }
    int rc = current->fn(name, slash + 1, sb, current->arg);
    free(name);
    return rc ? 1 : 0;
}

chute_status unqueued_each(const char *staging, unqueued_fn fn, void *arg)
{
    size_t len = strlen(staging);
    while (len > 1 && staging[len - 1] == '/') len--;
    walk w = { .root_len = len, .fn = fn, .arg = arg }, *outer = current;
    current = &w;
    errno = 0;
    int rc = nftw(staging, visit, 16, FTW_PHYS | FTW_MOUNT);
    int e = errno;
    current = outer;
    if (rc >= 0) return CHUTE_OK;
    errno = e;
    if (e == ENOMEM) return CHUTE_ERR_NOMEM;
    return e == ENOENT ? CHUTE_ERR_NOT_FOUND : CHUTE_ERR_IO;
}
