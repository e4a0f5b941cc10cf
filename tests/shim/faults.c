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
 *   CHUTE_FAULT_HOLD_CREATE=<gate>
 *       the first open of a name ending in ".part" with O_CREAT waits at
 *       the gate (as above) before it goes through: the moment after a
 *       request decided to make a body file and before the file is there.
 *   CHUTE_FAULT_HOLD_AFTER_SQL=<text>, CHUTE_FAULT_HOLD_AFTER_SQL_GATE=<gate>
 *   and optionally CHUTE_FAULT_HOLD_AFTER_SQL_SKIP=<n>
 *       the thread that first runs (sqlite3_step) a statement whose SQL
 *       contains <text> waits at the gate (as above) at its (n+1)th
 *       pthread_mutex_lock made by the program itself (not by a library)
 *       after it, before taking that lock: a request stopped between two
 *       of its own steps (say after reading the store and before the lock
 *       it takes next), holding whatever it holds there, and no more.
 * Without them every call goes straight through. Not for production. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
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
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static char create_gate[4096];
static atomic_bool create_armed;    /* the next O_CREAT of a .part waits at the gate */
static int (*real_mutex_lock)(pthread_mutex_t *);
static char sql_text[1024];
static char sql_gate[4096];
static int sql_skip;
static atomic_bool sql_armed;       /* the next statement with sql_text holds its thread */
static _Thread_local int sql_locks_left;   /* >0: hold at this many program locks on */

/* sqlite3, looked up when a statement first runs: not every process has it. */
typedef struct sqlite3_stmt sqlite3_stmt;
static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;
static int (*real_sqlite3_step)(sqlite3_stmt *);
static const char *(*real_sqlite3_sql)(sqlite3_stmt *);

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
    real_open = next_fn("open");
    real_open64 = next_fn("open64");
    real_openat = next_fn("openat");
    real_openat64 = next_fn("openat64");
    real_mutex_lock = next_fn("pthread_mutex_lock");
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
    v = getenv("CHUTE_FAULT_HOLD_CREATE");
    if (v && *v && strlen(v) + 6 < sizeof create_gate) {
        strcpy(create_gate, v);
        atomic_store(&create_armed, true);
    }
    v = getenv("CHUTE_FAULT_HOLD_AFTER_SQL");
    const char *g = getenv("CHUTE_FAULT_HOLD_AFTER_SQL_GATE");
    if (v && *v && g && *g && strlen(v) < sizeof sql_text && strlen(g) + 6 < sizeof sql_gate) {
        strcpy(sql_text, v);
        strcpy(sql_gate, g);
        const char *skip = getenv("CHUTE_FAULT_HOLD_AFTER_SQL_SKIP");
        sql_skip = skip ? atoi(skip) : 0;
        atomic_store(&sql_armed, true);
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

/* Say so in <gate>.held, then wait (at most 20 s) until <gate> exists. */
static void wait_at_gate(const char *gate)
{
    char held[4096 + 8];
    snprintf(held, sizeof held, "%s.held", gate);
    int fd = real_open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    for (int i = 0; i < 2000 && access(gate, F_OK) != 0; i++)
        usleep(10000);
}

static bool is_part(const char *name)
{
    size_t n = strlen(name);
    return n >= 5 && strcmp(name + n - 5, ".part") == 0;
}

/* CHUTE_FAULT_HOLD_RENAME: the first rename of a .part waits at the gate. */
static void hold_rename(const char *from)
{
    pthread_once(&once, load_config);
    if (!is_part(from) || !atomic_load(&hold_armed) || !atomic_exchange(&hold_armed, false))
        return;
    wait_at_gate(hold_gate);
}

/* CHUTE_FAULT_HOLD_CREATE: the first O_CREAT open of a .part waits. */
static void hold_create(const char *path, int flags)
{
    if (!(flags & O_CREAT) || !atomic_load(&create_armed) || !is_part(path) ||
        !atomic_exchange(&create_armed, false))
        return;
    wait_at_gate(create_gate);
}

/* open's mode argument, there only when the flags need one. */
#define OPEN_MODE(flags, last, mode)                                       \
    do {                                                                    \
        if (((flags) & O_CREAT) || ((flags) & O_TMPFILE) == O_TMPFILE) {    \
            va_list ap;                                                     \
            va_start(ap, last);                                             \
            (mode) = (mode_t)va_arg(ap, int);                               \
            va_end(ap);                                                     \
        }                                                                   \
    } while (0)

int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    OPEN_MODE(flags, flags, mode);
    pthread_once(&once, load_config);
    hold_create(path, flags);
    return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    mode_t mode = 0;
    OPEN_MODE(flags, flags, mode);
    pthread_once(&once, load_config);
    hold_create(path, flags);
    return real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    OPEN_MODE(flags, flags, mode);
    pthread_once(&once, load_config);
    hold_create(path, flags);
    return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    OPEN_MODE(flags, flags, mode);
    pthread_once(&once, load_config);
    hold_create(path, flags);
    return real_openat64(dirfd, path, flags, mode);
}

/* CHUTE_FAULT_HOLD_AFTER_SQL: the statement's thread counts the program's
 * own locks from here. */
static void load_sqlite(void)
{
    real_sqlite3_step = next_fn("sqlite3_step");
    real_sqlite3_sql = next_fn("sqlite3_sql");
}

int sqlite3_step(sqlite3_stmt *q);
int sqlite3_step(sqlite3_stmt *q)
{
    pthread_once(&once, load_config);
    pthread_once(&sqlite_once, load_sqlite);
    int rc = real_sqlite3_step(q);
    if (atomic_load(&sql_armed)) {
        const char *sql = real_sqlite3_sql(q);
        if (sql && strstr(sql, sql_text) && atomic_exchange(&sql_armed, false))
            sql_locks_left = sql_skip + 1;
    }
    return rc;
}

/* Whether code at address `at` is the program's, not a library's. */
static bool in_program(const void *at)
{
    Dl_info mine, program;
    const void *phdr = (const void *)getauxval(AT_PHDR);
    return phdr && dladdr(at, &mine) && dladdr(phdr, &program) &&
           mine.dli_fbase == program.dli_fbase;
}

int pthread_mutex_lock(pthread_mutex_t *m)
{
    pthread_once(&once, load_config);
    if (sql_locks_left > 0 && in_program(__builtin_return_address(0)) &&
        --sql_locks_left == 0)
        wait_at_gate(sql_gate);
    return real_mutex_lock(m);
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
