/* prealloc.c — see prealloc.h. */
#include "prealloc.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

void prealloc_grew(int fd, off_t old_end, off_t new_end)
{
    prealloc_grew_within(fd, old_end, new_end, INT64_MAX);
}

void prealloc_grew_within(int fd, off_t old_end, off_t new_end, off_t limit)
{
    if (fd < 0 || new_end <= old_end || new_end / PREALLOC_STEP == old_end / PREALLOC_STEP) return;
    off_t step = new_end / PREALLOC_STEP * PREALLOC_STEP;
    off_t len = 2 * PREALLOC_STEP;
    if (step >= limit) return;
    if (limit - step < len) len = limit - step;
    /* Only a file growing at its end: reserving inside it would fill the
     * holes of a sparse file. */
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size > new_end) return;
    struct statvfs vfs;
    if (fstatvfs(fd, &vfs) != 0 ||
        (unsigned long long)vfs.f_bavail * vfs.f_frsize <
            PREALLOC_MIN_FREE + 2 * (unsigned long long)PREALLOC_STEP)
        return;
    (void)fallocate(fd, FALLOC_FL_KEEP_SIZE, step, len);
}

/* Blocks beyond the end: anything past the last byte's block. */
static bool beyond_end(const struct stat *sb)
{
    return (off_t)sb->st_blocks * 512 > (sb->st_size + 4095) / 4096 * 4096;
}

bool prealloc_beyond_end(int fd)
{
    struct stat sb;
    return fstat(fd, &sb) == 0 && beyond_end(&sb);
}

chute_status prealloc_trim(int fd)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0) return CHUTE_ERR_IO;
    if (!beyond_end(&sb)) return CHUTE_OK;
    /* A cut to its own size frees what lies beyond; it also stamps the
     * times, which are the user's (an outbox file's mtime is sent): keep them. */
    struct timespec times[2] = { sb.st_atim, sb.st_mtim };
    if (ftruncate(fd, sb.st_size) != 0 || futimens(fd, times) != 0) return CHUTE_ERR_IO;
    return CHUTE_OK;
}
