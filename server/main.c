/* main.c — chuted: options, startup, signals, clean shutdown.
 *
 * Exit status: 0 after a clean stop (SIGTERM/SIGINT), 1 on a failure, 2 on
 * a usage error (including plain HTTP off loopback without --insecure). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "config.h"
#include "http.h"
#include "log.h"
#include "sweeper.h"

#define SHUTDOWN_GRACE_SECONDS 10

static void notify(const char *state)
{
#ifdef HAVE_LIBSYSTEMD
    sd_notify(0, state);
#else
    (void)state;
#endif
}

/* Thousands of idle long-polls need as many descriptors. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            log_warn("cannot raise the open file limit: %s", strerror(errno));
    }
}

/* Write the port to path atomically (a reader never sees a partial file). */
static chute_status write_port_file(const char *path, unsigned port)
{
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp", path) < 0)
        return CHUTE_ERR_NOMEM;
    chute_status st = CHUTE_OK;
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%u\n", port) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0)
        st = CHUTE_ERR_IO;
    if (f && fclose(f) != 0)
        st = CHUTE_ERR_IO;
    if (st == CHUTE_OK && rename(tmp, path) != 0)
        st = CHUTE_ERR_IO;
    if (st != CHUTE_OK) {
        log_error("cannot write port file %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return st;
}

/* The host part of --listen, as a URL host. */
static void url_host(const char *listen, char *out, size_t cap)
{
    const char *colon = strrchr(listen, ':');
    size_t n = colon ? (size_t)(colon - listen) : strlen(listen);
    if (n == 0) {
        snprintf(out, cap, "0.0.0.0");
        return;
    }
    bool v6 = memchr(listen, ':', n) != NULL && listen[0] != '[';
    snprintf(out, cap, "%s%.*s%s", v6 ? "[" : "", (int)n, listen, v6 ? "]" : "");
}

int main(int argc, char **argv)
{
    relay_config cfg;
    config_defaults(&cfg);
    config_result cr = config_from_args(&cfg, argc, argv);
    if (cr != CONFIG_OK) {
        config_free(&cfg);
        return cr == CONFIG_EXIT_OK ? 0 : cr == CONFIG_USAGE ? 2 : 1;
    }
    log_set_level((log_level)cfg.log_level);
    if (sodium_init() < 0) {
        log_error("libsodium failed to initialise");
        config_free(&cfg);
        return 1;
    }

    /* Signals are taken by sigwait below; block them before any thread. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    int rc = 1;
    server srv;
    memset(&srv, 0, sizeof srv);
    srv.cfg = &cfg;
    sweeper *sw = NULL;
    char *db_path = NULL;

    /* Usage errors in --listen or TLS come before touching the data. */
    srv.listen_fd = -1;
    chute_status st = http_listen(&srv);
    if (st != CHUTE_OK) {
        rc = st == CHUTE_ERR_ARG ? 2 : 1;
        goto out;
    }
    if (mkdir(cfg.data_dir, 0700) != 0 && errno != EEXIST) {
        log_error("cannot create %s: %s", cfg.data_dir, strerror(errno));
        goto out;
    }
    if (asprintf(&db_path, "%s/chuted.db", cfg.data_dir) < 0) {
        db_path = NULL;
        goto out;
    }
    if (store_open(db_path, &srv.store) != CHUTE_OK ||
        blobs_open(cfg.data_dir, &srv.blobs) != CHUTE_OK ||
        sweeper_recover(srv.store, srv.blobs) != CHUTE_OK ||
        waiters_create(&srv.waiters) != CHUTE_OK ||
        ratelimit_create(&srv.ratelimit) != CHUTE_OK)
        goto out;
    if (http_start(&srv) != CHUTE_OK)
        goto out;
    if (sweeper_start(srv.store, srv.blobs, &cfg, &sw) != CHUTE_OK)
        goto stop;
    if (cfg.port_file && write_port_file(cfg.port_file, srv.port) != CHUTE_OK)
        goto stop;
    char host[300];
    url_host(cfg.listen, host, sizeof host);
    fprintf(stderr, "chuted: listening on %s://%s:%u\n", srv.tls ? "https" : "http", host,
            (unsigned)srv.port);
    if (cfg.access_token)
        log_info("private relay: creating inboxes and pairings needs the access token");
    notify("READY=1");

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    log_info("received %s, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    notify("STOPPING=1");
    rc = 0;
stop:
    http_stop(&srv, SHUTDOWN_GRACE_SECONDS);
    sweeper_stop(sw);
out:
    http_close(&srv);
    waiters_destroy(srv.waiters);
    ratelimit_destroy(srv.ratelimit);
    blobs_close(srv.blobs);
    store_close(srv.store);
    free(srv.tls_cert_pem);
    if (srv.tls_key_pem) {
        sodium_memzero(srv.tls_key_pem, strlen(srv.tls_key_pem));
        free(srv.tls_key_pem);
    }
    free(db_path);
    config_free(&cfg);
    if (rc == 0)
        log_info("stopped");
    return rc;
}
