/* pagecache.c — see pagecache.h. */
#include "pagecache.h"

#include <fcntl.h>

void pagecache_wrote(int fd, off_t off, off_t end)
{
    if (fd < 0 || end <= off || end / PAGECACHE_STEP == off / PAGECACHE_STEP) return;
    off_t step = end / PAGECACHE_STEP * PAGECACHE_STEP - PAGECACHE_STEP;
    (void)sync_file_range(fd, step, PAGECACHE_STEP, SYNC_FILE_RANGE_WRITE);
    if (step < 2 * PAGECACHE_STEP) return;
    /* Clean pages only leave the cache: wait for that step's writeback. */
    off_t old = step - 2 * PAGECACHE_STEP;
    (void)sync_file_range(fd, old, PAGECACHE_STEP,
                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                          SYNC_FILE_RANGE_WAIT_AFTER);
    (void)posix_fadvise(fd, old, PAGECACHE_STEP, POSIX_FADV_DONTNEED);
}

void pagecache_synced(pagecache_stream *s, int fd, off_t durable)
{
    if (fd < 0 || durable - s->released < PAGECACHE_STEP) return;
    (void)posix_fadvise(fd, s->released, durable - s->released, POSIX_FADV_DONTNEED);
    s->released = durable;
}

void pagecache_read_to(pagecache_stream *s, int fd, off_t pos)
{
    /* One step stays: what was just read may be read again (a retry). */
    off_t upto = (pos / PAGECACHE_STEP - 1) * PAGECACHE_STEP;
    if (fd < 0 || upto - s->released < PAGECACHE_STEP) return;
    (void)posix_fadvise(fd, s->released, upto - s->released, POSIX_FADV_DONTNEED);
    s->released = upto;
}
