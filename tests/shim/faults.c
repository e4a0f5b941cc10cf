/* faults.c — an LD_PRELOAD library that makes chosen syscalls fail, for
 * the system tests of error paths no honest disk produces on demand.
 *
 * Set in the environment of the process under test:
 *   CHUTE_FAULT_FSYNC=<text>:<n>
 *       the first n fsync/fdatasync calls on files whose path contains
 *       <text> fail with EIO (the page cache keeps the bytes, as after a
 *       real writeback error);
 *   CHUTE_FAULT_WAL_AFTER_RENAME=<text>
 *       after the first successful rename from or to a name containing
 *       <text>, the
 *       next write to a SQLite WAL file fails with EIO, once: the commit
 *       that follows a file's rename fails, as on a disk that fills or
 *       errs between the two.
 *   CHUTE_FAULT_HOLD_RENAME=<gate>
 *       the first rename of a name ending in ".part" creates <gate>.held
 *       and waits (at most 20 s) until the file <gate> exists: a test
 *       does something else meanwhile, then lets the rename go on.
 * Without them every call goes straight through. Not for production. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned int);
static char sync_text[256];
static atomic_int sync_left;
static char rename_text[256];
static atomic_bool rename_armed;    /* waiting for the rename */
static atomic_bool wal_armed;       /* the next WAL write fails */
static char hold_gate[4096];
static atomic_bool hold_armed;      /* the next .part rename waits at the gate */

static void *next_fn(const char *name);

/* Once, before any call goes through: the next definitions and the rules. */
static void load_config(void)
{
    real_fsync = next_fn("fsync");
    real_fdatasync = next_fn("fdatasync");
    real_pwrite = next_fn("pwrite");
    real_pwrite64 = next_fn("pwrite64");
    real_write = next_fn("write");
    real_rename = next_fn("rename");
    real_renameat = next_fn("renameat");
    real_renameat2 = next_fn("renameat2");
    const char *v = getenv("CHUTE_FAULT_FSYNC");
    const char *colon = v ? strrchr(v, ':') : NULL;
    if (colon && (size_t)(colon - v) < sizeof sync_text) {
        memcpy(sync_text, v, (size_t)(colon - v));
        atomic_store(&sync_left, atoi(colon + 1));
    }
    v = getenv("CHUTE_FAULT_HOLD_RENAME");
    if (v && *v && strlen(v) + 6 < sizeof hold_gate) {
        strcpy(hold_gate, v);
        atomic_store(&hold_armed, true);
    }
    v = getenv("CHUTE_FAULT_WAL_AFTER_RENAME");
    if (v && *v && strlen(v) < sizeof rename_text) {
        strcpy(rename_text, v);
        atomic_store(&rename_armed, true);
    }
}

static void *next_fn(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (!f) {
        fprintf(stderr, "faults: no %s after this library\n", name);
        abort();
    }
    return f;
}

/* Whether fd's path contains text (or, with suffix, ends with it). */
static bool fd_path_has(int fd, const char *text, bool suffix)
{
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0)
        return false;
    path[n] = '\0';
    size_t tl = strlen(text);
    if (suffix)
        return (size_t)n >= tl && strcmp(path + n - tl, text) == 0;
    return strstr(path, text) != NULL;
}

static bool sync_fails(int fd)
{
    pthread_once(&once, load_config);
    if (atomic_load(&sync_left) <= 0 || !fd_path_has(fd, sync_text, false))
        return false;
    if (atomic_fetch_sub(&sync_left, 1) <= 0)
        return false;
    errno = EIO;
    return true;
}

static bool wal_write_fails(int fd)
{
    pthread_once(&once, load_config);
    if (!atomic_load(&wal_armed) || !fd_path_has(fd, "-wal", true))
        return false;
    if (!atomic_exchange(&wal_armed, false))
        return false;
    errno = EIO;
    return true;
}

static void note_rename(int rc, const char *from, const char *to)
{
    pthread_once(&once, load_config);
    if (rc == 0 && atomic_load(&rename_armed) &&
        (strstr(from, rename_text) || strstr(to, rename_text)) &&
        atomic_exchange(&rename_armed, false))
        atomic_store(&wal_armed, true);
}

int fsync(int fd)
{
    pthread_once(&once, load_config);
    return sync_fails(fd) ? -1 : real_fsync(fd);
}

int fdatasync(int fd)
{
    pthread_once(&once, load_config);
    return sync_fails(fd) ? -1 : real_fdatasync(fd);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    pthread_once(&once, load_config);
    return wal_write_fails(fd) ? -1 : real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    pthread_once(&once, load_config);
    return wal_write_fails(fd) ? -1 : real_pwrite64(fd, buf, n, off);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    pthread_once(&once, load_config);
    return wal_write_fails(fd) ? -1 : real_write(fd, buf, n);
}

/* CHUTE_FAULT_HOLD_RENAME: the first rename of a .part waits at the gate. */
static void hold_rename(const char *from)
{
    pthread_once(&once, load_config);
    size_t n = strlen(from);
    if (n < 5 || strcmp(from + n - 5, ".part") != 0 || !atomic_load(&hold_armed) ||
        !atomic_exchange(&hold_armed, false))
        return;
    char held[sizeof hold_gate + 8];
    snprintf(held, sizeof held, "%s.held", hold_gate);
    int fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    for (int i = 0; i < 2000 && access(hold_gate, F_OK) != 0; i++)
        usleep(10000);
}

int rename(const char *from, const char *to)
{
    pthread_once(&once, load_config);
    hold_rename(from);
    int rc = real_rename(from, to);
    note_rename(rc, from, to);
    return rc;
}

int renameat(int fromfd, const char *from, int tofd, const char *to)
{
    pthread_once(&once, load_config);
    hold_rename(from);
    int rc = real_renameat(fromfd, from, tofd, to);
    note_rename(rc, from, to);
    return rc;
}

int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned int flags)
{
    pthread_once(&once, load_config);
    hold_rename(from);
    int rc = real_renameat2(fromfd, from, tofd, to, flags);
    note_rename(rc, from, to);
    return rc;
}
