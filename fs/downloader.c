/* downloader.c — see downloader.h. */
#include "downloader.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "age_keys.h"
#include "age_stream.h"
#include "receive.h"
#include "relay_client.h"

#define LIST_WAIT_S      30     /* long-poll; the relay caps it at max_wait */
#define BACKOFF_FIRST_MS 250
#define BACKOFF_MAX_MS   30000
/* Following an item still uploading: only big ones (a small one is whole
 * a moment later and its commit wakes the listing), polled every
 * 5..200 ms, left for its commit after 5 s without growth or after 60 s
 * in all (items committed meanwhile wait for the next listing). */
#define FOLLOW_MIN_BYTES     (4u << 20)
#define FOLLOW_PAUSE_FIRST_MS 5
#define FOLLOW_PAUSE_MAX_MS   200
#define FOLLOW_IDLE_MS        5000
#define FOLLOW_MAX_MS         60000
/* A followed upload (a file its sender may write for hours) gives way to
 * items committed meanwhile: checked this often. */
#define FOLLOW_YIELD_MS       2000
#define SWEEP_MAX             1000
/* A followed item whose bytes are all here waits this long, at most, for
 * the relay to commit it before it is left for its commit's listing. */
#define COMMIT_WAIT_TRIES     20
#define COMMIT_WAIT_MS        50
/* A partial left while its upload went on (stalled, too long, giving way)
 * whose item is then cancelled or expires is never listed again: the
 * sweep of .parts runs between rounds too, at most this often. */
#define SWEEP_EVERY_MS        30000
/* Items from a sender that is no peer of ours (yet): PROTOCOL §7.5 lets
 * the joiner store the peer, and send, a moment before the inviter stores
 * it. The cursor kept on disk stays below the first such item, so a
 * restart lists them again; while one is new, the listing polls every
 * UNCLAIMED_WAIT_S seconds (not LIST_WAIT_S) and re-reads the peers, so a
 * peer stored meanwhile gets its items at once. At most UNCLAIMED_MAX are
 * remembered by id; more are still counted. */
#define UNCLAIMED_MAX         1024
#define UNCLAIMED_WAIT_S      2
#define UNCLAIMED_WATCH_S     120
/* Less free than this where the cache lives: a local failure is a full disk. */
#define DISK_LOW_BYTES        (16u << 20)


struct downloader {
    char home[PATH_MAX];
    char incoming[PATH_MAX];      /* spool/incoming: <item>.part files */
    pthread_t thread;
    atomic_int stop;
    relay_reach *reach;           /* the mount's, shared with the uploader */
    atomic_ulong unclaimed;       /* items left: sender is no current peer's */
    pthread_mutex_t mu;           /* with cv: sleeps that stop() cuts short */
    pthread_cond_t cv;
    char failing[160];            /* why downloads fail now, under mu; "" */
};

/* What the thread works with, all its own. */
typedef struct {
    downloader *d;
    devstate *ds;
    cache *c;
    relay_client *rc;
    devstate_device dev;          /* identity and owner token: wiped at the end */
    age_identity id;
    devstate_peer *peers;
    size_t n_peers;
    uint64_t listed_to;           /* the cursor of the listing being worked through */
    struct unclaimed {
        char item[RELAY_ID_MAX], sender[RELAY_ID_MAX];
    } *unclaimed;                 /* UNCLAIMED_MAX slots, made at the first */
    size_t n_unclaimed;
    unsigned long unclaimed_more; /* beyond those */
    bool has_floor;
    uint64_t floor;               /* the cursor just below the first of them */
    time_t last_unclaimed;        /* CLOCK_MONOTONIC seconds: when one was new */
    uint8_t peers_fp[16];         /* the granted senders as last read, hashed */
} session;

/* ---- sleeping and backing off ------------------------------------------- */

/* Sleep ms unless stop() comes first; returns false if stopping. */
static bool nap(downloader *d, unsigned ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
    pthread_mutex_lock(&d->mu);
    while (!atomic_load(&d->stop) &&
           pthread_cond_timedwait(&d->cv, &d->mu, &until) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&d->mu);
    return !atomic_load(&d->stop);
}

/* Exponential, capped, with jitter in [delay/2, delay] so that many
 * devices behind one failed relay do not come back in step. */
static unsigned backoff_ms(unsigned failures)
{
    unsigned delay = BACKOFF_FIRST_MS;
    for (unsigned i = 0; i < failures && delay < BACKOFF_MAX_MS; i++) delay *= 2;
    if (delay > BACKOFF_MAX_MS) delay = BACKOFF_MAX_MS;
    return delay / 2 + randombytes_uniform(delay / 2 + 1);
}

static void note_reach(downloader *d, chute_status st)
{
    relay_reach_note(d->reach, st != CHUTE_ERR_NETWORK, chute_strstatus(st));
}

/* ---- one item ------------------------------------------------------------- */

/* Item ids name files here: only the relay's own syntax (PROTOCOL §6.1)
 * gets that far, whatever an untrusted relay lists. */
static bool item_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 16 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

static const devstate_peer *peer_of_sender(const session *s, const char *sender)
{
    for (size_t i = 0; i < s->n_peers; i++)
        if (sender[0] && strcmp(s->peers[i].granted_sender, sender) == 0)
            return &s->peers[i];
    return NULL;
}

static time_t monotonic_s(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec;
}

/* li's sender is no current peer: remember it, once, and keep the cursor
 * on disk below it. Not ours to delete (unpaired since, or the pairing
 * race above): it stays on the relay. */
static void leave_unclaimed(session *s, const relay_listed_item *li)
{
    for (size_t i = 0; i < s->n_unclaimed; i++)
        if (strcmp(s->unclaimed[i].item, li->item) == 0) return;
    if (!s->unclaimed) s->unclaimed = calloc(UNCLAIMED_MAX, sizeof *s->unclaimed);
    if (s->unclaimed && s->n_unclaimed < UNCLAIMED_MAX) {
        struct unclaimed *u = &s->unclaimed[s->n_unclaimed++];
        snprintf(u->item, sizeof u->item, "%s", li->item);
        snprintf(u->sender, sizeof u->sender, "%s", li->sender);
    } else {
        s->unclaimed_more++;
    }
    uint64_t below = li->seq ? li->seq - 1 : 0;
    if (!s->has_floor || below < s->floor) s->floor = below;
    s->has_floor = true;
    s->last_unclaimed = monotonic_s();
    atomic_store(&s->d->unclaimed, s->n_unclaimed + s->unclaimed_more);
    fprintf(stderr, "chutefs: item %s is from sender %s, no current peer: "
                    "left on the relay\n", li->item, li->sender);
}

/* Read the peers afresh; true if their granted senders changed since the
 * last read. */
static chute_status reread_peers(session *s, bool *changed)
{
    devstate_peers_free(s->peers, s->n_peers);
    s->peers = NULL;
    s->n_peers = 0;
    chute_status st = devstate_list_peers(s->ds, &s->peers, &s->n_peers);
    if (st) return st;
    uint8_t fp[sizeof s->peers_fp];
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, sizeof fp);
    for (size_t i = 0; i < s->n_peers; i++)
        crypto_generichash_update(&h, (const uint8_t *)s->peers[i].granted_sender,
                                  strlen(s->peers[i].granted_sender) + 1);
    crypto_generichash_final(&h, fp, sizeof fp);
    *changed = memcmp(fp, s->peers_fp, sizeof fp) != 0;
    memcpy(s->peers_fp, fp, sizeof fp);
    return CHUTE_OK;
}

/* With the peers just read: is one of the items left now a peer's? Then
 * forget them all; the caller lists again from the floor. Past the ones
 * remembered, only a change of peers is a reason to look again. */
static bool unclaimed_now_claimed(session *s, bool peers_changed)
{
    bool claimed = s->unclaimed_more > 0 && peers_changed;
    for (size_t i = 0; !claimed && i < s->n_unclaimed; i++)
        claimed = peer_of_sender(s, s->unclaimed[i].sender) != NULL;
    if (!claimed) return false;
    s->n_unclaimed = 0;
    s->unclaimed_more = 0;
    atomic_store(&s->d->unclaimed, 0);
    return true;
}

static int part_path(const session *s, const char *item, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s.part", s->d->incoming, item);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

typedef struct {
    int fd;
    uint64_t off, size;           /* blob offset of the next byte; its size */
    uint64_t payload;             /* where its payload begins; UINT64_MAX: not known yet */
    receiving *r;
    const char *reason;           /* the receiver's refusal, if it refused */
    chute_status fed;             /* its status then */
    int failed;                   /* 1: write error, 2: more bytes than declared,
                                     3: the receiver stopped */
} part_sink;

/* Each piece goes through the receiver, so the blob is decrypted and
 * stored while it downloads; the .part keeps only the header and nonce.
 * With the whole chunks the cache keeps, that is all a resume needs —
 * writing the payload there too cost a second copy of every byte. */
static int write_part(void *ctx, const uint8_t *data, size_t len)
{
    part_sink *p = ctx;
    if (len > p->size - p->off) { p->failed = 2; return 1; }
    p->fed = receive_feed(p->r, data, len, &p->reason);
    if (p->fed) { p->failed = 3; return 1; }
    if (p->payload == UINT64_MAX) (void)receive_payload_start(p->r, &p->payload);
    uint64_t end = p->off + len < p->payload ? p->off + len : p->payload;
    const uint8_t *d = data;
    for (uint64_t off = p->off; off < end;) {
        ssize_t w = pwrite(p->fd, d, (size_t)(end - off), (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { p->failed = 1; return 1; }
        d += w; off += (uint64_t)w;
    }
    p->off += len;
    return 0;
}

/* Where a followed item stands: CHUTE_OK while it is still uploading (or
 * the relay did not say: the follow goes on, within its limits),
 * CHUTE_ERR_EXISTS once committed, CHUTE_ERR_NOT_FOUND once gone
 * (cancelled by its sender, expired). */
static chute_status follow_state(session *s, const relay_listed_item *li)
{
    relay_item_state now;
    chute_status st = relay_item_status(s->rc, s->dev.inbox, s->dev.owner_token, li->item, &now);
    note_reach(s->d, st);
    if (st == CHUTE_ERR_NOT_FOUND) return st;
    if (st || strcmp(now.state, "uploading") == 0) return CHUTE_OK;
    return strcmp(now.state, "pending") == 0 ? CHUTE_ERR_EXISTS : CHUTE_ERR_NOT_FOUND;
}

/* Every byte of an item listed while it was uploading is here: it is
 * finished only once the relay has committed it. Between its last byte
 * and its commit the sender may be revoked, or the commit fail, and then
 * it must not be shown. A moment's wait (the commit follows the last
 * byte within milliseconds), else it is left for its commit's listing. */
static chute_status await_commit(session *s, const relay_listed_item *li, bool *later)
{
    for (int i = 0; i < COMMIT_WAIT_TRIES; i++) {
        chute_status st = follow_state(s, li);
        if (st == CHUTE_ERR_EXISTS) return CHUTE_OK;      /* committed: finish it */
        if (st == CHUTE_ERR_NOT_FOUND) return st;         /* gone */
        if (!nap(s->d, COMMIT_WAIT_MS)) return CHUTE_ERR_NETWORK;   /* stopping */
    }
    *later = true;
    return CHUTE_OK;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Have items been committed since the listing being worked through? */
static bool others_waiting(session *s)
{
    relay_item_list l;
    if (relay_items_list(s->rc, s->dev.inbox, s->dev.owner_token, s->listed_to, 0, 0, &l))
        return false;
    bool waiting = l.count > 0;
    relay_item_list_free(&l);
    return waiting;
}

/* Fetch the rest of the blob through the sink. A complete item comes in
 * one request (resumed after a cut). An item still uploading (a partial
 * listing, PROTOCOL §6.6) is followed: its durable prefix, then whatever
 * became durable since, polled with a growing pause; *later is set if it
 * stops growing for FOLLOW_IDLE_MS or has been followed (paused) for
 * FOLLOW_MAX_MS — its commit lists it again. */
static chute_status fetch_blob(session *s, const relay_listed_item *li, part_sink *p,
                               bool *later)
{
    *later = false;
    unsigned pause = FOLLOW_PAUSE_FIRST_MS, idle = 0, followed = 0;
    int64_t yield_at = mono_ms() + FOLLOW_YIELD_MS;
    while (p->off < p->size) {
        if (!li->complete && mono_ms() >= yield_at) {
            yield_at = mono_ms() + FOLLOW_YIELD_MS;
            if (others_waiting(s)) {   /* fetched at its commit instead */
                *later = true;
                return CHUTE_OK;
            }
        }
        uint64_t before = p->off;
        chute_status st = relay_item_download(s->rc, s->dev.inbox, s->dev.owner_token,
                                              li->item, p->off, UINT64_MAX, write_part, p);
        if (p->failed == 1) return CHUTE_ERR_IO;
        if (p->failed == 2) return CHUTE_ERR_PROTOCOL;
        if (p->failed == 3) return p->fed;
        /* 416: nothing durable past what we have yet. */
        if (st == CHUTE_ERR_PROTOCOL && !li->complete &&
            relay_client_http_status(s->rc) == 416)
            st = CHUTE_OK;
        /* A download is never "exists" (409) nor "over a limit" (429, 507):
         * from a proxy or another relay those are failures to retry later,
         * not an item committed before (acked) or a full disk (restarted). */
        if (st == CHUTE_ERR_EXISTS || st == CHUTE_ERR_LIMIT) st = CHUTE_ERR_NETWORK;
        note_reach(s->d, st);
        if (st) return st;
        if (p->off == p->size) {
            if (li->complete) break;
            return await_commit(s, li, later);
        }
        if (li->complete) return CHUTE_ERR_NETWORK;   /* cut short: resume */
        if (p->off > before) {
            idle = 0;
            pause = FOLLOW_PAUSE_FIRST_MS;
        } else if (li->deferred && (st = follow_state(s, li)) != CHUTE_OK) {
            /* Committed: its next listing has the meta to finish it with,
             * and the rest of its bytes. Gone: dropped. */
            *later = st == CHUTE_ERR_EXISTS;
            return *later ? CHUTE_OK : st;
        }
        if (idle >= FOLLOW_IDLE_MS || followed >= FOLLOW_MAX_MS) {
            *later = true;
            return CHUTE_OK;
        }
        if (!nap(s->d, pause)) return CHUTE_ERR_NETWORK;   /* stopping */
        idle += pause;
        followed += pause;
        if (pause < FOLLOW_PAUSE_MAX_MS) pause *= 2;
    }
    return CHUTE_OK;
}

static chute_status ack(session *s, const char *item, bool rejected)
{
    chute_status st = rejected
        ? relay_item_reject(s->rc, s->dev.inbox, s->dev.owner_token, item)
        : relay_item_ack(s->rc, s->dev.inbox, s->dev.owner_token, item);
    note_reach(s->d, st);
    /* 404: the relay has forgotten it (or the inbox): nothing left to ack. */
    return st == CHUTE_ERR_NOT_FOUND ? CHUTE_OK : st;
}

static void drop_part(session *s, const char *item)
{
    char path[PATH_MAX];
    if (!part_path(s, item, path, sizeof path)) unlink(path);
}

static chute_status quarantine(session *s, const devstate_peer *p, const char *item,
                               const char *reason)
{
    fprintf(stderr, "chutefs: quarantined item %s from %s: %s\n", item, p->name, reason);
    chute_status st = cache_quarantine(s->c, p->name, item, reason);
    if (st) return st;
    drop_part(s, item);
    /* Taken down so it is not fetched forever, as rejected so its sender
     * learns it did not arrive; it is recorded here, never shown. */
    return ack(s, item, true);
}

/* The .part's bytes (a resumed download) and then the relay's, through
 * the receiver: verified and committed when the blob is whole. *reason is
 * set when the item itself is bad. */
static chute_status receive_item(session *s, const devstate_peer *p,
                                 const relay_listed_item *li, const chute_meta *m,
                                 int fd, bool *later, char *final, size_t cap,
                                 const char **reason)
{
    *later = false;
    *reason = NULL;
    struct stat sb;
    if (fstat(fd, &sb) != 0) return CHUTE_ERR_IO;
    /* A deferred item has no size yet: the relay's max_item_size bounds it. */
    part_sink sink = {.fd = fd, .off = (uint64_t)sb.st_size,
                      .size = li->deferred ? UINT64_MAX : li->size, .payload = UINT64_MAX};
    if (sink.off > sink.size) {   /* not this blob's prefix: start over */
        if (ftruncate(fd, 0) != 0) return CHUTE_ERR_IO;
        sink.off = 0;
    }
    uint64_t had = sink.off;
    /* If the .part holds the header and nonce, as a resume needs, the
     * blob's chunks follow them: how many there are (a payload's length
     * counts its nonce, the last bytes of the .part). */
    uint64_t blob_chunks = 0;
    if (!li->deferred && had >= AGE_NONCE_BYTES && li->size > had &&
        age_payload_geometry(li->size - had + AGE_NONCE_BYTES, NULL, &blob_chunks) != CHUTE_OK)
        blob_chunks = 0;
    chute_status st = receive_begin(s->c, p->name, li->item, m, &s->id, true, blob_chunks,
                                    &sink.r);
    if (st) return st;
    st = receive_feed_fd(sink.r, fd, had, reason);
    if (!st && receive_payload_start(sink.r, &sink.payload) == CHUTE_OK && had == sink.payload) {
        /* header and nonce again, then on after the chunks stored */
        st = receive_skip_stored(sink.r, &sink.off);
        if (!st && receive_stored_chunks(sink.r))
            fprintf(stderr, "chutefs: resuming item %s after %llu stored chunks\n", li->item,
                    (unsigned long long)receive_stored_chunks(sink.r));
    } else if (!st && receive_stored_chunks(sink.r)) {
        /* What is stored does not follow the .part (cut inside the header,
         * or a .part of an older build holding payload): store it anew. */
        receive_abort(sink.r);
        sink.r = NULL;
        st = receive_begin(s->c, p->name, li->item, m, &s->id, false, 0, &sink.r);
        if (!st) st = receive_feed_fd(sink.r, fd, had, reason);
    }
    if (!st) {
        st = fetch_blob(s, li, &sink, later);
        if (sink.reason) *reason = sink.reason;
    }
    if (st && *reason && had) {
        /* Refused after a resume: the .part is our copy, and a crash can
         * leave it damaged (its chunks committed, its own bytes never
         * written out). Not proof against the item: once more from its
         * start, which quarantines it if the relay's bytes are bad. */
        fprintf(stderr, "chutefs: the partial download of item %s is damaged or refused "
                "(%s); fetching it again from its start\n", li->item, *reason);
        receive_abort(sink.r);
        *reason = NULL;
        if (ftruncate(fd, 0) != 0) return CHUTE_ERR_IO;
        return receive_item(s, p, li, m, fd, later, final, cap, reason);   /* had: 0 */
    }
    if (*later || st == CHUTE_ERR_NETWORK) {   /* cut short: keep what is stored */
        receive_suspend(sink.r);
        return st;
    }
    if (st) {
        receive_abort(sink.r);
        return st;
    }
    return receive_finish(sink.r, final, cap, reason);
}

/* Returns CHUTE_OK when the item needs nothing more now (stored and acked,
 * quarantined and acked, or left alone); anything else is retried. */
static chute_status download_item(session *s, const relay_listed_item *li)
{
    if (!item_id_ok(li->item)) {
        fprintf(stderr, "chutefs: the relay listed a malformed item id; skipped\n");
        return CHUTE_OK;
    }
    const devstate_peer *p = peer_of_sender(s, li->sender);
    if (!p) {
        leave_unclaimed(s, li);
        return CHUTE_OK;
    }
    bool seen = false, quarantined = false;
    chute_status st = cache_seen(s->c, p->name, li->item, &seen);
    if (!st) st = cache_is_quarantined(s->c, p->name, li->item, &quarantined);
    if (st) return st;
    if (seen || quarantined) {   /* done before; the ack was lost */
        drop_part(s, li->item);
        return ack(s, li->item, quarantined && !seen);
    }
    if (!li->complete && !li->deferred && li->size < FOLLOW_MIN_BYTES) return CHUTE_OK;
    /* A deferred item is still being written at the sender: no meta yet.
     * Its prefix is stored as it grows; its commit lists it again, with
     * the meta that lets it be checked and shown. */
    chute_meta *m = li->deferred ? NULL : malloc(sizeof *m);
    if (!m && !li->deferred) return CHUTE_ERR_NOMEM;
    const char *reason = NULL;
    st = m ? receive_open_meta(li->meta_b64, p, li->item, s->dev.recipient, m, &reason)
           : CHUTE_OK;
    if (st) {
        free(m);
        return reason ? quarantine(s, p, li->item, reason) : st;
    }
    char path[PATH_MAX];
    int fd = -1;
    if (part_path(s, li->item, path, sizeof path) == 0)
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) { free(m); return CHUTE_ERR_IO; }
    bool later = false;
    char final[META_PATH_MAX + 1];
    st = receive_item(s, p, li, m, fd, &later, final, sizeof final, &reason);
    close(fd);
    if (m) sodium_memzero(m, sizeof *m);
    free(m);
    if (later) return CHUTE_OK;        /* listed again once complete */
    if (st == CHUTE_ERR_EXISTS) st = CHUTE_OK;   /* committed by an earlier run */
    if (st && reason) return quarantine(s, p, li->item, reason);
    if (st == CHUTE_ERR_NOT_FOUND) {   /* cancelled by its sender meanwhile */
        unlink(path);
        return CHUTE_OK;
    }
    if (st == CHUTE_ERR_PROTOCOL)      /* the relay sent more than it declared */
        unlink(path);
    if (st) return st;
    unlink(path);
    return ack(s, li->item, false);
}

/* ---- what a crash or a cancel left behind -------------------------------- */

/* A .part whose item the relay no longer offers (cancelled or expired
 * while this device was away, or acked by a run that died before deleting
 * it) would stay forever: the item is never listed again. One status
 * request per file, at most SWEEP_MAX; a relay that does not answer ends
 * the sweep (the next one, within SWEEP_EVERY_MS, tries again). */
static void sweep_parts(session *s)
{
    DIR *dir = opendir(s->d->incoming);
    if (!dir) return;
    unsigned asked = 0;
    struct dirent *e;
    while ((e = readdir(dir)) && asked < SWEEP_MAX && !atomic_load(&s->d->stop)) {
        size_t len = strlen(e->d_name);
        char item[RELAY_ID_MAX];
        if (len <= 5 || len - 5 >= sizeof item || strcmp(e->d_name + len - 5, ".part") != 0)
            continue;
        memcpy(item, e->d_name, len - 5);
        item[len - 5] = '\0';
        if (!item_id_ok(item)) continue;
        asked++;
        relay_item_state is;
        chute_status st = relay_item_status(s->rc, s->dev.inbox, s->dev.owner_token, item, &is);
        note_reach(s->d, st);
        if (st == CHUTE_ERR_NETWORK) break;
        bool offered = !st && (strcmp(is.state, "uploading") == 0 ||
                               strcmp(is.state, "pending") == 0);
        if ((st == CHUTE_ERR_NOT_FOUND || (!st && !offered)) &&
            unlinkat(dirfd(dir), e->d_name, 0) == 0)
            fprintf(stderr, "chutefs: dropped the partial download of item %s (%s)\n", item,
                    st ? "unknown to the relay" : is.state);
    }
    closedir(dir);
}

/* A cache partial goes on only with its .part (the header it needs). */
static bool has_part(const char *peer, const char *item, void *arg)
{
    (void)peer;
    char path[PATH_MAX];
    return item_id_ok(item) && part_path(arg, item, path, sizeof path) == 0 &&
           access(path, F_OK) == 0;
}

/* The .parts of items the relay no longer offers, then the cache's
 * partials left without a .part. Only while no download is open. */
static void drop_abandoned(session *s)
{
    sweep_parts(s);
    if (cache_drop_partials(s->c, has_part, s) != CHUTE_OK)
        fprintf(stderr, "chutefs: cannot drop partial downloads from the cache\n");
}

/* ---- the thread --------------------------------------------------------- */

static chute_status session_open(session *s, downloader *d)
{
    s->d = d;
    chute_status st = devstate_open(d->home, 0, &s->ds);
    if (!st) st = devstate_get_device(s->ds, &s->dev);
    if (!st) st = age_identity_parse(&s->id, s->dev.identity);
    char db[PATH_MAX];
    if (!st && snprintf(db, sizeof db, "%s/" CACHE_DB_NAME, d->home) >= (int)sizeof db)
        st = CHUTE_ERR_ARG;
    /* Without a reaper: the mount's cache has one, and two on one file
     * could both free a row (cache.c, reap_some). */
    if (!st) st = cache_open_without_reaper(db, &s->c);
    if (!st) {
        relay_config cfg = {
            .base_url = s->dev.relay_url,
            .cacert = s->dev.cacert[0] ? s->dev.cacert : NULL,
            .pin = s->dev.pin[0] ? s->dev.pin : NULL,
        };
        st = relay_client_new(&cfg, &s->rc);
    }
    if (!st) relay_client_set_stop(s->rc, &d->stop);
    return st;
}

static void session_close(session *s)
{
    devstate_peers_free(s->peers, s->n_peers);
    free(s->unclaimed);
    relay_client_free(s->rc);
    cache_close(s->c);
    devstate_close(s->ds);
    age_identity_wipe(&s->id);
    devstate_device_wipe(&s->dev);
}

/* One listing and the items in it; *cursor advances past each item that
 * needs nothing more, so a failure re-lists from the first unfinished one. */
static chute_status list_and_fetch(session *s, uint64_t *cursor, bool *caught_up)
{
    relay_item_list l;
    bool watching = s->n_unclaimed + s->unclaimed_more > 0 &&
                    monotonic_s() - s->last_unclaimed < UNCLAIMED_WATCH_S;
    /* Catch up without waiting (this also tells status at once whether the
     * relay answers); long-poll only once nothing is left. */
    int wait = !*caught_up ? 0 : watching ? UNCLAIMED_WAIT_S : LIST_WAIT_S;
    chute_status st = relay_items_list(s->rc, s->dev.inbox, s->dev.owner_token, *cursor,
                                       wait, 1, &l);
    note_reach(s->d, st);
    if (st) return st;
    *caught_up = l.count == 0;
    bool again = false;
    if (l.count || s->n_unclaimed + s->unclaimed_more > 0) {
        /* Pairings change under a running mount: read the peers afresh. */
        bool changed = false;
        st = reread_peers(s, &changed);
        again = !st && unclaimed_now_claimed(s, changed);
    }
    s->listed_to = l.cursor;
    /* Whole items first: one still uploading must not hold them up. The
     * cursor may pass an unfinished upload: its commit lists it again. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; !st && i < l.count && !atomic_load(&s->d->stop); i++) {
            if ((l.items[i].complete ? 0 : 1) != pass) continue;
            st = download_item(s, &l.items[i]);
            if (!st && l.items[i].seq > *cursor) *cursor = l.items[i].seq;
        }
    if (!st && !atomic_load(&s->d->stop) && l.cursor > *cursor) *cursor = l.cursor;
    if (again) {   /* their sender is a peer now: list them again */
        fprintf(stderr, "chutefs: items left for want of a peer: listing them again\n");
        *cursor = s->floor;
        s->has_floor = false;
        *caught_up = false;
    }
    relay_item_list_free(&l);
    return st;
}

/* What the status file says while downloads fail: a full disk in words
 * (SQLite only says it failed), else the status and the relay's answer. */
static void note_failing(downloader *d, chute_status st, relay_client *rc)
{
    char why[sizeof d->failing];
    struct statvfs vfs;
    why[0] = '\0';
    if (st == CHUTE_ERR_LIMIT ||   /* the cache's "full" */
        (st && st != CHUTE_ERR_NETWORK && statvfs(d->home, &vfs) == 0 &&
         (uint64_t)vfs.f_bavail * vfs.f_frsize < DISK_LOW_BYTES))
        snprintf(why, sizeof why, "no room to store what arrives: the disk of %.60s is full",
                 d->home);
    else if (st && st != CHUTE_ERR_NETWORK)   /* that one is the relay: line's */
        snprintf(why, sizeof why, "%s (%.100s)", chute_strstatus(st), relay_client_error(rc));
    pthread_mutex_lock(&d->mu);
    memcpy(d->failing, why, sizeof why);
    pthread_mutex_unlock(&d->mu);
}

/* The log line of a failed round. */
static void log_failing(downloader *d, chute_status st, relay_client *rc)
{
    pthread_mutex_lock(&d->mu);
    if (d->failing[0]) fprintf(stderr, "chutefs: downloading: %s; retrying\n", d->failing);
    else fprintf(stderr, "chutefs: downloading: %s (%s); retrying\n", chute_strstatus(st),
                 relay_client_error(rc));
    pthread_mutex_unlock(&d->mu);
}

static void *downloader_main(void *arg)
{
    downloader *d = arg;
    session s;
    memset(&s, 0, sizeof s);
    chute_status st = session_open(&s, d);
    if (st) {
        fprintf(stderr, "chutefs: the downloader cannot start: %s\n", chute_strstatus(st));
        session_close(&s);
        return NULL;
    }
    /* No download runs yet: .parts nobody will finish go, and the cache's
     * partials without a .part (a resume needs its header). */
    drop_abandoned(&s);
    int64_t next_sweep = mono_ms() + SWEEP_EVERY_MS;
    uint64_t cursor = 0, saved = 0;
    if (cache_list_cursor(s.c, s.dev.inbox, &cursor) == CHUTE_OK) saved = cursor;
    unsigned failures = 0;
    bool caught_up = false;
    while (!atomic_load(&d->stop)) {
        st = list_and_fetch(&s, &cursor, &caught_up);
        uint64_t keep = s.has_floor && s.floor < cursor ? s.floor : cursor;
        if (keep != saved && cache_set_list_cursor(s.c, s.dev.inbox, keep) == CHUTE_OK)
            saved = keep;
        if (atomic_load(&d->stop)) break;
        note_failing(d, st, s.rc);
        /* Between rounds no download is open either. */
        if (!st && mono_ms() >= next_sweep) {
            drop_abandoned(&s);
            next_sweep = mono_ms() + SWEEP_EVERY_MS;
        }
        if (!st) { failures = 0; continue; }
        if (failures == 0 || st != CHUTE_ERR_NETWORK) log_failing(d, st, s.rc);
        if (!nap(d, backoff_ms(failures))) break;
        if (failures < 32) failures++;
    }
    session_close(&s);
    return NULL;
}

chute_status downloader_start(chutefs *fs, downloader **out)
{
    *out = NULL;
    downloader *d = calloc(1, sizeof *d);
    if (!d) return CHUTE_ERR_NOMEM;
    d->reach = &fs->reach;
    int n1 = snprintf(d->home, sizeof d->home, "%s", fs->home);
    int n2 = snprintf(d->incoming, sizeof d->incoming, "%s/incoming", fs->spool);
    if (n1 < 0 || (size_t)n1 >= sizeof d->home || n2 < 0 || (size_t)n2 >= sizeof d->incoming) {
        free(d);
        return CHUTE_ERR_ARG;
    }
    if (mkdir(d->incoming, 0700) != 0 && errno != EEXIST) { free(d); return CHUTE_ERR_IO; }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&d->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) { free(d); return CHUTE_ERR_NOMEM; }
    pthread_mutex_init(&d->mu, NULL);
    if (pthread_create(&d->thread, NULL, downloader_main, d) != 0) {
        pthread_cond_destroy(&d->cv);
        pthread_mutex_destroy(&d->mu);
        free(d);
        return CHUTE_ERR_NOMEM;
    }
    *out = d;
    return CHUTE_OK;
}

void downloader_stop(downloader *d)
{
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    atomic_store(&d->stop, 1);
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

void downloader_failing(downloader *d, char *buf, size_t cap)
{
    if (!cap) return;
    buf[0] = '\0';
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    snprintf(buf, cap, "%s", d->failing);
    pthread_mutex_unlock(&d->mu);
}

unsigned long downloader_unclaimed(const downloader *d)
{
    return d ? atomic_load(&d->unclaimed) : 0;
}
