/* main.c — chutefs [-H DIR] MOUNTPOINT [-f] [-d] [-o FUSE_OPTIONS]
 *
 * Goes to the background (unless -f), opens the device state (peers), the
 * queue and the cache, then hands the mount to libfuse's multithreaded
 * loop. Start-up does no scanning and no
 * network: a queue left by an earlier run is simply there in the DB. */
#define FUSE_USE_VERSION 312
#include <fuse.h>
#include <fuse_lowlevel.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chutefs.h"
#include "daemon.h"
#include "downloader.h"
#include "ops.h"
#include "peers.h"
#include "growing.h"
#include "ofiles.h"
#include "reseal.h"
#include "uploader.h"

typedef struct {
    char *home;
    int help;
    int version;
    char *first;     /* the first non-option argument, held back */
    int nonopts;
} options;

static const struct fuse_opt option_spec[] = {
    {"-H %s", offsetof(options, home), 0},
    {"--home=%s", offsetof(options, home), 0},
    {"-h", offsetof(options, help), 1},
    {"--help", offsetof(options, help), 1},
    {"-V", offsetof(options, version), 1},
    {"--version", offsetof(options, version), 1},
    FUSE_OPT_END,
};

/* mount(8) and fstab run `chutefs SOURCE MOUNTPOINT -o OPTIONS`: with two
 * non-option arguments the first is the state folder (as -H; "none" or
 * "chute" mean the default). With one it is the mount point. */
static int nonopt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    options *o = data;
    if (key != FUSE_OPT_KEY_NONOPT)
        return 1;
    if (++o->nonopts == 1) {
        o->first = strdup(arg);
        return o->first ? 0 : -1;
    }
    return 1;
}

static void usage(FILE *to, const char *prog)
{
    fprintf(to, "usage: %s [-H DIR] MOUNTPOINT [-f] [-d] [-o FUSE_OPTIONS]\n"
           "       %s STATE_DIR MOUNTPOINT -o FUSE_OPTIONS   (as mount(8) runs it)\n\n"
           "    -H DIR, --home=DIR   device state folder (default $CHUTE_HOME,\n"
           "                         else $XDG_DATA_HOME/chute)\n"
           "    -f                   stay in the foreground\n"
           "    -d                   debug output (implies -f)\n\n", prog, prog);
}

static int make_dir(char *out, size_t cap, const char *parent, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", parent, name);
    if (n < 0 || (size_t)n >= cap) return -1;
    if (mkdir(out, 0700) != 0 && errno != EEXIST) return -1;
    return 0;
}

static int open_all(chutefs *fs, const char *home_opt)
{
    chute_status st = devstate_resolve_dir(home_opt, fs->home, sizeof fs->home);
    if (st) { fprintf(stderr, "chutefs: no state folder: %s\n", chute_strstatus(st)); return -1; }
    /* Absolute: the background mount chdirs to "/" (daemon.h) before its
     * threads open their own handles on the state (-H ./state would miss). */
    char abs_home[PATH_MAX];
    if (realpath(fs->home, abs_home)) snprintf(fs->home, sizeof fs->home, "%s", abs_home);
    st = devstate_open(fs->home, 0, &fs->ds);
    if (st == CHUTE_ERR_NOT_FOUND) {
        fprintf(stderr, "chutefs: no device state in %s (run pairtool init)\n", fs->home);
        return -1;
    }
    if (st == CHUTE_ERR_UNSUPPORTED) {
        fprintf(stderr, "chutefs: %s was written by a newer Chute; use that version\n",
                fs->home);
        return -1;
    }
    if (st == CHUTE_ERR_REFUSED) {
        fprintf(stderr, "chutefs: refusing the state in %s: other users can write to the "
                "folder (or it is not yours); make it yours alone (chmod go-w)\n", fs->home);
        return -1;
    }
    if (st) { fprintf(stderr, "chutefs: %s: %s\n", fs->home, chute_strstatus(st)); return -1; }
    if (make_dir(fs->spool, sizeof fs->spool, fs->home, "spool") ||
        make_dir(fs->staging, sizeof fs->staging, fs->spool, "staging") ||
        make_dir(fs->sealed, sizeof fs->sealed, fs->spool, "sealed")) {
        fprintf(stderr, "chutefs: cannot make the spool in %s: %s\n", fs->home, strerror(errno));
        return -1;
    }
    /* One mount per state folder: two would seal into one queue and race
     * on the staging tree. The lock dies with the process, even on kill -9. */
    char db[PATH_MAX];
    if (snprintf(db, sizeof db, "%s/chutefs.lock", fs->home) >= (int)sizeof db) return -1;
    fs->lock_fd = open(db, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fs->lock_fd < 0 || flock(fs->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "chutefs: %s is in use by another chutefs\n", fs->home);
        return -1;
    }
    fs->started = time(NULL);
    char inbox_db[PATH_MAX];
    if (snprintf(db, sizeof db, "%s/chutefs.db", fs->home) >= (int)sizeof db ||
        snprintf(inbox_db, sizeof inbox_db, "%s/" CACHE_DB_NAME, fs->home) >= (int)sizeof inbox_db)
        return -1;
    if ((st = queue_open(db, &fs->q)) || (st = cache_open(inbox_db, &fs->c)) ||
        (st = cache_adopt_legacy(fs->c, db)) ||
        (st = peers_open(fs->ds, &fs->peers)) || (st = ofiles_new(&fs->open)) ||
        (st = growing_table_new(&fs->growing)) ||
        /* Before any file is open: a file an earlier run was sending
         * while written was never closed by it. */
        (st = queue_cancel_growing(fs->q))) {
        fprintf(stderr, "chutefs: %s: %s\n", fs->c ? inbox_db : db, chute_strstatus(st));
        return -1;
    }
    pthread_mutex_init(&fs->seal_mu, NULL);
    relay_reach_init(&fs->reach);
    return 0;
}

static void close_all(chutefs *fs)
{
    ofiles_free(fs->open);
    growing_table_free(fs->growing);
    peers_close(fs->peers);
    cache_close(fs->c);
    queue_close(fs->q);
    devstate_close(fs->ds);
    if (fs->lock_fd > 0) close(fs->lock_fd);
    relay_reach_destroy(&fs->reach);
}

/* Background threads start once libfuse is up (after it daemonized:
 * threads do not survive its fork) and end before the state is closed. */
static void *mount_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    chutefs *fs = chutefs_ops.init(conn, cfg);
    if (downloader_start(fs, &fs->dl) != CHUTE_OK)
        fprintf(stderr, "chutefs: the downloader did not start: nothing will arrive\n");
    return fs;
}

static void mount_destroy(void *data)
{
    chutefs *fs = data;
    downloader_stop(fs->dl);
    fs->dl = NULL;
}

/* What fuse_main does after its fork, here in the process that opened
 * the state (daemon.h). Exit codes as chutefs(1) has them: 2 for options
 * libfuse refuses, 1 for any other failure; a loop ended by a signal
 * (SIGTERM, SIGINT, SIGHUP: a stop) is a success. */
static int serve(struct fuse_args *args, const struct fuse_cmdline_opts *co, chutefs *fs,
                 int notify)
{
    struct fuse_operations mount_ops = chutefs_ops;
    mount_ops.init = mount_init;
    mount_ops.destroy = mount_destroy;
    struct fuse *f = fuse_new(args, &mount_ops, sizeof mount_ops, fs);
    if (!f) { daemon_ready(notify, 2); return 2; }   /* it said which option */
    int rc = 0;
    bool mounted = false;
    struct fuse_session *se = fuse_get_session(f);
    struct fuse_loop_config *lc = NULL;
    if (fuse_mount(f, co->mountpoint) != 0) {
        rc = 1;
    } else {
        mounted = true;
        if (fuse_set_signal_handlers(se) != 0) rc = 1;
        else if (!co->singlethread && !(lc = fuse_loop_cfg_create())) rc = 1;
    }
    daemon_ready(notify, rc);
    if (!rc) {
        if (lc) {
            fuse_loop_cfg_set_clone_fd(lc, (unsigned)co->clone_fd);
            fuse_loop_cfg_set_idle_threads(lc, co->max_idle_threads);
            fuse_loop_cfg_set_max_threads(lc, co->max_threads);
        }
        int end = lc ? fuse_loop_mt(f, lc) : fuse_loop(f);
        rc = end == 0 || end == SIGTERM || end == SIGINT || end == SIGHUP ? 0 : 1;
        fuse_remove_signal_handlers(se);
    }
    if (mounted) fuse_unmount(f);
    fuse_loop_cfg_destroy(lc);
    fuse_destroy(f);
    return rc;
}

/* Whether the mount options let users other than the mounter in. */
static bool lets_others_in(const struct fuse_args *args)
{
    for (int i = 1; i < args->argc; i++) {
        const char *a = args->argv[i];
        if (strstr(a, "allow_other") || strstr(a, "allow_root")) return true;
    }
    return false;
}

/* A usage error (exit 2) before touching any state: parse a copy, since
 * fuse_parse_cmdline consumes what it recognises. */
static int has_mountpoint(const struct fuse_args *args)
{
    struct fuse_args copy = FUSE_ARGS_INIT(0, NULL);
    struct fuse_cmdline_opts co;
    memset(&co, 0, sizeof co);
    int ok = 1;
    for (int i = 0; i < args->argc && ok; i++)
        ok = fuse_opt_add_arg(&copy, args->argv[i]) == 0;
    ok = ok && fuse_parse_cmdline(&copy, &co) == 0 && co.mountpoint != NULL;
    free(co.mountpoint);
    fuse_opt_free_args(&copy);
    return ok;
}

int main(int argc, char *argv[])
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    options o = {0};
    if (fuse_opt_parse(&args, &o, option_spec, nonopt_proc) != 0) return 2;
    if (o.nonopts >= 2) {
        if (strcmp(o.first, "none") != 0 && strcmp(o.first, "chute") != 0 && !o.home)
            o.home = o.first;
        else
            free(o.first);
        o.first = NULL;
    } else if (o.first) {
        if (fuse_opt_add_arg(&args, o.first) != 0) return 1;
        free(o.first);
        o.first = NULL;
    }
    if (o.help) {
        usage(stdout, argv[0]);
        fuse_opt_add_arg(&args, "--help");
        args.argv[0][0] = '\0';   /* libfuse then prints only its options */
        fuse_main(args.argc, args.argv, &chutefs_ops, NULL);
        fuse_opt_free_args(&args);
        return 0;
    }
    if (o.version) {
        printf("chutefs %s\n", CHUTE_VERSION);
        fuse_opt_free_args(&args);
        return 0;
    }
    if (o.home && !*o.home) {
        fprintf(stderr, "chutefs: -H needs a folder (an empty one would mean the default)\n");
        fuse_opt_free_args(&args);
        free(o.home);
        return 2;
    }
    if (!has_mountpoint(&args)) {
        usage(stderr, argv[0]);
        fuse_opt_free_args(&args);
        free(o.home);
        return 2;
    }
    if (sodium_init() < 0) { fprintf(stderr, "chutefs: libsodium failed\n"); return 1; }
    /* chutefs's own files are private: the inbox's databases hold what was
     * received, in plaintext. Outbox files and folders get the mode their
     * caller asked for, its umask applied by the kernel (outbox.c). */
    umask(077);
    chutefs *fs = calloc(1, sizeof *fs);
    if (!fs) return 1;
    int rc = 1;
    /* libfuse 3.14.0 passes an unset max_idle_threads (-1) on and warns on
     * every mount unless it is given; a later -o max_idle_threads=N wins. */
    if (fuse_opt_insert_arg(&args, 1, "-omax_idle_threads=10") != 0) { free(fs); return 1; }
    /* Others let in: the kernel checks modes. chutefs does every operation
     * as itself, so anyone could otherwise read or send as its owner. Only
     * then: with attribute caching off, each check costs a GETATTR. */
    if (lets_others_in(&args) &&
        fuse_opt_insert_arg(&args, 1, "-odefault_permissions") != 0) { free(fs); return 1; }
    struct fuse_cmdline_opts co;
    memset(&co, 0, sizeof co);
    if (fuse_parse_cmdline(&args, &co) != 0) { free(fs); free(o.home); return 2; }
    int notify = -1;
    if (!co.foreground && daemon_fork(&notify, &rc)) {   /* the parent */
        free(co.mountpoint);
        free(fs);
        free(o.home);
        fuse_opt_free_args(&args);
        return rc;
    }
    if (open_all(fs, o.home) == 0)
        rc = serve(&args, &co, fs, notify);
    else
        daemon_ready(notify, rc);
    /* The resealer first: a seal it makes wakes the uploader. */
    resealer_stop(fs->reseal);
    uploader_stop(fs->up);   /* started by the init op once the mount was up */
    close_all(fs);
    free(fs);
    free(o.home);
    free(co.mountpoint);
    fuse_opt_free_args(&args);
    return rc;
}
