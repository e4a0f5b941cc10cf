/* pagecache.c — see pagecache.h. */
#include "pagecache.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STEP PAGECACHE_STEP
#define WINDOW_MIN (2 * STEP)
#define WINDOW_MAX ((off_t)512 << 20)

/* ---- followers ------------------------------------------------------------
 * One slot per follower, found by the file's device and inode (the writer
 * and the reader have fds of their own). A slot is in use while its
 * follower reads and for the grace after; the first writer call that
 * finds it expired frees it and drops what it held. */
#define FOLLOWERS 64

struct pagecache_follower {
    bool used, reading;
    dev_t dev;
    ino_t ino;
    off_t pos;
    int64_t until_ms;     /* after pagecache_unfollow: held until then */
};
static struct pagecache_follower followers[FOLLOWERS];
static pthread_mutex_t followers_mu = PTHREAD_MUTEX_INITIALIZER;
static off_t window_override;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

off_t pagecache_follow_window(void)
{
    if (window_override) return window_override;
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    off_t w = pages > 0 && size > 0 ? (off_t)pages * size / 32 : WINDOW_MIN;
    if (w > WINDOW_MAX) w = WINDOW_MAX;
    if (w < WINDOW_MIN) w = WINDOW_MIN;
    return w / STEP * STEP;
}

void pagecache_set_follow_window(off_t bytes)
{
    window_override = bytes > 0 ? bytes / STEP * STEP : 0;
}

pagecache_follower *pagecache_follow(int fd, off_t pos)
{
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) return NULL;
    pagecache_follower *f = NULL;
    int64_t now = mono_ms();
    pthread_mutex_lock(&followers_mu);
    for (int pass = 0; pass < 2 && !f; pass++) {
        for (int i = 0; i < FOLLOWERS && !f; i++) {
            pagecache_follower *e = &followers[i];
            /* free slots first; then one whose hold has run out */
            if (!e->used || (pass == 1 && !e->reading && now >= e->until_ms)) f = e;
        }
    }
    if (f) *f = (pagecache_follower){.used = true, .reading = true, .dev = sb.st_dev,
                                     .ino = sb.st_ino, .pos = pos};
    pthread_mutex_unlock(&followers_mu);
    return f;
}

void pagecache_follow_at(pagecache_follower *f, off_t pos)
{
    if (!f) return;
    pthread_mutex_lock(&followers_mu);
    f->pos = pos;
    pthread_mutex_unlock(&followers_mu);
}

void pagecache_unfollow(pagecache_follower *f)
{
    if (!f) return;
    pthread_mutex_lock(&followers_mu);
    f->reading = false;
    f->until_ms = mono_ms() + PAGECACHE_FOLLOW_GRACE_MS;
    pthread_mutex_unlock(&followers_mu);
}

/* Where fd's followers hold it from (-1: none); *released: a hold ran out
 * since the last look, so what it kept may go now. */
static off_t held_from(int fd, bool *released)
{
    *released = false;
    struct stat sb;
    if (fstat(fd, &sb) != 0) return -1;
    off_t from = -1;
    int64_t now = mono_ms();
    pthread_mutex_lock(&followers_mu);
    for (int i = 0; i < FOLLOWERS; i++) {
        pagecache_follower *e = &followers[i];
        if (!e->used || e->dev != sb.st_dev || e->ino != sb.st_ino) continue;
        if (!e->reading && now >= e->until_ms) {
            e->used = false;
            *released = true;
        } else if (from < 0 || e->pos < from) {
            from = e->pos;
        }
    }
    pthread_mutex_unlock(&followers_mu);
    return from;
}

/* ---- streams ----------------------------------------------------------------- */

/* A failed wait for writeback that means lost bytes, not missing support
 * or a moment's shortage (which a later wait or fsync still reports). */
static bool writeback_failed(int err)
{
    return err != EINVAL && err != ESPIPE && err != EBADF && err != ENOSYS &&
           err != EOPNOTSUPP && err != EINTR && err != ENOMEM && err != EAGAIN;
}

int pagecache_wrote(int fd, off_t off, off_t end)
{
    if (fd < 0 || end <= off || end / STEP == off / STEP) return 0;
    off_t step = end / STEP * STEP - STEP;
    /* Only starts writeback: takes no error from anyone, reports none. */
    (void)sync_file_range(fd, step, STEP, SYNC_FILE_RANGE_WRITE);
    if (step < 2 * STEP) return 0;
    /* Unfollowed, the step two behind goes: [upto - STEP, upto). */
    off_t upto = step - STEP, from = upto - STEP;
    bool released = false;
    off_t held = held_from(fd, &released);
    if (held >= 0 || released) {
        off_t window = pagecache_follow_window();
        if (held >= 0) {
            off_t keep = held / STEP * STEP, floor = (end - window) / STEP * STEP;
            if (keep < floor) keep = floor;
            if (keep < upto) upto = keep;
        }
        /* and what a hold kept before, at most a window and some */
        from = upto - window - 4 * STEP;
        if (from < 0) from = 0;
    }
    if (upto <= from) return 0;
    /* Clean pages only leave the cache: wait for their writeback. The
     * wait reports (and so consumes) a write error of the whole file. */
    if (sync_file_range(fd, from, upto - from,
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                        SYNC_FILE_RANGE_WAIT_AFTER) != 0 && writeback_failed(errno))
        return -errno;
    (void)posix_fadvise(fd, from, upto - from, POSIX_FADV_DONTNEED);
    return 0;
}

void pagecache_synced(pagecache_stream *s, int fd, off_t durable)
{
    if (fd < 0 || durable - s->released < STEP) return;
    (void)posix_fadvise(fd, s->released, durable - s->released, POSIX_FADV_DONTNEED);
    s->released = durable;
}

void pagecache_read_to(pagecache_stream *s, int fd, off_t pos)
{
    /* One step stays: what was just read may be read again (a retry). */
    off_t upto = (pos / STEP - 1) * STEP;
    if (fd < 0 || upto - s->released < STEP) return;
    (void)posix_fadvise(fd, s->released, upto - s->released, POSIX_FADV_DONTNEED);
    s->released = upto;
}
