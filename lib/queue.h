/* queue.h — the durable outgoing queue (SQLite).
 *
 * One row per sealed item: its plaintext waits in the spool as a hard link
 * <spool>/sealed/<id>.plain, and the row holds the age header, payload
 * nonce and file key it is encrypted with while it is uploaded (so every
 * retry sends the same bytes), where it is going and how far it got. Rows
 * written before that (no age columns) name a finished age file
 * <spool>/sealed/<id>.age instead. States:
 *
 *   queued ──claim──► uploading ──mark_uploaded──► uploaded ──mark_delivered──► delivered
 *      ▲                 │ mark_failed (error, next attempt time)
 *      └─────────────────┘
 *   any active state ──cancel──► cancelled   (relay_cancel set when the relay
 *                                             may hold bytes and needs a DELETE)
 *
 * "Active" means queued, uploading or uploaded: the entry is still listed in
 * the outbox.
 *
 * A *growing* row is a file sent while it is still being written (fs/
 * growing.h): its age parts are fixed, its size and meta are not yet
 * (size, blob_size 0, no meta). It is claimed and uploaded like any row,
 * but find_active, each_active and counts do not see it and it replaces
 * nothing, until queue_seal_growing fixes its size and meta at the file's
 * last close (and replaces then). A growing row left by an earlier run is
 * cancelled at the next start (queue_cancel_growing): its writer is gone. Every function is thread-safe and each commit is durable
 * (synchronous=FULL) before it returns. Nothing here touches the network;
 * the uploader thread drives the transitions. */
#ifndef CHUTE_QUEUE_H
#define CHUTE_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "age_stream.h"
#include "age_x25519.h"
#include "meta.h"
#include "status.h"

#define QUEUE_ID_LEN   22          /* 16 random bytes, unpadded base64url */
#define QUEUE_PEER_MAX 128
#define QUEUE_ERR_MAX  256
#define QUEUE_RECIPIENT_MAX 127
#define QUEUE_AGE_HEADER_MAX 1024   /* one X25519 recipient takes about 170 */

typedef enum {
    QUEUE_QUEUED = 0,
    QUEUE_UPLOADING,
    QUEUE_UPLOADED,      /* whole blob durable on the relay: "on relay" */
    QUEUE_DELIVERED,     /* the peer acknowledged it */
    QUEUE_CANCELLED,
} queue_state;

typedef struct queue queue;

typedef struct {
    char        id[QUEUE_ID_LEN + 1];
    char        peer[QUEUE_PEER_MAX + 1];
    char        path[META_PATH_MAX + 1];  /* relative to outbox/<peer>/ */
    queue_state state;
    uint64_t    size;        /* plaintext bytes */
    uint64_t    blob_size;   /* age file bytes: what is uploaded */
    uint64_t    progress;    /* blob bytes durable on the relay (acknowledged) */
    uint64_t    sent;        /* blob bytes handed to the relay so far, the
                                request under way included (status shows it) */
    uint32_t    mode;
    int64_t     mtime_sec;
    uint32_t    mtime_nsec;
    uint8_t     header_mac[META_MAC_BYTES];
    uint8_t     meta[META_SEALED_MAX];    /* the sealed meta, as uploaded */
    size_t      meta_len;
    uint32_t    attempts;
    char        last_error[QUEUE_ERR_MAX];
    int64_t     next_attempt;             /* unix seconds; 0 = now */
    int64_t     created, updated;
    bool        relay_cancel;             /* cancelled; relay DELETE owed */
    bool        growing;                  /* size and meta not known yet */
    char        recipient[QUEUE_RECIPIENT_MAX + 1];   /* the peer's age recipient
                                 its header and meta were sealed for; "" in
                                 rows from before it was kept */
} queue_item;

/* How an item's plaintext becomes its age file (lib/age_source.h). The
 * file key is a secret: kept out of queue_item, wiped after use. */
typedef struct {
    uint8_t header[QUEUE_AGE_HEADER_MAX];   /* up to and including the MAC line */
    size_t  header_len;
    uint8_t nonce[AGE_NONCE_BYTES];
    uint8_t file_key[AGE_FILE_KEY_BYTES];
} queue_age;

/* Opens (creating, or adding the age columns to a queue of an earlier
 * version) the queue in db_path. */
chute_status queue_open(const char *db_path, queue **out);
void queue_close(queue *q);

/* A fresh random item id (NUL-terminated, QUEUE_ID_LEN chars). */
void queue_new_id(char out[QUEUE_ID_LEN + 1]);

/* Text for a state: "queued", "uploading", "uploaded", "delivered",
 * "cancelled". */
const char *queue_state_name(queue_state s);

/* Insert a new item in state queued; id, peer, path, sizes, attributes,
 * header_mac and meta must be filled in, and age says how it is encrypted
 * (NULL: a finished blob sealed/<id>.age). CHUTE_ERR_EXISTS on a used id,
 * CHUTE_ERR_FULL if the database could not grow (a full disk).
 * There is at most one active item per peer and path: an active item
 * already there is cancelled in the same transaction (a newer file
 * replaces a queued one) and its id written to replaced (may be NULL;
 * "" if none) so the caller can delete its blob. */
chute_status queue_insert(queue *q, const queue_item *it, const queue_age *age,
                          char replaced[QUEUE_ID_LEN + 1]);

/* A growing item (it->growing set, meta_len 0 allowed, age required) is
 * inserted as such: it replaces nothing.
 *
 * queue_seal_growing: the growing row it->id becomes an ordinary one with
 * it's path, size, blob_size, mode, mtime and meta; an active item at that
 * path is replaced (as queue_insert). CHUTE_ERR_NOT_FOUND if the row is no
 * longer growing and active (cancelled meanwhile): nothing changes. */
chute_status queue_seal_growing(queue *q, const queue_item *it,
                                char replaced[QUEUE_ID_LEN + 1]);
/* At start, before any file is open: growing rows of an earlier run. */
chute_status queue_cancel_growing(queue *q);

chute_status queue_get(queue *q, const char *id, queue_item *out);

/* The age parts of an item; CHUTE_ERR_NOT_FOUND for no such item and for
 * an item whose blob is a finished sealed/<id>.age, CHUTE_ERR_MALFORMED if
 * the row's parts have impossible sizes. Wipe with queue_age_wipe. */
chute_status queue_get_age(queue *q, const char *id, queue_age *out);
void queue_age_wipe(queue_age *a);

/* The active item at peer/path, if any (CHUTE_ERR_NOT_FOUND otherwise). */
chute_status queue_find_active(queue *q, const char *peer, const char *path,
                               queue_item *out);

/* The newest item at peer/path in any state (e.g. just delivered). */
chute_status queue_find_latest(queue *q, const char *peer, const char *path,
                               queue_item *out);

/* Cancel an active item (unlink, or replaced by a newer file). Sets
 * relay_cancel unless it was queued and never attempted (any attempt may
 * have created it on the relay). Cancelling a delivered or
 * cancelled item is CHUTE_ERR_NOT_FOUND. */
chute_status queue_cancel(queue *q, const char *id);

/* The local view moved: active items under dir old_prefix (or the file
 * old_prefix itself) now live under new_prefix. Their sealed meta keeps the
 * name they were sealed with. */
chute_status queue_move(queue *q, const char *peer, const char *old_prefix,
                        const char *new_prefix);

/* chmod/utimens after close: if the item is still queued and was never
 * attempted (the relay may hold the first meta: a create with another
 * meta would be refused)
 * replace its attributes and sealed meta and return CHUTE_OK; otherwise
 * CHUTE_ERR_REFUSED and nothing changes (the change stays local). */
chute_status queue_update_attrs(queue *q, const char *id, uint32_t mode,
                                int64_t mtime_sec, uint32_t mtime_nsec,
                                const uint8_t *meta, size_t meta_len);

/* The peer was paired again (same device, new link key and send token):
 * whatever the relay holds of the item is the old pairing's, under an id
 * the new one cannot use. The item, queued or uploading, becomes new_id
 * with meta (sealed for new_id), to be sent from byte 0.
 * CHUTE_ERR_NOT_FOUND if there is no such item (cancelled meanwhile). */
chute_status queue_renew_id(queue *q, const char *old_id, const char *new_id,
                            const uint8_t *meta, size_t meta_len);
/* An item on the relay, waiting for the peer, whose relay copy is an
 * earlier pairing's (the peer will never fetch it): queued again, due
 * now, with why as its last error. CHUTE_ERR_NOT_FOUND if it is not
 * waiting for delivery. */
chute_status queue_send_again(queue *q, const char *id, const char *why);
/* Record whom a row from before recipients were kept was sealed for
 * (its meta opened with that peer's link key); other rows are left. */
chute_status queue_note_recipient(queue *q, const char *id, const char *recipient);

/* ---- for the uploader ---------------------------------------------------
 * claim_next takes the oldest queued item whose next_attempt <= now, moves
 * it to uploading, counts the attempt. Only queued items: several workers
 * claim in parallel and must never get an item another one is sending.
 * requeue_interrupted puts items left uploading by an earlier run (a kill)
 * back to queued; the uploader calls it once before its workers claim.
 * set_progress returns CHUTE_ERR_NOT_FOUND once the item is no longer
 * uploading (the user cancelled it): the uploader stops then. mark_failed
 * puts it back to queued with the error and the next attempt time. */
chute_status queue_requeue_interrupted(queue *q);
/* The same while running: items uploading that none of the nheld ids
 * (the ones workers hold; at most QUEUE_SKIP_MAX) is, left so by a state
 * write that failed (a full or busy disk), go back to queued. */
chute_status queue_requeue_unheld(queue *q, const char *const *held, size_t nheld);
chute_status queue_claim_next(queue *q, int64_t now, queue_item *out);
/* The longest wait a caller sets (the uploader's backoff caps, 6 h, and
 * a margin): a next_attempt further from now than this was set by a wall
 * clock since put back, and counts as due (here and in
 * queue_next_relay_cancel). */
#define QUEUE_WAIT_MAX_S 25200
/* The same, passing over growing rows (a worker kept for closed files). */
chute_status queue_claim_next_sealed(queue *q, int64_t now, queue_item *out);
/* Either of the two (sealed_only), passing over the items of the nskip
 * peers in skip (those whose relay does not answer now; at most
 * QUEUE_SKIP_MAX). */
#define QUEUE_SKIP_MAX 64
chute_status queue_claim_next_except(queue *q, int64_t now, bool sealed_only,
                                     const char *const *skip, size_t nskip, queue_item *out);
chute_status queue_set_progress(queue *q, const char *id, uint64_t offset);
/* While a request runs: how far it has got (not durable yet). NOT_FOUND
 * as set_progress. */
chute_status queue_set_sent(queue *q, const char *id, uint64_t offset);
chute_status queue_mark_uploaded(queue *q, const char *id);
chute_status queue_mark_failed(queue *q, const char *id, const char *error,
                               int64_t next_attempt);
/* A claimed item not tried after all (it waits for something local): back
 * to queued until next_attempt, with why, its claim not counted as an
 * attempt (so a later failure backs off from where it was). */
chute_status queue_put_back(queue *q, const char *id, const char *why,
                            int64_t next_attempt);
chute_status queue_mark_delivered(queue *q, const char *id);
/* A problem with an item already on the relay (expired there, refused):
 * recorded as its last error; the item stays "on relay". */
chute_status queue_set_error(queue *q, const char *id, const char *error);
/* The relay answers again: queued items waiting out a backoff whose last
 * error begins with error_prefix (the uploader's words for an unreachable
 * relay) may go now. Others (refused, over quota) keep their wait. */
chute_status queue_retry_now(queue *q, const char *error_prefix);
/* The same for the items of the npeers peers in peers only (at most
 * QUEUE_SKIP_MAX): those on the relay that answers again. */
chute_status queue_retry_now_for(queue *q, const char *error_prefix,
                                 const char *const *peers, size_t npeers);
/* The next cancelled item whose relay copy must be deleted and whose
 * next_attempt <= now (unix seconds), and the mark that it has been. */
chute_status queue_next_relay_cancel(queue *q, int64_t now, queue_item *out);
/* Done, if the row still owes what the caller was handed: `attempts` as
 * queue_next_relay_cancel gave it. A row owed again meanwhile
 * (queue_relay_cancel_owed counts an attempt) stays owed:
 * CHUTE_ERR_NOT_FOUND. */
chute_status queue_relay_cancel_done(queue *q, const char *id, uint32_t attempts);
/* Its DELETE failed: counted in attempts, tried again at next_attempt, so
 * one that keeps failing (its relay is gone) does not hold up the others. */
chute_status queue_relay_cancel_failed(queue *q, const char *id, int64_t next_attempt);
/* A cancelled item's relay copy is owed a DELETE again, due now: the
 * tracker's DELETE came before the worker's create and found nothing, and
 * the worker's own DELETE of the copy it made did not get through. Counts
 * an attempt, so a tracker's done for the earlier DELETE does not settle
 * it. */
chute_status queue_relay_cancel_owed(queue *q, const char *id);

/* Calls fn for every active item, oldest first; fn returning non-zero stops
 * the walk. Used by the status file and `pairtool status`. */
typedef int (*queue_visit_fn)(const queue_item *it, void *arg);
chute_status queue_each_active(queue *q, queue_visit_fn fn, void *arg);
/* The same for the growing rows: files being sent while written. */
chute_status queue_each_growing(queue *q, queue_visit_fn fn, void *arg);
/* The same for the sealed items whole on the relay, awaiting delivery:
 * through the state index, so its cost does not grow with the queued. */
chute_status queue_each_uploaded(queue *q, queue_visit_fn fn, void *arg);

typedef struct {
    uint64_t queued, uploading, uploaded, delivered, cancelled;
} queue_counts_t;
chute_status queue_counts(queue *q, queue_counts_t *out);

#endif
