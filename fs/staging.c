/* staging.c — see staging.h. */
#include "staging.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

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

int sealed_path(chutefs *fs, const char *id, const char *suffix, char *out,
                size_t cap)
{
    int n = snprintf(out, cap, "%s/%s.age%s", fs->sealed, id, suffix ? suffix : "");
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}
