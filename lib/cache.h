/* cache.h — the inbox: received files, stored in SQLite.
 *
 * Plaintext is stored as 64 KiB chunk rows (chunk i holds bytes
 * [i*64Ki, (i+1)*64Ki)), so a read at any offset touches only the chunks it
 * covers: a seek into a 4 GiB file is one indexed lookup. The chunk size is
 * age's STREAM chunk size, so the downloader appends exactly one decrypted
 * age chunk per row. Why plaintext rather than the age ciphertext: the cache
 * lives on the same disk as the identity that would decrypt it, so keeping
 * ciphertext protects nothing, while it would cost a decryption per read.
 *
 * The names (the index, inbox.db) and the chunks (inbox-data.db,
 * chunkstore.h) are two SQLite files, so that a download, which holds the
 * chunk file locked for a batch at a time, never holds up a lookup, a
 * listing or a stat of the inbox.
 *
 * Receiving is download → verify → commit:
 *
 *   cache_item_begin(peer, item)  an invisible staging area (own connection)
 *   cache_item_append(bytes) ...  written in batches, still invisible
 *   cache_item_commit(meta)       the chunks made durable, then one index
 *                                 transaction: the name is sanitized and
 *                                 made unique, folders are made, the file
 *                                 appears — or nothing does
 *   cache_item_abort()            throws the partial bytes away
 *
 * A crash mid-download leaves only an invisible partial: its committed
 * batches are whole chunks, which cache_item_resume continues from (the
 * downloader then asks the relay for the rest only); cache_item_begin
 * drops it and starts over. */
#ifndef CHUTE_CACHE_H
#define CHUTE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meta.h"
#include "status.h"

#define CACHE_CHUNK      65536
#define CACHE_MAX_DEPTH  32     /* folders of an arrival, deeper ones flattened */

typedef struct cache cache;
typedef struct cache_txn cache_txn;

typedef struct {
    int64_t  id;         /* 0 = the peer's root folder */
    bool     is_dir;
    uint64_t size;
    uint32_t mode;       /* permission bits as sent (files), 0755 (folders) */
    int64_t  mtime_sec;
    uint32_t mtime_nsec;
    int64_t  data;       /* chunk owner, for cache_read */
    bool     data_in_index;   /* its chunks are in inbox.db (before 0.3) */
} cache_node;

/* The cache's file in a device folder. Its own file, not the queue's
 * chutefs.db: the cache wants a rollback journal (db.h), the queue WAL. */
#define CACHE_DB_NAME "inbox.db"
/* Its chunks' file beside it: for "DIR/inbox.db", "DIR/inbox-data.db". */
#define CACHE_DATA_NAME "inbox-data.db"
/* The chunk file that goes with index db_path (malloc'd; NULL: no memory). */
char *cache_data_path(const char *db_path);

chute_status cache_open(const char *db_path, cache **out);
/* For the mount's downloader, and a look from another process (pairtool
 * status, test tools): removed files are left for the mount's cache to
 * free, which alone knows which of them are still open — and one reaper
 * per cache file, for two could both free one row (cache.c, reap_some). */
chute_status cache_open_without_reaper(const char *db_path, cache **out);
void cache_close(cache *c);
/* Before 0.2 the cache's tables lived in legacy_path (chutefs.db): move
 * their rows here and drop them there. Idempotent; nothing to do is OK. */
chute_status cache_adopt_legacy(cache *c, const char *legacy_path);

/* ---- receiving (the downloader) ---------------------------------------- */
/* *seen = this peer's item was committed before (even if since deleted):
 * the downloader only re-acknowledges it. */
chute_status cache_seen(cache *c, const char *peer, const char *item, bool *seen);
chute_status cache_item_begin(cache *c, const char *peer, const char *item,
                              cache_txn **out);
/* CHUTE_ERR_LIMIT: the disk (or SQLite's page limit) is full. */
chute_status cache_item_append(cache_txn *t, const void *buf, size_t len);
/* Commit with the opened meta: CHUTE_ERR_MALFORMED if the bytes appended do
 * not add up to m->size. final_path (may be NULL) gets the sanitized,
 * collision-free relative path. Frees t whatever the result. */
chute_status cache_item_commit(cache_txn *t, const chute_meta *m,
                               char *final_path, size_t cap);
void cache_item_abort(cache_txn *t);
/* Resuming a download: like begin, but a partial of the item left by an
 * earlier try (suspended, or cut by a crash: committed batches survive)
 * keeps its first chunks, at most max_chunks; *kept says how many, and
 * appends go on after them. */
chute_status cache_item_resume(cache *c, const char *peer, const char *item,
                               uint64_t max_chunks, cache_txn **out, uint64_t *kept);
/* Make what was appended so far durable, whole chunks only (for a resume
 * after a crash): the storer calls it when the download stalls, so that
 * the chunk file is not held locked meanwhile. */
chute_status cache_item_checkpoint(cache_txn *t);
/* Stop for now, keeping every whole chunk appended (for a resume); a
 * partial last chunk is dropped. Frees t. */
void cache_item_suspend(cache_txn *t);
/* Drop the partials for which keep (may be NULL) says no — downloads no
 * one will resume. Only while no cache_txn is open: the downloader's start,
 * and between its rounds. */
typedef bool (*cache_keep_fn)(const char *peer, const char *item, void *arg);
chute_status cache_drop_partials(cache *c, cache_keep_fn keep, void *arg);

/* ---- the mount --------------------------------------------------------- */
/* path is relative to inbox/<peer>/ ("" is the peer's folder). */
chute_status cache_lookup(cache *c, const char *peer, const char *path,
                          cache_node *out);
/* cache_lookup for opening a file: its bytes stay readable, even once it
 * is removed (as a removed file stays readable through the descriptors
 * open on it), until the matching cache_close_file. */
chute_status cache_open_file(cache *c, const char *peer, const char *path,
                             cache_node *out);
void cache_close_file(cache *c, const cache_node *n);
typedef int (*cache_list_fn)(const char *name, const cache_node *n, void *arg);
chute_status cache_list(cache *c, const char *peer, int64_t dir,
                        cache_list_fn fn, void *arg);
/* The peers that have anything in the inbox, in name order: an unpaired
 * peer's received files stay the user's, so its folder stays while it
 * holds them. fn must not call back into c. */
chute_status cache_each_peer(cache *c, void (*fn)(const char *peer, void *arg), void *arg);
/* *holds = the peer has a file or folder in the inbox. */
chute_status cache_peer_holds(cache *c, const char *peer, bool *holds);
/* Bytes of file n (from cache_lookup or cache_list) at off. */
chute_status cache_read(cache *c, const cache_node *n, uint64_t off,
                        void *buf, size_t len, size_t *got);
/* Remove a file (its chunks are freed in the background, soon after)
 * or an empty folder
 * (CHUTE_ERR_EXISTS if not empty). */
chute_status cache_remove(cache *c, const char *peer, const char *path);
/* Rename within one peer's inbox; an existing target file is replaced, an
 * existing empty target folder too; CHUTE_ERR_EXISTS for a non-empty one
 * (or any target at all with noreplace: checked in the same transaction,
 * so an arrival at that name meanwhile is never replaced), CHUTE_ERR_ARG
 * for a folder into itself or type mismatch, CHUTE_ERR_LIMIT for a target
 * path or name too long. */
chute_status cache_rename(cache *c, const char *peer, const char *from,
                          const char *to, bool noreplace);

typedef struct {
    uint64_t stored;          /* files in the inbox */
    uint64_t stored_bytes;
    uint64_t incoming;        /* downloads in progress */
    uint64_t quarantined;     /* items refused by verification */
} cache_counts_t;
chute_status cache_counts(cache *c, cache_counts_t *out);

/* ---- quarantine -------------------------------------------------------- */
/* An item that failed verification (its meta does not open, its blob does
 * not match or authenticate) is never shown; it is recorded here with a
 * short reason for people (never secret), so status can say so and the
 * downloader only re-acknowledges it if the relay lists it again. */
chute_status cache_quarantine(cache *c, const char *peer, const char *item,
                              const char *reason);
chute_status cache_is_quarantined(cache *c, const char *peer, const char *item,
                                  bool *yes);
/* fn for each record, oldest first; a non-zero return stops. */
typedef int (*cache_quarantine_fn)(const char *peer, const char *item,
                                   const char *reason, int64_t at, void *arg);
chute_status cache_quarantine_each(cache *c, cache_quarantine_fn fn, void *arg);

/* ---- the downloader's list cursor (PROTOCOL §6.6) ----------------------- */
/* Only saves re-listing after a restart: correctness rests on cache_seen
 * and cache_is_quarantined, not on this. 0 if none was saved. */
chute_status cache_list_cursor(cache *c, const char *inbox, uint64_t *seq);
chute_status cache_set_list_cursor(cache *c, const char *inbox, uint64_t seq);

#endif
