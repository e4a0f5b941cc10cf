/* cmd_info.c — pairtool status, export-identity and recipient. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cache.h"
#include "cli.h"
#include "queue.h"
#include "report.h"
#include "unqueued.h"

static const char STATUS_USAGE[] =
    "Usage: pairtool [-H DIR] status [--json]\n"
    "\n"
    "This device's name, relay (and whether it answers now), peer count, and\n"
    "the mount's queue: counters, every pending outgoing file (progress\n"
    "bars on a terminal) and the files it could not queue yet.\n"
    "\n"
    "  --json   one JSON object: name, recipient, relay, relay_reachable, peers,\n"
    "           queue (the mount's report, or null before the first mount;\n"
    "           see docs/MOUNT.md)\n";

static const char EXPORT_USAGE[] =
    "Usage: pairtool [-H DIR] export-identity\n"
    "\n"
    "Print this device's age identity (AGE-SECRET-KEY-1...). It decrypts\n"
    "everything sent to this device: keep it secret.\n";

static const char RECIPIENT_USAGE[] =
    "Usage: pairtool [-H DIR] recipient\n"
    "\n"
    "Print this device's age recipient (age1...), its public key.\n";

/* The mount's queue (DIR/chutefs.db) and cache (DIR/inbox.db), opened
 * only if a mount made them: a status must not create them. 0 and NULLs
 * if there is none; a cache not made yet reads as empty. */
static int open_mount_db(const cli_globals *g, queue **q, cache **c)
{
    *q = NULL;
    *c = NULL;
    char dir[DEVSTATE_PATH_MAX], db[DEVSTATE_PATH_MAX + 16], inbox_db[DEVSTATE_PATH_MAX + 16];
    if (devstate_resolve_dir(g->home, dir, sizeof dir) != CHUTE_OK) return -1;
    if (snprintf(db, sizeof db, "%s/chutefs.db", dir) >= (int)sizeof db ||
        snprintf(inbox_db, sizeof inbox_db, "%s/" CACHE_DB_NAME, dir) >= (int)sizeof inbox_db)
        return -1;
    if (access(db, F_OK) != 0) return 0;
    chute_status st = queue_open(db, q);
    if (!st && access(inbox_db, F_OK) == 0) st = cache_open_without_reaper(inbox_db, c);
    if (st) {
        cli_error("cannot read the mount's queue in %s: %s", db, chute_strstatus(st));
        cache_close(*c);
        queue_close(*q);
        *q = NULL;
        *c = NULL;
        return -1;
    }
    return 0;
}

typedef struct {
    json_t *list;
    bool nomem;
} unqueued_walk;

static int add_unqueued(const char *peer, const char *path, const struct stat *sb, void *arg)
{
    unqueued_walk *w = arg;
    if (sb->st_nlink > 1) return 0;   /* queued after all: the queue lists it */
    json_t *o = json_pack("{s:s,s:s,s:I}", "peer", peer, "path", path,
                          "size", (json_int_t)sb->st_size);
    w->nomem = !o || json_array_append_new(w->list, o) != 0;
    return w->nomem;
}

/* The files the mount closed whole but could not queue (unqueued.h), as a
 * JSON array of {peer, path, size}; NULL (said) if they cannot be read. */
static json_t *list_unqueued(const cli_globals *g)
{
    char dir[DEVSTATE_PATH_MAX], staging[DEVSTATE_PATH_MAX + 16];
    if (devstate_resolve_dir(g->home, dir, sizeof dir) != CHUTE_OK ||
        snprintf(staging, sizeof staging, "%s/spool/staging", dir) >= (int)sizeof staging) {
        cli_error("cannot find the mount's spool");
        return NULL;
    }
    if (access(staging, F_OK) != 0) return json_array();
    /* A folder renamed or removed under the walk: walk again. */
    for (int tries = 0; tries < 3; tries++) {
        unqueued_walk w = { .list = json_array() };
        if (!w.list) break;
        chute_status st = unqueued_each(staging, add_unqueued, &w);
        int e = errno;
        if (st == CHUTE_OK && !w.nomem) return w.list;
        json_decref(w.list);
        if (st != CHUTE_ERR_NOT_FOUND) {
            cli_error("cannot look for files not queued in %s: %s", staging,
                      w.nomem ? "out of memory" : strerror(e));
            return NULL;
        }
    }
    cli_error("cannot look for files not queued in %s: it kept changing", staging);
    return NULL;
}

typedef struct {
    int tty;
} bar_walk;

/* One line per pending file; on a terminal a bar for what is on the relay. */
static int print_item(const queue_item *it, void *arg)
{
    const bar_walk *w = arg;
    char buf[32];
    const char *state = report_state_text(it, buf, sizeof buf);
    printf("  %s/%s  %s", it->peer, it->path, state);
    if (w->tty && it->blob_size) {
        unsigned pct = it->progress >= it->blob_size ? 100
                       : (unsigned)(it->progress * 100 / it->blob_size);
        char bar[21];
        for (unsigned i = 0; i < 20; i++) bar[i] = i < pct / 5 ? '#' : '-';
        bar[20] = '\0';
        printf("  [%s] %3u%%", bar, pct);
    }
    if (it->last_error[0]) printf("  (%s)", it->last_error);
    putchar('\n');
    return 0;
}

/* A file still being written whose bytes already go: no size to show a
 * bar against yet, only what is on the relay. */
static int print_growing(const queue_item *it, void *arg)
{
    (void)arg;
    printf("  %s/%s  sending while written, %llu bytes on relay", it->peer, it->path,
           (unsigned long long)it->progress);
    if (it->last_error[0]) printf("  (%s)", it->last_error);
    putchar('\n');
    return 0;
}

static int count_growing(const queue_item *it, void *arg)
{
    (void)it;
    ++*(unsigned long long *)arg;
    return 0;
}

static int print_queue(queue *q, cache *c, const json_t *unqueued)
{
    queue_counts_t qc;
    cache_counts_t cc = {0};
    if (queue_counts(q, &qc) != CHUTE_OK || (c && cache_counts(c, &cc) != CHUTE_OK)) {
        cli_error("cannot read the mount's queue");
        return -1;
    }
    /* The counters of --json's queue, in its order. */
    printf("outgoing:  %llu\non relay:  %llu\ndelivered: %llu\nincoming:  %llu\n"
           "stored:    %llu\nquarantined: %llu\n",
           (unsigned long long)(qc.queued + qc.uploading), (unsigned long long)qc.uploaded,
           (unsigned long long)qc.delivered, (unsigned long long)cc.incoming,
           (unsigned long long)cc.stored, (unsigned long long)cc.quarantined);
    if (qc.queued + qc.uploading + qc.uploaded) puts("pending:");
    bar_walk w = { .tty = isatty(STDOUT_FILENO) };
    if (queue_each_active(q, print_item, &w) != CHUTE_OK) return -1;
    unsigned long long growing = 0;
    if (queue_each_growing(q, count_growing, &growing) != CHUTE_OK) return -1;
    if (growing) puts("writing:");
    if (queue_each_growing(q, print_growing, NULL) != CHUTE_OK) return -1;
    if (json_array_size(unqueued))
        puts("not queued (closed whole, but the queue had no room; the mount retries):");
    size_t i;
    const json_t *f;
    json_array_foreach(unqueued, i, f)
        printf("  %s/%s  not queued, %lld bytes\n",
               json_string_value(json_object_get(f, "peer")),
               json_string_value(json_object_get(f, "path")),
               (long long)json_integer_value(json_object_get(f, "size")));
    return 0;
}

int cmd_status(const cli_globals *g, int argc, char **argv)
{
    int json = 0, rc;
    if (!cli_parse_no_operands(argc, argv, STATUS_USAGE, &json, &rc))
        return rc;
    devstate_device me;
    devstate *ds = cli_open_device(g, &me);
    if (!ds)
        return EXIT_FAIL;
    size_t peers = 0;
    chute_status st = devstate_count_peers(ds, &peers);
    devstate_close(ds);
    if (st != CHUTE_OK) {
        cli_error("cannot read the peers: %s", chute_strstatus(st));
        devstate_device_wipe(&me);
        return EXIT_FAIL;
    }
    /* Reachable means: it answers health and still knows our inbox. */
    int reachable = 0;
    const char *problem = "";
    relay_client *client = cli_relay_client(&me, 5000);
    if (client) {
        relay_inbox_info info;
        st = relay_health(client);
        if (st == CHUTE_OK)
            st = relay_inbox_get(client, me.inbox, me.owner_token, &info);
        reachable = st == CHUTE_OK;
        if (st == CHUTE_ERR_NOT_FOUND)
            problem = "the relay does not know this device's inbox any more";
        else if (st != CHUTE_OK)
            problem = relay_client_error(client);
    }
    rc = EXIT_OK;
    queue *mq = NULL;
    cache *mc = NULL;
    if (open_mount_db(g, &mq, &mc) != 0) rc = EXIT_FAIL;
    json_t *unqueued = mq ? list_unqueued(g) : NULL;
    if (mq && !unqueued) rc = EXIT_FAIL;
    if (json) {
        json_t *queue_obj = json_null();
        char *report = NULL;
        if (mq && report_json(mq, mc, reachable ? "reachable" : "unreachable", &report) == CHUTE_OK) {
            json_decref(queue_obj);
            queue_obj = json_loads(report, 0, NULL);
            if (queue_obj && unqueued && json_object_set(queue_obj, "not_queued", unqueued) != 0)
                rc = EXIT_FAIL;
        } else if (mq) {
            rc = EXIT_FAIL;
        }
        free(report);
        json_t *o = queue_obj ? json_pack("{s:s,s:s,s:s,s:b,s:I,s:o}", "name", me.name,
                              "recipient", me.recipient, "relay", me.relay_url,
                              "relay_reachable", reachable, "peers", (json_int_t)peers,
                              "queue", queue_obj) : NULL;
        if (!o || json_dumpf(o, stdout, JSON_INDENT(2)) != 0)
            rc = EXIT_FAIL;
        putchar('\n');
        json_decref(o);
    } else {
        printf("device:    %s\n", me.name);
        printf("recipient: %s\n", me.recipient);
        printf("relay:     %s (%s%s%s)\n", me.relay_url,
               reachable ? "reachable" : "unreachable", *problem ? ": " : "", problem);
        if (me.access_token[0])
            printf("access:    a private relay's access token is set\n");   /* never the token */
        printf("peers:     %zu\n", peers);
        if (mq && print_queue(mq, mc, unqueued) != 0) rc = EXIT_FAIL;
    }
    json_decref(unqueued);
    cache_close(mc);
    queue_close(mq);
    relay_client_free(client);
    devstate_device_wipe(&me);
    return rc;
}

int cmd_export_identity(const cli_globals *g, int argc, char **argv)
{
    int rc;
    if (!cli_parse_no_operands(argc, argv, EXPORT_USAGE, NULL, &rc))
        return rc;
    devstate_device me;
    devstate *ds = cli_open_device(g, &me);
    if (!ds)
        return EXIT_FAIL;
    printf("%s\n", me.identity);
    devstate_device_wipe(&me);
    devstate_close(ds);
    return EXIT_OK;
}

int cmd_recipient(const cli_globals *g, int argc, char **argv)
{
    int rc;
    if (!cli_parse_no_operands(argc, argv, RECIPIENT_USAGE, NULL, &rc))
        return rc;
    devstate_device me;
    devstate *ds = cli_open_device(g, &me);
    if (!ds)
        return EXIT_FAIL;
    printf("%s\n", me.recipient);
    devstate_device_wipe(&me);
    devstate_close(ds);
    return EXIT_OK;
}
