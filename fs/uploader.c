/* uploader.c — see uploader.h. */
#include "uploader.h"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "backoff.h"
#include "growing.h"
#include "ofiles.h"
#include "outbox.h"
#include "pagecache.h"
#include "peers.h"
#include "age_source.h"
#include "relay_client.h"
#include "relay_url.h"
#include "seal.h"
#include "staging.h"

/* Each PATCH is fsynced by the relay before it answers, and the next one
 * waits for that answer: on a disk busy with other writes the wait was
 * ~50 ms, so 512 MiB PATCHes (against 64) took ~4 % off a 1 GiB file end
 * to end. What a cut PATCH loses is small all the same: the relay makes
 * its offset durable every 16 MiB as it goes (PROTOCOL §6.5). The body is
 * made as it goes, so memory does not grow with it, progress is noted
 * while it is sent (PROGRESS_NOTE_MS), and a stop cuts it short
 * (relay_client_set_stop). */
#define CHUNK_BYTES        (512u << 20)
/* While a PATCH is sent, the bytes handed to the relay are noted in the
 * queue this often (queue_set_sent, for status; the answer then notes the
 * durable offset), and a file deleted meanwhile stops it. */
#define PROGRESS_NOTE_MS   250
/* A proxy in front of the relay may cap request bodies (nginx's
 * client_max_body_size): its 413 halves the PATCH size, down to this. */
#define MIN_CHUNK_BYTES    (1u << 20)
/* Retry delays (ms). Network: the relay may be back any moment. Refused:
 * someone must act (pair again, free quota) — no point asking often. */
/* The words of a request that got no answer: items with them go again at
 * once when the relay answers (queue_retry_now), not at the end of their
 * backoff. A 5xx is an answer: that item keeps its backoff. */
#define UNREACHABLE        "relay unreachable: "
#define RELAY_FAILED       "relay failed: "
#define NET_BASE_MS        1000u
#define NET_CAP_MS         (5u * 60 * 1000)
#define REFUSED_BASE_MS    (15u * 60 * 1000)
#define REFUSED_CAP_MS     (6u * 3600 * 1000)
#define LIMIT_BASE_MS      (60u * 1000)
#define LIMIT_CAP_MS       (3600u * 1000)
/* A 409 offset mismatch is answered by re-asking the offset; a relay that
 * keeps disagreeing is a failure like any other. */
#define MAX_CONFLICTS      5
/* Delivery checks: per item, from every second to every minute. */
#define POLL_FIRST_MS      500u
#define POLL_MIN_MS        1000u
#define POLL_MAX_MS        (60u * 1000)
#define POLLS_PER_ROUND    64
#define CANCELS_PER_ROUND  64
#define SWEEP_AFTER_MS     2000
#define PROBE_CAP_MS       (30u * 1000)
#define TICK_MS            1000
/* A file sent while written: each PATCH waits for this much more of it,
 * or for GROW_WAIT_MS, whichever comes first. */
#define GROW_PATCH_MIN     (4u << 20)
#define GROW_WAIT_MS       1000

typedef enum { RELAY_UNKNOWN = 0, RELAY_REACHABLE, RELAY_UNREACHABLE } relay_seen;

/* Peers may have their inboxes on other relays than ours: each relay is
 * seen, held and probed on its own, so one that is down holds up only the
 * items of the peers on it. This many at once; one more takes the place
 * of one that answers (our own keeps slot 0). */
#define RELAYS_MAX 8

typedef struct {
    char origin[RELAY_URL_MAX];   /* the key: canonical (relay_url.h) */
    char url[RELAY_URL_MAX];      /* a spelling of it, for the probe */
    relay_seen seen;
    /* While it does not answer, the workers claim none of its peers'
     * items until hold_until (1 s doubling to 30 s, `holds` in a row),
     * rather than every one whose own backoff came due: with thousands
     * queued, each claim and failure is two fsyncs. An answer ends it;
     * the probe asks meanwhile (1 s doubling to 30 s, `probes`). */
    int64_t hold_until_ms;
    uint32_t holds;
    int64_t probe_next_ms;
    uint32_t probes;
} relay_track;

/* One relay_client and the base URL it talks to; remade when a peer's
 * inbox is on another relay. */
typedef struct {
    relay_client *c;
    char url[RELAY_URL_MAX];
    char origin[RELAY_URL_MAX];   /* url's canonical origin */
} conn;

typedef struct {
    uploader *up;
    pthread_t thread;
    bool started;
    conn cn;
    queue_item it;
    devstate_peer peer;        /* secrets: wiped after each item */
    uint64_t patch_bytes;      /* PATCH size; smaller after a proxy's 413 */
    char held[QUEUE_ID_LEN + 1];   /* the item claimed, "" if none; under up->mu */
} worker;

typedef struct {
    char id[QUEUE_ID_LEN + 1];
    int64_t next_ms;
    uint32_t interval_ms;
} poll_entry;

struct uploader {
    chutefs *fs;
    pthread_mutex_t mu;
    pthread_cond_t work_cv;    /* workers: a seal, a stop, the relay back */
    pthread_cond_t track_cv;   /* tracker: an upload done, a cancel, a stop */
    uint64_t work_gen, track_gen;
    bool stopping, ready;
    atomic_int stop_flag;      /* set with stopping: cuts requests in flight short */
    atomic_int growing_sends;  /* workers sending a file still being written */
    /* What the tracker read at boot (not secret). */
    char own_relay[RELAY_URL_MAX];
    char own_origin[RELAY_URL_MAX];   /* own_relay's canonical origin */
    char cacert[DEVSTATE_PATH_MAX];
    char pin[DEVSTATE_PIN_MAX];
    devstate *ds;              /* own handle (devstate is not thread-safe) */
    pthread_mutex_t ds_mu;
    /* Under mu: workers between starting a claim and noting what they
     * got; and whether an item was left uploading with no worker on it
     * (its state write failed), for the tracker to put back. */
    int claiming;
    bool putting_back;         /* put_back_strays runs: no claim starts */
    bool stray;
    int64_t stray_next_ms;     /* a failed put-back is tried again then */
    uint32_t stray_tries;
    /* The relays as last seen, under mu; our own first. */
    relay_track relays[RELAYS_MAX];
    size_t nrelays;
    /* tracker */
    pthread_t tracker;
    bool tracker_started;
    conn tcn;
    queue_item tit;
    devstate_peer tpeer;
    poll_entry *polls;
    size_t npolls;
    worker workers[UPLOADER_WORKERS];
};

/* In-memory timers (holds, probes, polls, waits) run on the monotonic
 * clock: a wall clock set back an hour must not stall them for an hour. */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void log_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("chutefs: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- connections ------------------------------------------------------------ */

/* url's canonical origin (relay_url.h): pairing binds only that, so a peer
 * may spell our relay otherwise (case, a default port, a trailing '/').
 * A URL that does not pass the check stands for itself. */
static void relay_origin(const char *url, char *out, size_t cap)
{
    if (relay_url_check(url, out, cap, NULL) != CHUTE_OK) snprintf(out, cap, "%s", url);
}

/* The relay_client for url, made (or remade) on demand. The device's CA
 * file and pin apply to its own relay, however a peer spells it; another
 * relay gets the system CAs. */
static relay_client *conn_for(uploader *up, conn *cn, const char *url)
{
    if (cn->c && strcmp(cn->url, url) == 0) return cn->c;
    relay_client_free(cn->c);
    cn->c = NULL;
    relay_origin(url, cn->origin, sizeof cn->origin);
    bool own = strcmp(cn->origin, up->own_origin) == 0;
    relay_config cfg = {
        .base_url = url,
        .cacert = own && up->cacert[0] ? up->cacert : NULL,
        .pin = own && up->pin[0] ? up->pin : NULL,
        .connect_timeout_ms = 5000,
        .timeout_ms = 30000,   /* for uploads: a stall this long, not the whole PATCH */
    };
    if (relay_client_new(&cfg, &cn->c) != CHUTE_OK) { cn->c = NULL; return NULL; }
    relay_client_set_stop(cn->c, &up->stop_flag);
    snprintf(cn->url, sizeof cn->url, "%s", url);
    return cn->c;
}

static void conn_free(conn *cn)
{
    relay_client_free(cn->c);
    cn->c = NULL;
}

/* ---- relay reachability -------------------------------------------------- */

/* The entry of origin, made on first sight; NULL when every place is
 * taken by a relay that does not answer (one held is never dropped: its
 * peers' items would go at their own pace, and it would not be probed).
 * An untracked relay holds nothing up. Caller holds mu. */
static relay_track *track_for(uploader *up, const char *origin, const char *url)
{
    for (size_t i = 0; i < up->nrelays; i++)
        if (strcmp(up->relays[i].origin, origin) == 0) return &up->relays[i];
    size_t at = up->nrelays;
    if (at < RELAYS_MAX) {
        up->nrelays++;
    } else {   /* full: one that answers gives its place (ours keeps slot 0) */
        for (at = 1; at < RELAYS_MAX && up->relays[at].seen == RELAY_UNREACHABLE; at++) {}
        if (at == RELAYS_MAX) return NULL;
    }
    relay_track *r = &up->relays[at];
    memset(r, 0, sizeof *r);
    snprintf(r->origin, sizeof r->origin, "%s", origin);
    snprintf(r->url, sizeof r->url, "%s", url);
    return r;
}

/* Forget the entry of origin (not our own, slot 0). Caller holds mu. */
static void untrack(uploader *up, const char *origin)
{
    for (size_t i = 1; i < up->nrelays; i++)
        if (strcmp(up->relays[i].origin, origin) == 0) {
            up->relays[i] = up->relays[--up->nrelays];
            return;
        }
}

/* Names of the peers whose inbox is on one of the given relays. */
typedef struct {
    const char (*origins)[RELAY_URL_MAX];
    size_t norigins;
    char (*names)[PEERNAME_MAX + 1];
    size_t n, cap;
    bool oom;
} peer_pick;

static void pick_peer(const char *name, const char *relay_url, void *arg)
{
    peer_pick *pk = arg;
    char origin[RELAY_URL_MAX];
    relay_origin(relay_url, origin, sizeof origin);
    bool on = false;
    for (size_t i = 0; i < pk->norigins && !on; i++) on = strcmp(origin, pk->origins[i]) == 0;
    if (!on || pk->oom) return;
    if (pk->n == pk->cap) {
        size_t cap = pk->cap ? pk->cap * 2 : 8;
        void *n = realloc(pk->names, cap * sizeof *pk->names);
        if (!n) { pk->oom = true; return; }
        pk->names = n;
        pk->cap = cap;
    }
    snprintf(pk->names[pk->n++], sizeof *pk->names, "%s", name);
}

/* The peers on the relays in origins; false (none picked) on OOM. */
static bool peers_on(uploader *up, const char (*origins)[RELAY_URL_MAX], size_t norigins,
                     peer_pick *pk)
{
    *pk = (peer_pick){ .origins = origins, .norigins = norigins };
    if (norigins) peers_each_relay(up->fs->peers, pick_peer, pk);
    if (!pk->oom) return true;
    free(pk->names);
    *pk = (peer_pick){0};
    return false;
}

/* A relay answers again after an outage: the items of its peers that
 * waited for it go now, however long their backoff grew meanwhile; those
 * of peers on other relays keep their wait. */
static void release_waiting(uploader *up, const char *origin)
{
    char (*one)[RELAY_URL_MAX] = malloc(sizeof *one);
    peer_pick pk = {0};
    if (one) snprintf(*one, sizeof *one, "%s", origin);
    if (!one || !peers_on(up, (const char (*)[RELAY_URL_MAX])one, 1, &pk)) {
        log_msg("cannot make the items waiting for %s go now", origin);
        free(one);
        return;
    }
    for (size_t at = 0; at < pk.n; at += QUEUE_SKIP_MAX) {
        const char *batch[QUEUE_SKIP_MAX];
        size_t k = pk.n - at < QUEUE_SKIP_MAX ? pk.n - at : QUEUE_SKIP_MAX;
        for (size_t i = 0; i < k; i++) batch[i] = pk.names[at + i];
        if (queue_retry_now_for(up->fs->q, UNREACHABLE, batch, k) != CHUTE_OK)
            log_msg("cannot make the items waiting for %s go now", origin);
    }
    free(pk.names);
    free(one);
    pthread_mutex_lock(&up->mu);
    up->work_gen++;
    pthread_cond_broadcast(&up->work_cv);
    pthread_mutex_unlock(&up->mu);
}

/* Any HTTP answer below 500 means the relay of cn is there; no answer or
 * a 5xx (relay_client maps both to NETWORK) means it is not, for now. The
 * status file's relay line is our own relay's: another's outage shows in
 * its items' errors. */
static void note_relay(uploader *up, const conn *cn, chute_status st)
{
    relay_client *c = cn->c;
    long http = relay_client_http_status(c);
    bool down = st == CHUTE_ERR_NETWORK && (http == 0 || http >= 500);
    relay_seen now = down ? RELAY_UNREACHABLE : RELAY_REACHABLE;
    if (strcmp(cn->origin, up->own_origin) == 0)
        relay_reach_note(&up->fs->reach, !down, relay_client_error(c));
    bool back = false;
    pthread_mutex_lock(&up->mu);
    relay_track *r = track_for(up, cn->origin, cn->url);
    if (!r) {   /* not tracked: its items go at their own backoff */
        pthread_mutex_unlock(&up->mu);
        return;
    }
    if (down) {
        if (r->holds < 32) r->holds++;
        r->hold_until_ms = now_ms() + (int64_t)backoff_delay_ms(r->holds, NET_BASE_MS,
                                                                PROBE_CAP_MS,
                                                                randombytes_random());
    } else {
        r->holds = r->probes = 0;
        r->hold_until_ms = r->probe_next_ms = 0;
    }
    if (r->seen != now) {
        back = now == RELAY_REACHABLE;
        r->seen = now;
        if (down) log_msg("relay %s unreachable: %s", cn->origin, relay_client_error(c));
        else log_msg("relay %s reachable", cn->origin);
    }
    pthread_mutex_unlock(&up->mu);
    if (back) release_waiting(up, cn->origin);
}

/* The peers whose relay is held now (at most QUEUE_SKIP_MAX: any more
 * are tried, each at its own backoff) into pk; none on OOM. */
static void held_peers(uploader *up, peer_pick *pk)
{
    char (*held)[RELAY_URL_MAX] = malloc(RELAYS_MAX * sizeof *held);
    size_t n = 0;
    *pk = (peer_pick){0};
    if (!held) return;
    int64_t now = now_ms();
    pthread_mutex_lock(&up->mu);
    for (size_t i = 0; i < up->nrelays; i++)
        if (up->relays[i].hold_until_ms > now)
            memcpy(held[n++], up->relays[i].origin, sizeof *held);
    pthread_mutex_unlock(&up->mu);
    if (n && peers_on(up, (const char (*)[RELAY_URL_MAX])held, n, pk) && pk->n > QUEUE_SKIP_MAX)
        pk->n = QUEUE_SKIP_MAX;
    free(held);
}

/* ---- one upload ----------------------------------------------------------------- */

typedef enum { WAIT_NETWORK, WAIT_REFUSED, WAIT_LIMIT } wait_kind;

static void wake_tracker(uploader *up)
{
    pthread_mutex_lock(&up->mu);
    up->track_gen++;
    pthread_cond_signal(&up->track_cv);
    pthread_mutex_unlock(&up->mu);
}

/* Put the item back to queued with the reason and the time of the next try. */
static void fail_item(uploader *up, const queue_item *it, wait_kind kind, const char *fmt, ...)
{
    queue *q = up->fs->q;
    char why[QUEUE_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    uint64_t base = kind == WAIT_NETWORK ? NET_BASE_MS : kind == WAIT_LIMIT ? LIMIT_BASE_MS
                                                                            : REFUSED_BASE_MS;
    uint64_t cap = kind == WAIT_NETWORK ? NET_CAP_MS : kind == WAIT_LIMIT ? LIMIT_CAP_MS
                                                                         : REFUSED_CAP_MS;
    uint64_t delay = backoff_delay_ms(it->attempts ? it->attempts : 1, base, cap,
                                      randombytes_random());
    /* next_attempt is in whole seconds: round up, at least one. */
    int64_t next = (int64_t)time(NULL) + (int64_t)((delay + 999) / 1000);
    chute_status st = queue_mark_failed(q, it->id, why, next);
    if (st == CHUTE_OK)
        log_msg("upload %s (%s/%s): %s; next try in %llu s", it->id, it->peer, it->path,
                why, (unsigned long long)((delay + 999) / 1000));
    /* Cancelled meanwhile: the tracker's DELETE may have come before a
     * create whose answer we lost, and found nothing. The copy it may have
     * made is owed a DELETE again (a 404 if there is none). */
    if (st == CHUTE_ERR_NOT_FOUND && queue_relay_cancel_owed(q, it->id) == CHUTE_OK)
        wake_tracker(up);
}

/* An answer none of the cases above expects: a 4xx is a refusal that will
 * not pass soon (MOUNT.md: 15 min → 6 h) — but a 409 (another request of
 * the item still running on the relay, conflicts that outlasted the
 * re-asks) or a 408 passes in a moment; those and anything else (a local
 * error, no HTTP status) are retried as a network error. Its words: the
 * relay's, or this side's status when no request was made. */
static wait_kind other_failure(relay_client *c, chute_status st, const char **why)
{
    long http = relay_client_http_status(c);
    *why = http ? relay_client_error(c) : chute_strstatus(st);
    bool refusal = http >= 400 && http < 500 && http != 408 && http != 409;
    return refusal ? WAIT_REFUSED : WAIT_NETWORK;
}

static const char *no_answer_words(relay_client *c)
{
    return relay_client_http_status(c) ? RELAY_FAILED : UNREACHABLE;
}

static const char *limit_text(relay_client *c)
{
    switch (relay_client_http_status(c)) {
    case 413: return "the relay refuses an item this large";
    case 507: return "no room on the relay (quota or disk full)";
    case 429: return "the relay asks to slow down";
    default:  return relay_client_error(c);
    }
}

static void mark_gone(uploader *up, const char *peer)
{
    pthread_mutex_lock(&up->ds_mu);
    if (up->ds) devstate_mark_peer_gone(up->ds, peer);
    pthread_mutex_unlock(&up->ds_mu);
}

static bool stopping(uploader *up)
{
    pthread_mutex_lock(&up->mu);
    bool s = up->stopping;
    pthread_mutex_unlock(&up->mu);
    return s;
}

/* The user deleted w's item while this worker was sending it: the relay
 * copy goes too. The tracker's DELETE may have come before our create and
 * found nothing, so this one counts; if it does not get through, the row
 * owes it again and the tracker retries it with its backoff. */
static void cancel_own_copy(worker *w, relay_client *c)
{
    chute_status st = relay_item_cancel(c, w->peer.inbox, w->peer.send_token, w->it.id);
    note_relay(w->up, &w->cn, st);
    if (st == CHUTE_OK || st == CHUTE_ERR_NOT_FOUND || st == CHUTE_ERR_EXISTS) return;
    if (queue_relay_cancel_owed(w->up->fs->q, w->it.id) == CHUTE_OK) wake_tracker(w->up);
}

/* it was marked delivered: the outbox lets go of it at the path it has
 * now — a rename of its folder during the round trip moved the row. */
static void let_outbox_go(uploader *up, const queue_item *it)
{
    queue_item *now = malloc(sizeof *now);
    bool fresh = now && queue_get(up->fs->q, it->id, now) == CHUTE_OK;
    outbox_delivered(up->fs, fresh ? now : it);
    free(now);
}

/* The item is already whole on the relay, or delivered: record that. */
static void settle_from_relay(worker *w, const char *state)
{
    queue *q = w->up->fs->q;
    queue_item *it = &w->it;
    if (queue_set_progress(q, it->id, it->blob_size) != CHUTE_OK) return;
    if (queue_mark_uploaded(q, it->id) != CHUTE_OK) return;
    if (strcmp(state, "delivered") == 0 && queue_mark_delivered(q, it->id) == CHUTE_OK)
        let_outbox_go(w->up, it);
    wake_tracker(w->up);
}

/* Where the bytes of an item's age file come from: made from its
 * plaintext as they are sent (age_source), or a finished blob sealed by an
 * earlier version (src NULL). */
typedef struct {
    int fd;
    age_source *src;
    int err;          /* errno of a failed read */
    pagecache_stream read;   /* a finished blob's: it too is read once */
} blob;

static int fill_blob(void *ctx, uint64_t pos, uint8_t *buf, size_t len)
{
    blob *b = ctx;
    if (b->src) {
        if (age_source_read(b->src, pos, buf, len) == CHUTE_OK) return 0;
        b->err = errno;
        return -1;
    }
    while (len > 0) {
        ssize_t got = pread(b->fd, buf, len, (off_t)pos);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) { b->err = got < 0 ? errno : EIO; return -1; }
        buf += got;
        pos += (uint64_t)got;
        len -= (size_t)got;
    }
    pagecache_read_to(&b->read, b->fd, (off_t)pos);
    return 0;
}

/* A PATCH's body, noting its progress as it goes. */
typedef struct {
    blob *b;
    queue *q;
    const char *id;
    int64_t note_at;          /* now_ms() of the next note */
    bool gone;                /* the user deleted the item meanwhile */
} sending;

static int fill_and_note(void *ctx, uint64_t pos, uint8_t *buf, size_t len)
{
    sending *s = ctx;
    int64_t now = now_ms();
    if (now >= s->note_at) {
        s->note_at = now + PROGRESS_NOTE_MS;
        if (queue_set_sent(s->q, s->id, pos) == CHUTE_ERR_NOT_FOUND) {
            s->gone = true;   /* no more of its bytes: the PATCH ends here */
            return -1;
        }
    }
    return fill_blob(s->b, pos, buf, len);
}

/* Open item it's blob; false after it recorded why not (the item cannot
 * go as it is: a visible error and a long wait, never a dropped row). */
static bool blob_open(uploader *up, const queue_item *it, uint64_t offset, blob *b)
{
    queue *q = up->fs->q;
    queue_age *age = malloc(sizeof *age);
    if (!age) {
        fail_item(up, it, WAIT_NETWORK, "out of memory");
        return false;
    }
    chute_status st = queue_get_age(q, it->id, age);
    bool legacy = st == CHUTE_ERR_NOT_FOUND;
    char path[PATH_MAX];
    b->fd = -1;
    b->src = NULL;
    b->err = 0;
    b->read.released = 0;
    if (st != CHUTE_OK && !legacy) {
        fail_item(up, it, WAIT_REFUSED, "the queue entry is damaged: %s", chute_strstatus(st));
    } else if (sealed_path(up->fs, it->id, legacy ? ".age" : ".plain", path, sizeof path)) {
        fail_item(up, it, WAIT_REFUSED, "the sealed file's name is too long");
    } else if ((b->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        int e = errno;
        /* A cancel deletes the sealed file: then there is nothing to say. */
        if (queue_set_progress(q, it->id, offset) != CHUTE_ERR_NOT_FOUND)
            fail_item(up, it, WAIT_REFUSED, "the file's sealed copy %s is %s; delete the "
                      "file from the outbox and send it again", path,
                      e == ENOENT ? "missing" : strerror(e));
    } else {
        struct stat sb;
        uint64_t want = legacy ? it->blob_size : it->size;
        if (fstat(b->fd, &sb) != 0 || (uint64_t)sb.st_size != want) {
            fail_item(up, it, WAIT_REFUSED, "the file's sealed copy %s changed size", path);
        } else if (!legacy) {
            st = age_source_new(&b->src, age->header, age->header_len, age->nonce,
                                age->file_key, b->fd, it->size);
            if (st == CHUTE_OK && age_source_size(b->src) != it->blob_size)
                st = CHUTE_ERR_MALFORMED;
            if (st != CHUTE_OK)
                fail_item(up, it, WAIT_REFUSED, "cannot encrypt the sealed copy: %s",
                          chute_strstatus(st));
        }
    }
    queue_age_wipe(age);
    free(age);
    if (b->fd >= 0 && (legacy || b->src)) return true;
    age_source_free(b->src);
    b->src = NULL;
    if (b->fd >= 0) close(b->fd);
    b->fd = -1;
    return false;
}

static void blob_close(blob *b)
{
    age_source_free(b->src);   /* wipes the payload key */
    if (b->fd >= 0) close(b->fd);
}

/* Send the bytes of b from *offset to end, advancing *offset; true when
 * they are all on the relay, false after it recorded why not (or on a
 * stop, or a cancel by the user). */
static bool send_range(worker *w, relay_client *c, blob *bp, uint64_t *offset_io,
                       uint64_t end)
{
    uploader *up = w->up;
    queue *q = up->fs->q;
    queue_item *it = &w->it;
    devstate_peer *p = &w->peer;
    blob b = *bp;
    uint64_t offset = *offset_io;
    int conflicts = 0;
    bool whole = false;
    while (!whole) {
        if (offset >= end) { whole = true; break; }
        if (stopping(up)) break;   /* left uploading: resumed at the next start */
        uint64_t len = end - offset;
        if (!w->patch_bytes) w->patch_bytes = CHUNK_BYTES;
        if (len > w->patch_bytes) len = w->patch_bytes;
        uint64_t got = offset;
        sending snd = {.b = &b, .q = q, .id = it->id, .note_at = now_ms() + PROGRESS_NOTE_MS};
        chute_status st = relay_item_append_source(c, p->inbox, p->send_token, it->id,
                                                   offset, len, fill_and_note, &snd, &got);
        if (snd.gone) {   /* deleted while sent: the relay copy goes too */
            cancel_own_copy(w, c);
            break;
        }
        if (st == CHUTE_ERR_IO && b.err) {   /* our side: the sealed copy would not read */
            fail_item(up, it, WAIT_REFUSED, "cannot read the file's sealed copy: %s",
                      strerror(b.err));
            break;
        }
        if (st != CHUTE_OK && stopping(up)) break;   /* cut short by the stop */
        note_relay(up, &w->cn, st);
        if (st == CHUTE_OK) {
            offset = got;
            if (queue_set_progress(q, it->id, offset) == CHUTE_ERR_NOT_FOUND) {
                /* The user deleted it meanwhile: the relay copy goes too. */
                cancel_own_copy(w, c);
                break;
            }
            continue;
        }
        if (st == CHUTE_ERR_LIMIT && relay_client_http_status(c) == 413 &&
            len > MIN_CHUNK_BYTES) {
            /* The relay takes any PATCH within the item: this is a proxy's
             * body limit. Smaller requests, same bytes at the same offsets. */
            w->patch_bytes = len / 2 < MIN_CHUNK_BYTES ? MIN_CHUNK_BYTES : len / 2;
            log_msg("the relay (or a proxy before it) refuses %llu-byte requests; "
                    "sending %llu bytes at a time", (unsigned long long)len,
                    (unsigned long long)w->patch_bytes);
            continue;
        }
        if (st == CHUTE_ERR_EXISTS && ++conflicts <= MAX_CONFLICTS) {
            /* Offset mismatch (a lost answer, another attempt): ask. */
            uint64_t o = 0, n = 0;
            chute_status hs = relay_item_offset(c, p->inbox, p->send_token, it->id, &o, &n);
            note_relay(up, &w->cn, hs);
            if (hs == CHUTE_OK) { offset = o; continue; }
            st = hs;
        }
        if (st == CHUTE_ERR_NETWORK)
            fail_item(up, it, WAIT_NETWORK, "%s%s", no_answer_words(c), relay_client_error(c));
        else if (st == CHUTE_ERR_LIMIT)
            fail_item(up, it, WAIT_LIMIT, "%s", limit_text(c));
        else if (st == CHUTE_ERR_NOT_FOUND)
            fail_item(up, it, WAIT_REFUSED, "peer %s no longer accepts files (unpaired?)",
                      it->peer);
        else if (st == CHUTE_ERR_PROTOCOL)   /* an offset that would not move us on */
            fail_item(up, it, WAIT_NETWORK, "the relay's answer is wrong: %s",
                      relay_client_error(c));
        else {
            const char *why;
            wait_kind k = other_failure(c, st, &why);
            fail_item(up, it, k, "relay refused the upload: %s", why);
        }
        break;
    }
    *bp = b;
    *offset_io = offset;
    return whole;
}

/* Stream the blob from offset; returns true when the item is whole on the
 * relay (the caller marks it), false after it recorded why not. */
static bool append_blob(worker *w, relay_client *c, uint64_t offset)
{
    blob b;
    if (!blob_open(w->up, &w->it, offset, &b)) return false;
    bool whole = send_range(w, c, &b, &offset, w->it.blob_size);
    blob_close(&b);
    return whole;
}

/* ---- a file sent while written (growing.h) ------------------------------ */

/* Ciphertext bytes of a file of `size` plaintext bytes so far that are
 * final already: header, nonce and every chunk it has grown past (the
 * last chunk's flag waits for the end); *chunks gets how many chunks. */
static uint64_t growing_ready(size_t header_len, uint64_t size, uint64_t *chunks)
{
    *chunks = size ? (size - 1) / AGE_CHUNK_BYTES : 0;
    return header_len + AGE_NONCE_BYTES + *chunks * AGE_CHUNK_CT_BYTES;
}

/* The writer let go of a growing row before we found it: sealed (then it
 * goes on as any item: true, w->it reloaded) or a leftover (cancelled). */
static bool growing_gone(worker *w)
{
    queue *q = w->up->fs->q;
    if (queue_get(q, w->it.id, &w->it) != CHUTE_OK) return false;
    if (!w->it.growing) return w->it.state == QUEUE_UPLOADING;
    (void)queue_cancel(q, w->it.id);
    return false;
}

/* Send what the file has of its blob so far, as it grows, until its last
 * close. True when it was sealed meanwhile (w->it reloaded: the caller
 * goes on as for any item, from the relay's offset); false once it was
 * cancelled, failed (recorded), or the uploader stops. */
static bool send_growing(worker *w, relay_client *c)
{
    uploader *up = w->up;
    queue *q = up->fs->q;
    queue_item *it = &w->it;
    devstate_peer *p = &w->peer;
    growing *g = growing_find(up->fs->growing, it->id);
    if (!g) return growing_gone(w);
    relay_item_state rs;
    memset(&rs, 0, sizeof rs);
    chute_status st = relay_item_create_deferred(c, p->inbox, p->send_token, it->id, &rs);
    note_relay(up, &w->cn, st);
    queue_age *age = st ? NULL : malloc(sizeof *age);
    if (st == CHUTE_ERR_NETWORK) {
        fail_item(up, it, WAIT_NETWORK, "%s%s", no_answer_words(c), relay_client_error(c));
    } else if (st == CHUTE_ERR_NOT_FOUND) {
        mark_gone(up, it->peer);
        fail_item(up, it, WAIT_REFUSED, "peer %s no longer accepts files (unpaired?)", it->peer);
    } else if (st || !age || queue_get_age(q, it->id, age) != CHUTE_OK) {
        /* Not early, then (an older relay, a quota): it goes at its close. */
        log_msg("item %s will go when its file is closed: %s", it->id,
                st ? relay_client_error(c) : "its queue entry is unreadable");
        (void)queue_cancel(q, it->id);
        wake_tracker(up);
        st = CHUTE_ERR_REFUSED;
    }
    bool sealed = false;
    uint64_t offset = rs.offset, size = 0, chunks = 0;
    /* Cancelled while the create was on its way: the tracker's DELETE may
     * have come first and found nothing, so the copy just made goes here. */
    if (!st && queue_set_progress(q, it->id, offset) == CHUTE_ERR_NOT_FOUND) {
        cancel_own_copy(w, c);
        st = CHUTE_ERR_REFUSED;
    }
    while (!st && !stopping(up)) {
        /* Wait for a few MiB more, or a second, or the end. */
        uint64_t ready = growing_ready(age->header_len, size, &chunks);
        uint64_t want = ready >= offset + GROW_PATCH_MIN ? 0 : size + GROW_PATCH_MIN;
        growing_end end = growing_wait(g, want, GROW_WAIT_MS, &size);
        if (end != GROWING_OPEN) { sealed = end == GROWING_SEALED; break; }
        ready = growing_ready(age->header_len, size, &chunks);
        if (ready <= offset) continue;
        /* One byte past the chunks sent: they are sealed as not last. */
        blob b = {.fd = growing_fd(g), .src = NULL, .err = 0};
        if (age_source_new(&b.src, age->header, age->header_len, age->nonce, age->file_key,
                           b.fd, chunks * AGE_CHUNK_BYTES + 1) != CHUTE_OK) {
            fail_item(up, it, WAIT_NETWORK, "out of memory");
            break;
        }
        bool sent = send_range(w, c, &b, &offset, ready);
        age_source_free(b.src);
        if (!sent) break;
    }
    if (age) { queue_age_wipe(age); free(age); }
    growing_release(up->fs->growing, g);
    return sealed && growing_gone(w);
}

/* The item's plaintext in sealed/ went (deleted by hand): nothing to send. */
#define MISSING_COPY "the file's sealed copy is missing; delete the file from the outbox " \
                     "and send it again"

/* Firefox makes an empty "movie.mp4" to hold the name, downloads into
 * "movie.mp4.part" beside it and renames that over it at the end. Sent at
 * once, the empty one would arrive as "movie.mp4" and the film as
 * "movie (2).mp4". An empty file with a download beside it (.part,
 * .crdownload) waits for the rename, which replaces it, or for the
 * download to go; the wait is checked every few seconds. */
#define PLACEHOLDER_CHECK_S 3

static bool download_beside(uploader *up, const queue_item *it, char *name, size_t cap)
{
    static const char *const exts[] = {".part", ".crdownload"};
    char rel[META_PATH_MAX + 16], path[PATH_MAX];
    struct stat sb;
    for (size_t i = 0; i < sizeof exts / sizeof *exts; i++) {
        int n = snprintf(rel, sizeof rel, "%s%s", it->path, exts[i]);
        if (n < 0 || (size_t)n >= sizeof rel ||
            staging_path(up->fs, it->peer, rel, path, sizeof path) != 0 || lstat(path, &sb) != 0)
            continue;
        const char *base = strrchr(rel, '/');
        base = base ? base + 1 : rel;
        size_t l = strlen(base) < cap ? strlen(base) : cap - 1;
        memcpy(name, base, l);
        name[l] = '\0';
        return true;
    }
    return false;
}

/* A claim, or a change of a claimed item's id, runs between these two:
 * never while put_back_strays, which goes by the ids the workers hold. */
static void claim_begin(uploader *up)
{
    pthread_mutex_lock(&up->mu);
    while (up->putting_back && !up->stopping) pthread_cond_wait(&up->work_cv, &up->mu);
    up->claiming++;
    pthread_mutex_unlock(&up->mu);
}

/* holds: w->it is w's now, under its id of now. */
static void claim_end(worker *w, bool holds)
{
    pthread_mutex_lock(&w->up->mu);
    w->up->claiming--;
    if (holds) memcpy(w->held, w->it.id, sizeof w->held);
    pthread_mutex_unlock(&w->up->mu);
}

static void upload_item(worker *w)
{
    uploader *up = w->up;
    queue *q = up->fs->q;
    queue_item *it = &w->it;
    devstate_peer *p = &w->peer;
    chute_status st = peers_get(up->fs->peers, it->peer, p);
    if (st == CHUTE_ERR_NOT_FOUND) {
        fail_item(up, it, WAIT_REFUSED, "peer %s is not paired any more", it->peer);
        return;
    }
    if (st != CHUTE_OK) {
        fail_item(up, it, WAIT_NETWORK, "cannot read peer %s: %s", it->peer,
                  chute_strstatus(st));
        return;
    }
    char download[NAME_MAX + 1];
    if (it->size == 0 && !it->growing && download_beside(up, it, download, sizeof download)) {
        char why[QUEUE_ERR_MAX];
        snprintf(why, sizeof why, "waiting for %.160s, a download beside it, to finish",
                 download);
        (void)queue_put_back(q, it->id, why, (int64_t)time(NULL) + PLACEHOLDER_CHECK_S);
        devstate_peer_wipe(p);
        return;
    }
    relay_client *c = conn_for(up, &w->cn, p->relay_url);
    if (!c) {
        fail_item(up, it, WAIT_REFUSED, "cannot use relay %s", p->relay_url);
        devstate_peer_wipe(p);
        return;
    }
    if (it->growing && !send_growing(w, c)) goto out;
    /* It may take a new id (paired again since): held as a claim is. */
    claim_begin(up);
    st = seal_meta_for_pairing(up->fs, it, p);
    claim_end(w, true);
    if (st == CHUTE_ERR_NOT_FOUND) goto out;   /* cancelled meanwhile */
    if (st == CHUTE_ERR_REFUSED || st == CHUTE_ERR_UNSUPPORTED) {
        fail_item(up, it, WAIT_REFUSED, st == CHUTE_ERR_REFUSED
                  ? "sealed for another device once paired as %s; copy it again to send "
                    "it to this one"
                  : "queued by an earlier version for %s before it was paired again; "
                    "copy it again to send it", it->peer);
        goto out;
    }
    if (st == CHUTE_ERR_TRUNCATED) {
        fail_item(up, it, WAIT_REFUSED, MISSING_COPY);
        goto out;
    }
    if (st) {
        fail_item(up, it, WAIT_NETWORK, "cannot seal its name for %s: %s", it->peer,
                  chute_strstatus(st));
        goto out;
    }
    char meta[sodium_base64_ENCODED_LEN(META_SEALED_MAX, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(meta, sizeof meta, it->meta, it->meta_len, sodium_base64_VARIANT_ORIGINAL);
    relay_item_state rs;
    memset(&rs, 0, sizeof rs);
    st = relay_item_create(c, p->inbox, p->send_token, it->id, it->blob_size, meta, &rs);
    note_relay(up, &w->cn, st);
    switch (st) {
    case CHUTE_OK:
        break;
    case CHUTE_ERR_NOT_FOUND:
        /* A revoked send token looks like a missing inbox (PROTOCOL §7.9):
         * the peer unpaired us. Keep the item; the user decides. */
        mark_gone(up, it->peer);
        fail_item(up, it, WAIT_REFUSED, "peer %s no longer accepts files (unpaired?)", it->peer);
        goto out;
    case CHUTE_ERR_EXISTS: {
        /* Our id, refused: maybe already complete or delivered (a lost
         * answer before a kill), else a tombstone we cannot reuse. */
        relay_item_state now;
        chute_status ss = relay_item_status(c, p->inbox, p->send_token, it->id, &now);
        note_relay(up, &w->cn, ss);
        if (ss == CHUTE_OK && (strcmp(now.state, "pending") == 0 ||
                               strcmp(now.state, "delivered") == 0)) {
            settle_from_relay(w, now.state);
            goto out;
        }
        if (ss == CHUTE_OK && strcmp(now.state, "uploading") == 0) {
            /* Ours and uploading: a PATCH cut short a moment ago still
             * holds it on the relay (a declare waits for it). Soon. */
            fail_item(up, it, WAIT_NETWORK, "the relay is still finishing an earlier "
                      "request for this item");
            goto out;
        }
        if (ss == CHUTE_ERR_NOT_FOUND) {
            /* Our id, held on the relay by another sender: an earlier
             * pairing's (a file sent while written, then paired again
             * before its close). This pairing takes a new id. */
            claim_begin(up);
            chute_status rs2 = seal_renew_id(up->fs, it, p);
            claim_end(w, true);
            if (rs2 == CHUTE_OK)
                fail_item(up, it, WAIT_NETWORK, "sent again under a new id: the relay keeps "
                          "the old one for an earlier pairing");
            else if (rs2 == CHUTE_ERR_TRUNCATED)
                fail_item(up, it, WAIT_REFUSED, MISSING_COPY);
            else if (rs2 != CHUTE_ERR_NOT_FOUND)
                fail_item(up, it, WAIT_NETWORK, "cannot give it a new id: %s",
                          chute_strstatus(rs2));
            goto out;
        }
        fail_item(up, it, WAIT_REFUSED, "the relay refuses this item (%s%s%s)",
                  relay_client_error(c), ss == CHUTE_OK ? ", state " : "",
                  ss == CHUTE_OK ? now.state : "");
        goto out;
    }
    case CHUTE_ERR_LIMIT:
        fail_item(up, it, WAIT_LIMIT, "%s", limit_text(c));
        goto out;
    case CHUTE_ERR_NETWORK:
        fail_item(up, it, WAIT_NETWORK, "%s%s", no_answer_words(c), relay_client_error(c));
        goto out;
    default: {
        const char *why;
        wait_kind k = other_failure(c, st, &why);
        fail_item(up, it, k, "relay refused the item: %s", why);
        goto out;
    }
    }
    /* Show where a resumed upload starts; stop if the user deleted it. */
    if (queue_set_progress(q, it->id, rs.offset) == CHUTE_ERR_NOT_FOUND) {
        cancel_own_copy(w, c);
        goto out;
    }
    if (append_blob(w, c, rs.offset) && queue_mark_uploaded(q, it->id) == CHUTE_OK)
        wake_tracker(up);
out:
    devstate_peer_wipe(p);
}

/* Wait until the tracker has booted (or a stop); false on stop. */
static bool wait_ready(uploader *up)
{
    pthread_mutex_lock(&up->mu);
    while (!up->ready && !up->stopping)
        pthread_cond_wait(&up->work_cv, &up->mu);
    bool go = !up->stopping;
    pthread_mutex_unlock(&up->mu);
    return go;
}

/* For pthread_cond_timedwait on work_cv and track_cv (CLOCK_MONOTONIC). */
static void deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) { ts->tv_sec++; ts->tv_nsec -= 1000000000; }
}

/* Sleep ms, or until a wake (work_gen moved past gen) or a stop. */
static void worker_nap(uploader *up, uint64_t gen, int64_t ms)
{
    struct timespec ts;
    deadline_in(&ts, ms);
    pthread_mutex_lock(&up->mu);
    while (!up->stopping && gen == up->work_gen)
        if (pthread_cond_timedwait(&up->work_cv, &up->mu, &ts) != 0) break;
    pthread_mutex_unlock(&up->mu);
}

/* Done with w's item. Unless stopping (then it stays uploading on
 * purpose, to resume at the next start), an item still uploading now is
 * one whose state write failed: the tracker puts it back. */
static void let_go(worker *w)
{
    uploader *up = w->up;
    bool stray = false;
    if (!stopping(up)) {
        queue_state was = QUEUE_UPLOADING;
        chute_status st = queue_get(up->fs->q, w->it.id, &w->it);
        if (st == CHUTE_OK) was = w->it.state;
        stray = st != CHUTE_ERR_NOT_FOUND && was == QUEUE_UPLOADING;
    }
    pthread_mutex_lock(&up->mu);
    w->held[0] = '\0';
    if (stray) {
        up->stray = true;
        up->track_gen++;
        pthread_cond_signal(&up->track_cv);
    }
    pthread_mutex_unlock(&up->mu);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    uploader *up = w->up;
    if (!wait_ready(up)) return NULL;
    for (;;) {
        pthread_mutex_lock(&up->mu);
        uint64_t gen = up->work_gen;
        bool stop = up->stopping;
        pthread_mutex_unlock(&up->mu);
        if (stop) break;
        /* Items of peers whose relay does not answer wait for it (or the
         * end of its hold); the others go. */
        peer_pick held;
        held_peers(up, &held);
        const char *skip[QUEUE_SKIP_MAX];
        for (size_t i = 0; i < held.n; i++) skip[i] = held.names[i];
        /* Files still being written may take all workers but one: a
         * long recording must not hold closed files up. */
        bool growing_ok = atomic_fetch_add(&up->growing_sends, 1) < UPLOADER_WORKERS - 1;
        claim_begin(up);
        chute_status st = queue_claim_next_except(up->fs->q, (int64_t)time(NULL), !growing_ok,
                                                  skip, held.n, &w->it);
        free(held.names);
        claim_end(w, st == CHUTE_OK);
        bool grows = st == CHUTE_OK && w->it.growing;
        if (!grows) atomic_fetch_sub(&up->growing_sends, 1);   /* the place was not taken */
        if (st == CHUTE_OK) {
            upload_item(w);
            if (grows) atomic_fetch_sub(&up->growing_sends, 1);
            let_go(w);
            continue;
        }
        if (st != CHUTE_ERR_NOT_FOUND)
            log_msg("queue: %s", chute_strstatus(st));
        /* Nothing due: sleep until a seal wakes us or the retry tick. */
        worker_nap(up, gen, TICK_MS);
    }
    return NULL;
}

/* ---- tracker: cancels, deliveries, probe, sweep --------------------------------- */

/* Each owed DELETE backs off on its own row (queue_relay_cancel_failed):
 * one whose relay is gone must not hold up the others. */
static void do_cancels(uploader *up)
{
    for (int i = 0; i < CANCELS_PER_ROUND; i++) {
        if (queue_next_relay_cancel(up->fs->q, (int64_t)time(NULL), &up->tit) != CHUTE_OK)
            break;
        queue_item *it = &up->tit;
        chute_status st = peers_get(up->fs->peers, it->peer, &up->tpeer);
        if (st == CHUTE_ERR_NOT_FOUND) {
            /* Forgotten peer: no token to cancel with, and its relay
             * grant is gone with it. */
            queue_relay_cancel_done(up->fs->q, it->id, it->attempts);
            continue;
        }
        relay_client *c = st == CHUTE_OK ? conn_for(up, &up->tcn, up->tpeer.relay_url) : NULL;
        if (c) {
            st = relay_item_cancel(c, up->tpeer.inbox, up->tpeer.send_token, it->id);
            note_relay(up, &up->tcn, st);
        }
        devstate_peer_wipe(&up->tpeer);
        /* 404: never created, or the token is revoked; 409: delivered or
         * expired already. Either way nothing is left for us to delete. */
        if (c && (st == CHUTE_OK || st == CHUTE_ERR_NOT_FOUND || st == CHUTE_ERR_EXISTS)) {
            queue_relay_cancel_done(up->fs->q, it->id, it->attempts);
            continue;
        }
        uint64_t delay = backoff_delay_ms((uint32_t)it->attempts + 1, NET_BASE_MS, NET_CAP_MS,
                                          randombytes_random());
        if (queue_relay_cancel_failed(up->fs->q, it->id,
                                      (int64_t)time(NULL) + (int64_t)((delay + 999) / 1000)) !=
            CHUTE_OK)
            break;   /* not recorded: it would come first again at once */
        /* No answer at all: the others would wait on the same relay too. */
        if (c && st == CHUTE_ERR_NETWORK && relay_client_http_status(c) == 0) break;
    }
}

typedef struct {
    char (*ids)[QUEUE_ID_LEN + 1];
    size_t n, cap;
    bool oom;
} id_list;

static int collect_uploaded(const queue_item *it, void *arg)
{
    id_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        void *n = realloc(l->ids, cap * sizeof *l->ids);
        if (!n) { l->oom = true; return 1; }
        l->ids = n;
        l->cap = cap;
    }
    memcpy(l->ids[l->n++], it->id, QUEUE_ID_LEN + 1);
    return 0;
}

static int cmp_poll(const void *a, const void *b)
{
    return strcmp(((const poll_entry *)a)->id, ((const poll_entry *)b)->id);
}

/* The poll table follows the set of items on the relay: new ones get a
 * first check soon, gone ones (delivered, cancelled) drop out. */
static void refresh_polls(uploader *up, int64_t now)
{
    id_list l = {0};
    if (queue_each_uploaded(up->fs->q, collect_uploaded, &l) != CHUTE_OK || l.oom) {
        free(l.ids);
        return;
    }
    poll_entry *next = l.n ? calloc(l.n, sizeof *next) : NULL;
    if (l.n && !next) { free(l.ids); return; }
    for (size_t i = 0; i < l.n; i++) {
        poll_entry key;
        memcpy(key.id, l.ids[i], sizeof key.id);
        poll_entry *old = up->npolls ? bsearch(&key, up->polls, up->npolls, sizeof *up->polls,
                                               cmp_poll) : NULL;
        if (old) next[i] = *old;
        else next[i] = (poll_entry){ .next_ms = now + POLL_FIRST_MS, .interval_ms = POLL_MIN_MS };
        memcpy(next[i].id, l.ids[i], sizeof next[i].id);
    }
    free(l.ids);
    if (l.n) qsort(next, l.n, sizeof *next, cmp_poll);
    free(up->polls);
    up->polls = next;
    up->npolls = l.n;
}

static void check_delivery(uploader *up, poll_entry *pe, int64_t now)
{
    queue *q = up->fs->q;
    queue_item *it = &up->tit;
    pe->next_ms = now + pe->interval_ms;
    pe->interval_ms = pe->interval_ms * 2 > POLL_MAX_MS ? POLL_MAX_MS : pe->interval_ms * 2;
    if (queue_get(q, pe->id, it) != CHUTE_OK || it->state != QUEUE_UPLOADED) return;
    chute_status st = peers_get(up->fs->peers, it->peer, &up->tpeer);
    if (st == CHUTE_ERR_NOT_FOUND) {
        queue_set_error(q, it->id, "peer is not paired any more");
        pe->interval_ms = POLL_MAX_MS;
        return;
    }
    if (st != CHUTE_OK) return;
    relay_client *c = conn_for(up, &up->tcn, up->tpeer.relay_url);
    relay_item_state rs;
    if (c) {
        st = relay_item_status(c, up->tpeer.inbox, up->tpeer.send_token, it->id, &rs);
        note_relay(up, &up->tcn, st);
    }
    /* Not found under the send token of now, and sealed for an earlier
     * pairing with the same peer: the copy on the relay is that
     * pairing's, which the peer will never fetch. It goes again. */
    bool earlier_pairing = c && st == CHUTE_ERR_NOT_FOUND &&
                           !seal_meta_is_current(it, &up->tpeer);
    devstate_peer_wipe(&up->tpeer);
    if (!c) return;
    if (earlier_pairing) {
        if (queue_send_again(q, it->id, "sent again: the peer was paired again since it "
                                        "was uploaded") == CHUTE_OK)
            uploader_wake(up);
        return;
    }
    if (st == CHUTE_OK && strcmp(rs.state, "delivered") == 0) {
        if (queue_mark_delivered(q, it->id) == CHUTE_OK)
            let_outbox_go(up, it);
    } else if (st == CHUTE_OK && strcmp(rs.state, "expired") == 0) {
        queue_set_error(q, it->id, "expired on the relay before the peer fetched it");
        pe->interval_ms = POLL_MAX_MS;
    } else if (st == CHUTE_OK && strcmp(rs.state, "cancelled") == 0) {
        queue_set_error(q, it->id, "cancelled on the relay");
        pe->interval_ms = POLL_MAX_MS;
    } else if (st == CHUTE_OK && strcmp(rs.state, "rejected") == 0) {
        /* The peer could not verify what it got (tampered on the way?):
         * its status says why. Kept here, so nothing is lost. */
        char why[QUEUE_ERR_MAX];
        snprintf(why, sizeof why, "%s refused it: it did not verify there; "
                                  "delete it here and copy it again", it->peer);
        queue_set_error(q, it->id, why);
        pe->interval_ms = POLL_MAX_MS;
    } else if (st == CHUTE_ERR_NOT_FOUND) {
        char why[QUEUE_ERR_MAX];
        snprintf(why, sizeof why, "peer %s no longer accepts files (unpaired?)", it->peer);
        queue_set_error(q, it->id, why);
        pe->interval_ms = POLL_MAX_MS;
    }
}

static void do_deliveries(uploader *up, int64_t now)
{
    refresh_polls(up, now);
    int asked = 0;
    for (size_t i = 0; i < up->npolls && asked < POLLS_PER_ROUND; i++) {
        if (up->polls[i].next_ms > now) continue;
        if (stopping(up)) return;
        check_delivery(up, &up->polls[i], now);
        asked++;
    }
}

/* While a relay is not known to answer, ask its health now and then so
 * the status file says when ours is back and the items held for any of
 * them go (note_relay); at most RELAYS_MAX asks a round, each relay at
 * its own pace. */
static void do_probe(uploader *up)
{
    for (size_t i = 0; i < RELAYS_MAX && !stopping(up); i++) {
        char (*key)[RELAY_URL_MAX] = malloc(2 * sizeof *key);   /* origin, url */
        if (!key) return;
        pthread_mutex_lock(&up->mu);
        relay_track *r = &up->relays[i];
        bool due = i < up->nrelays && r->seen != RELAY_REACHABLE && now_ms() >= r->probe_next_ms;
        if (due) {
            /* Set before asking: a relay that cannot be asked waits too. */
            if (r->probes < 32) r->probes++;
            r->probe_next_ms = now_ms() + (int64_t)backoff_delay_ms(r->probes, NET_BASE_MS,
                                                                    PROBE_CAP_MS,
                                                                    randombytes_random());
            memcpy(key[0], r->origin, sizeof key[0]);
            memcpy(key[1], r->url, sizeof key[1]);
        }
        pthread_mutex_unlock(&up->mu);
        /* Another relay no peer is on any more (unpaired, moved) is
         * forgotten, not asked after for the rest of the mount. */
        peer_pick pk = {0};
        bool unused = due && i > 0 && peers_on(up, (const char (*)[RELAY_URL_MAX])key, 1, &pk) &&
                      pk.n == 0;
        free(pk.names);
        if (unused) {
            pthread_mutex_lock(&up->mu);
            untrack(up, key[0]);
            pthread_mutex_unlock(&up->mu);
        }
        relay_client *c = due && !unused ? conn_for(up, &up->tcn, key[1]) : NULL;
        if (c) note_relay(up, &up->tcn, relay_health(c));
        free(key);
    }
}

/* Items left uploading by a state write that failed go back to queued
 * (else they would wait for the next mount). With no claim under way, and
 * none starting until it is done (putting_back): a worker's item must
 * never be put back under it. The database write is made without mu, which
 * a close(2) (uploader_wake) and every worker need meanwhile. */
static void put_back_strays(uploader *up)
{
    pthread_mutex_lock(&up->mu);
    if (!up->stray || up->claiming || now_ms() < up->stray_next_ms) {
        pthread_mutex_unlock(&up->mu);
        return;
    }
    up->putting_back = true;
    char held[UPLOADER_WORKERS][QUEUE_ID_LEN + 1];
    const char *ids[UPLOADER_WORKERS];
    size_t n = 0;
    for (int i = 0; i < UPLOADER_WORKERS; i++)
        if (up->workers[i].held[0]) {
            memcpy(held[n], up->workers[i].held, sizeof held[n]);
            ids[n] = held[n];
            n++;
        }
    pthread_mutex_unlock(&up->mu);
    /* The held set can only shrink meanwhile: an item let go of is no
     * longer uploading, or is a stray again (let_go), for the next round. */
    chute_status st = queue_requeue_unheld(up->fs->q, ids, n);
    pthread_mutex_lock(&up->mu);
    up->putting_back = false;
    if (st == CHUTE_OK) {
        up->stray = false;
        up->stray_tries = 0;
        up->work_gen++;
    } else {   /* the disk is still full or busy: not every round */
        if (up->stray_tries < 32) up->stray_tries++;
        up->stray_next_ms = now_ms() + (int64_t)backoff_delay_ms(up->stray_tries, NET_BASE_MS,
                                                                 PROBE_CAP_MS,
                                                                 randombytes_random());
        log_msg("cannot put interrupted uploads back: %s; trying again", chute_strstatus(st));
    }
    pthread_cond_broadcast(&up->work_cv);   /* claims waiting for it, and work */
    pthread_mutex_unlock(&up->mu);
}

/* A crash between linking an item's plaintext into sealed/ and inserting
 * its row leaves a .plain no row names (MOUNT.md); a crash mid-copy-on-
 * write leaves a cow-*.tmp, and an earlier version's mid-seal a .age.tmp.
 * Holding seal_mu per file means no seal is between those two steps while
 * we look. A row whose sealed file is missing is the uploader's to report. */
static void sweep_orphans(uploader *up)
{
    chutefs *fs = up->fs;
    DIR *d = opendir(fs->sealed);
    if (!d) return;
    struct dirent *e;
    unsigned removed = 0;
    while ((e = readdir(d)) != NULL && !stopping(up)) {
        const char *name = e->d_name;
        size_t n = strlen(name);
        bool tmp = n > 4 && strcmp(name + n - 4, ".tmp") == 0;
        size_t ext = !tmp && n > 4 && strcmp(name + n - 4, ".age") == 0 ? 4
                   : !tmp && n > 6 && strcmp(name + n - 6, ".plain") == 0 ? 6 : 0;
        if (!tmp && !ext) continue;
        char id[QUEUE_ID_LEN + 1];
        size_t idlen = n - ext;
        if (!tmp && (idlen == 0 || idlen > QUEUE_ID_LEN)) continue;
        if (!tmp) {
            memcpy(id, name, idlen);
            id[idlen] = '\0';
        }
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", fs->sealed, name) >= (int)sizeof path)
            continue;
        pthread_mutex_lock(&fs->seal_mu);
        /* A cow-*.tmp of a copy-on-write running now is held open by it:
         * unlinking it would lose the copy. */
        if (tmp && strncmp(name, "cow-", 4) == 0) ofiles_content_excl(fs->open);
        bool orphan = tmp;
        if (!tmp) {
            chute_status st = queue_get(fs->q, id, &up->tit);
            orphan = st == CHUTE_ERR_NOT_FOUND ||
                     (st == CHUTE_OK && (up->tit.state == QUEUE_DELIVERED ||
                                         up->tit.state == QUEUE_CANCELLED));
        }
        if (orphan && unlink(path) == 0) removed++;
        if (tmp && strncmp(name, "cow-", 4) == 0) ofiles_content_unlock(fs->open);
        pthread_mutex_unlock(&fs->seal_mu);
    }
    closedir(d);
    if (removed) log_msg("removed %u orphaned sealed file(s)", removed);
}

static bool boot(uploader *up)
{
    devstate *ds = NULL;
    chute_status st = devstate_open(up->fs->home, 0, &ds);
    devstate_device *me = calloc(1, sizeof *me);
    if (!st && !me) st = CHUTE_ERR_NOMEM;
    if (!st) st = devstate_get_device(ds, me);
    if (!st) {
        snprintf(up->own_relay, sizeof up->own_relay, "%s", me->relay_url);
        relay_origin(up->own_relay, up->own_origin, sizeof up->own_origin);
        pthread_mutex_lock(&up->mu);   /* probed from the start, until it answers */
        if (up->own_relay[0]) track_for(up, up->own_origin, up->own_relay);
        pthread_mutex_unlock(&up->mu);
        snprintf(up->cacert, sizeof up->cacert, "%s", me->cacert);
        snprintf(up->pin, sizeof up->pin, "%s", me->pin);
    }
    if (me) { devstate_device_wipe(me); free(me); }
    if (!st) st = queue_requeue_interrupted(up->fs->q);
    /* A new mount tries at once what waited for a relay, whichever relay:
     * the backoff it grew belongs to the last run. */
    if (!st && queue_retry_now(up->fs->q, UNREACHABLE) != CHUTE_OK)
        log_msg("cannot make the waiting items go now");
    if (st) {
        log_msg("uploader cannot start: %s; trying again", chute_strstatus(st));
        devstate_close(ds);
        return false;
    }
    pthread_mutex_lock(&up->ds_mu);
    up->ds = ds;
    pthread_mutex_unlock(&up->ds_mu);
    pthread_mutex_lock(&up->mu);
    up->ready = true;
    pthread_cond_broadcast(&up->work_cv);
    pthread_mutex_unlock(&up->mu);
    return true;
}

/* Sleep ms unless stop comes first; false if stopping. */
static bool tracker_nap(uploader *up, uint64_t ms)
{
    struct timespec ts;
    deadline_in(&ts, (int64_t)ms);
    pthread_mutex_lock(&up->mu);
    while (!up->stopping)
        if (pthread_cond_timedwait(&up->track_cv, &up->mu, &ts) != 0) break;
    bool go = !up->stopping;
    pthread_mutex_unlock(&up->mu);
    return go;
}

static void *tracker_main(void *arg)
{
    uploader *up = arg;
    /* A state DB that is busy or unreadable for a moment must not stop
     * every upload of this mount for good: boot is tried again. */
    for (uint32_t tries = 1; !boot(up); tries++)
        if (!tracker_nap(up, backoff_delay_ms(tries, NET_BASE_MS, PROBE_CAP_MS,
                                              randombytes_random())))
            return NULL;
    int64_t started = now_ms();
    bool swept = false;
        for (;;) {
        pthread_mutex_lock(&up->mu);
        uint64_t gen = up->track_gen;
        bool stop = up->stopping;
        pthread_mutex_unlock(&up->mu);
        if (stop) break;
        int64_t now = now_ms();
        do_probe(up);
        put_back_strays(up);
        do_cancels(up);
        do_deliveries(up, now);
        if (!swept && now - started >= SWEEP_AFTER_MS) {
            sweep_orphans(up);
            swept = true;
        }
        struct timespec ts;
        deadline_in(&ts, TICK_MS / 4);
        pthread_mutex_lock(&up->mu);
        while (!up->stopping && gen == up->track_gen)
            if (pthread_cond_timedwait(&up->track_cv, &up->mu, &ts) != 0) break;
        pthread_mutex_unlock(&up->mu);
    }
    return NULL;
}

/* ---- lifecycle --------------------------------------------------------------------- */

/* work_cv and track_cv, timed on the monotonic clock (deadline_in). */
static bool init_cvs(uploader *up)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) return false;
    bool ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
              pthread_cond_init(&up->work_cv, &ca) == 0;
    if (ok && pthread_cond_init(&up->track_cv, &ca) != 0) {
        pthread_cond_destroy(&up->work_cv);
        ok = false;
    }
    pthread_condattr_destroy(&ca);
    return ok;
}

chute_status uploader_start(chutefs *fs, uploader **out)
{
    if (!fs || !out) return CHUTE_ERR_ARG;
    *out = NULL;
    const char *env = getenv("CHUTE_UPLOADER");
    if (env && strcmp(env, "off") == 0) return CHUTE_OK;
    uploader *up = calloc(1, sizeof *up);
    if (!up) return CHUTE_ERR_NOMEM;
    up->fs = fs;
    pthread_mutex_init(&up->mu, NULL);
    pthread_mutex_init(&up->ds_mu, NULL);
    if (!init_cvs(up)) {
        pthread_mutex_destroy(&up->ds_mu);
        pthread_mutex_destroy(&up->mu);
        free(up);
        return CHUTE_ERR_NOMEM;
    }
    if (pthread_create(&up->tracker, NULL, tracker_main, up) != 0) {
        uploader_stop(up);
        return CHUTE_ERR_NOMEM;
    }
    up->tracker_started = true;
    for (int i = 0; i < UPLOADER_WORKERS; i++) {
        worker *w = &up->workers[i];
        w->up = up;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            uploader_stop(up);
            return CHUTE_ERR_NOMEM;
        }
        w->started = true;
    }
    *out = up;
    return CHUTE_OK;
}

void uploader_wake(uploader *up)
{
    if (!up) return;
    pthread_mutex_lock(&up->mu);
    up->work_gen++;
    up->track_gen++;
    pthread_cond_broadcast(&up->work_cv);
    pthread_cond_signal(&up->track_cv);
    pthread_mutex_unlock(&up->mu);
}

void uploader_stop(uploader *up)
{
    if (!up) return;
    pthread_mutex_lock(&up->mu);
    up->stopping = true;
    atomic_store(&up->stop_flag, 1);
    pthread_cond_broadcast(&up->work_cv);
    pthread_cond_broadcast(&up->track_cv);
    pthread_mutex_unlock(&up->mu);
    for (int i = 0; i < UPLOADER_WORKERS; i++) {
        worker *w = &up->workers[i];
        if (w->started) pthread_join(w->thread, NULL);
        conn_free(&w->cn);
        devstate_peer_wipe(&w->peer);
    }
    if (up->tracker_started) pthread_join(up->tracker, NULL);
    conn_free(&up->tcn);
    devstate_peer_wipe(&up->tpeer);
    free(up->polls);
    devstate_close(up->ds);
    pthread_cond_destroy(&up->work_cv);
    pthread_cond_destroy(&up->track_cv);
    pthread_mutex_destroy(&up->ds_mu);
    pthread_mutex_destroy(&up->mu);
    free(up);
}
