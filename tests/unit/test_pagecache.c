/* test_pagecache.c — streams hand their pages back behind them and never
 * change a byte: written steps leave the cache once on disk, read steps
 * once read, small files are left alone. Residency is read with mincore. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sodium.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "pagecache.h"
#include "unit.h"

#define MiB ((off_t)1 << 20)
#define STEP PAGECACHE_STEP

static char dir[] = "/tmp/chute-test-pagecache-XXXXXX";
static int advice_works;   /* tmpfs keeps every page whatever it is told */

/* Bytes of [off, off+len) of path that are in the page cache. */
static off_t resident(const char *path, off_t off, off_t len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    long page = sysconf(_SC_PAGESIZE);
    void *map = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, fd, off);
    close(fd);
    if (map == MAP_FAILED) return -1;
    size_t pages = (size_t)((len + page - 1) / page);
    unsigned char *vec = malloc(pages);
    off_t in = -1;
    if (vec && mincore(map, (size_t)len, vec) == 0) {
        in = 0;
        for (size_t i = 0; i < pages; i++) in += (vec[i] & 1) ? page : 0;
    }
    free(vec);
    munmap(map, (size_t)len);
    return in;
}

/* Write [from, to) of a known pattern to fd through pagecache_wrote,
 * 1 MiB a time. */
/* n random bytes, malloc'd; NULL if memory ran out. */
static uint8_t *random_bytes(off_t n)
{
    uint8_t *p = malloc((size_t)n);
    if (p) randombytes_buf(p, (size_t)n);
    return p;
}

static int write_range(int fd, const uint8_t *pattern, off_t from, off_t to)
{
    for (off_t off = from; off < to; off += MiB) {
        if (pwrite(fd, pattern + off, (size_t)MiB, off) != MiB) return -1;
        pagecache_wrote(fd, off, off + MiB);
    }
    return 0;
}

/* Write n bytes of a known pattern through pagecache_wrote, 1 MiB a time. */
static int write_stream(const char *path, off_t n, uint8_t *pattern)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return -1;
    int rc = write_range(fd, pattern, 0, n);
    if (!rc) rc = fsync(fd);
    close(fd);
    return rc;
}

static int same_bytes(const char *path, const uint8_t *want, off_t n)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    uint8_t *got = malloc((size_t)n);
    ssize_t r = got ? pread(fd, got, (size_t)n, 0) : -1;
    int ok = r == n && memcmp(got, want, (size_t)n) == 0;
    free(got);
    close(fd);
    return ok;
}

static void test_written_steps_leave_the_cache_and_keep_their_bytes(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/written", dir);
    off_t n = 6 * STEP;
    uint8_t *pattern = random_bytes(n);
    if (!pattern) { CHECK(0); return; }
    CHECK_EQ_INT(write_stream(path, n, pattern), 0);
    if (advice_works) {
        /* Filling step 5 handed back step 3 and, before it, steps 0..2. */
        CHECK_EQ_INT(resident(path, 0, 4 * STEP), 0);
    }
    CHECK(same_bytes(path, pattern, n));
    free(pattern);
}

static void test_a_small_file_stays_cached(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/small", dir);
    off_t n = 4 * MiB;
    uint8_t *pattern = random_bytes(n);
    if (!pattern) { CHECK(0); return; }
    CHECK_EQ_INT(write_stream(path, n, pattern), 0);
    CHECK_EQ_INT(resident(path, 0, n), n);
    CHECK(same_bytes(path, pattern, n));
    free(pattern);
}

static void test_read_in_order_leaves_one_step_behind(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/read", dir);
    off_t n = 4 * STEP;
    uint8_t *pattern = malloc((size_t)n), *buf = malloc((size_t)MiB);
    if (!pattern || !buf) { CHECK(0); free(pattern); free(buf); return; }
    randombytes_buf(pattern, (size_t)n);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && pwrite(fd, pattern, (size_t)n, 0) == n && fsync(fd) == 0);
    close(fd);
    fd = open(path, O_RDONLY);
    pagecache_stream s = {0};
    int same = 1;
    for (off_t off = 0; off < n; off += MiB) {
        same &= pread(fd, buf, (size_t)MiB, off) == MiB && memcmp(buf, pattern + off, (size_t)MiB) == 0;
        pagecache_read_to(&s, fd, off + MiB);
    }
    close(fd);
    CHECK(same);
    CHECK_EQ_INT(s.released, 3 * STEP);
    if (advice_works) {
        CHECK_EQ_INT(resident(path, 0, 3 * STEP), 0);
        CHECK_EQ_INT(resident(path, 3 * STEP, STEP), STEP);
    }
    CHECK(same_bytes(path, pattern, n));
    free(pattern);
    free(buf);
}

static void test_synced_bytes_go_a_step_at_a_time(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/synced", dir);
    off_t n = 2 * STEP + 3 * MiB;
    uint8_t *pattern = random_bytes(n);
    if (!pattern) { CHECK(0); return; }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pagecache_stream s = {0};
    CHECK(fd >= 0 && pwrite(fd, pattern, (size_t)(STEP - MiB), 0) == STEP - MiB);
    CHECK_EQ_INT(fdatasync(fd), 0);
    pagecache_synced(&s, fd, STEP - MiB);
    CHECK_EQ_INT(s.released, 0);                 /* less than a step: kept */
    CHECK(pwrite(fd, pattern + STEP - MiB, (size_t)(n - STEP + MiB), STEP - MiB) ==
          n - STEP + MiB);
    CHECK_EQ_INT(fdatasync(fd), 0);
    pagecache_synced(&s, fd, n);
    close(fd);
    CHECK_EQ_INT(s.released, n);
    if (advice_works) CHECK_EQ_INT(resident(path, 0, n), 0);
    CHECK(same_bytes(path, pattern, n));
    free(pattern);
}

/* A reader following the file from one step in (a fd of its own): the
 * writer keeps what it has yet to read, drops what lies before it, and
 * never holds more than the window. */
static void test_a_followed_file_keeps_what_its_follower_has_yet_to_read(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/followed", dir);
    off_t n = 10 * STEP;
    uint8_t *pattern = random_bytes(n);
    if (!pattern) { CHECK(0); return; }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600), rd = open(path, O_RDONLY);
    CHECK(fd >= 0 && rd >= 0);
    pagecache_follower *f = pagecache_follow(rd, STEP);
    CHECK(f != NULL);
    CHECK_EQ_INT(write_range(fd, pattern, 0, 6 * STEP), 0);
    if (advice_works) {
        CHECK_EQ_INT(resident(path, 0, STEP), 0);               /* before the follower */
        CHECK_EQ_INT(resident(path, STEP, 5 * STEP), 5 * STEP); /* what it has yet to read */
    }
    /* lagging more than the window: only the window stays */
    pagecache_set_follow_window(3 * STEP);
    CHECK_EQ_INT(write_range(fd, pattern, 6 * STEP, n), 0);
    if (advice_works) CHECK_EQ_INT(resident(path, 0, 6 * STEP), 0);
    pagecache_set_follow_window(0);
    pagecache_unfollow(f);
    close(rd);
    CHECK_EQ_INT(fsync(fd), 0);
    close(fd);
    CHECK(same_bytes(path, pattern, n));
    free(pattern);
}

/* A follower that ended holds for the grace (its next request), then the
 * writer's next step drops what it held. */
static void test_a_hold_ends_a_grace_after_its_follower(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/unfollowed", dir);
    off_t n = 8 * STEP;
    uint8_t *pattern = random_bytes(n);
    if (!pattern) { CHECK(0); return; }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600), rd = open(path, O_RDONLY);
    CHECK(fd >= 0 && rd >= 0);
    pagecache_follower *f = pagecache_follow(rd, 0);
    CHECK_EQ_INT(write_range(fd, pattern, 0, 4 * STEP), 0);
    pagecache_unfollow(f);
    close(rd);
    CHECK_EQ_INT(write_range(fd, pattern, 4 * STEP, 5 * STEP), 0);
    if (advice_works) CHECK_EQ_INT(resident(path, 0, 2 * STEP), 2 * STEP);   /* the grace */
    usleep((PAGECACHE_FOLLOW_GRACE_MS + 100) * 1000);
    CHECK_EQ_INT(write_range(fd, pattern, 5 * STEP, n), 0);
    if (advice_works) CHECK_EQ_INT(resident(path, 0, 5 * STEP), 0);
    CHECK_EQ_INT(fsync(fd), 0);
    close(fd);
    CHECK(same_bytes(path, pattern, n));
    free(pattern);
}

static void test_the_follow_window_is_a_share_of_memory(void)
{
    off_t w = pagecache_follow_window();
    CHECK(w >= 2 * STEP && w <= ((off_t)512 << 20) && w % STEP == 0);
    CHECK(pagecache_follow(-1, 0) == NULL);
    int dev = open("/dev/null", O_RDONLY);
    CHECK(pagecache_follow(dev, 0) == NULL);                 /* no file: nothing held */
    close(dev);
}

static void test_a_bad_fd_is_ignored(void)
{
    pagecache_stream s = {0};
    CHECK_EQ_INT(pagecache_wrote(-1, 0, 3 * STEP), 0);
    pagecache_synced(&s, -1, 3 * STEP);
    pagecache_read_to(&s, -1, 3 * STEP);
    CHECK_EQ_INT(s.released, 0);
    int fd = open("/dev/null", O_RDONLY);
    pagecache_read_to(&s, fd, 3 * STEP);          /* advice on a device: no harm */
    close(fd);
    /* advice a pipe cannot take is no write error (ESPIPE) */
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK_EQ_INT(pagecache_wrote(p[1], 2 * STEP, 3 * STEP + 1), 0);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    if (sodium_init() < 0 || !mkdtemp(dir)) return 1;
    struct statfs sf;
    advice_works = statfs(dir, &sf) == 0 && sf.f_type != TMPFS_MAGIC;
    if (!advice_works) printf("note: %s is on tmpfs: residency is not checked\n", dir);
    RUN(test_written_steps_leave_the_cache_and_keep_their_bytes);
    RUN(test_a_small_file_stays_cached);
    RUN(test_read_in_order_leaves_one_step_behind);
    RUN(test_synced_bytes_go_a_step_at_a_time);
    RUN(test_a_bad_fd_is_ignored);
    RUN(test_a_followed_file_keeps_what_its_follower_has_yet_to_read);
    RUN(test_a_hold_ends_a_grace_after_its_follower);
    RUN(test_the_follow_window_is_a_share_of_memory);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    return unit_done();
}
