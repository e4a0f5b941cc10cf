/* chunkstore.h — the bytes of received files: 64 KiB chunk rows
 * (data id, index, bytes) in a SQLite file of their own, inbox-data.db
 * beside the inbox's names (cache.h).
 *
 * A download appends its chunks in large batches: each commit of a
 * rollback journal costs three fsyncs, and on a disk busy with other
 * writes (the relay's, the sender's, on one machine) each of them waits
 * for all of those too — 8 MiB batches spent ~1.7 s per GiB in fsync
 * there; with 32 MiB ones the storer still waited out ~1.6 s of fsyncs per
 * GiB and held the downloader up, and with 256 MiB ones a 1 GiB arrival
 * keeps up with the upload it follows (docs/BENCHMARKS.md). A crash loses
 * at most the open batch: a resume fetches it again. A batch bigger than the
 * writer's page cache spills into the file, and from then on SQLite holds
 * the file locked until the commit: that is why the bytes have a file of
 * their own — names, listings and stat never wait for a download — and why
 * a reader of this file in this process that finds it locked ends the
 * writer's batch at its next chunk (chunkstore_read). The batch's pages
 * go to disk as it grows (write-behind), so its commit finds little left
 * to write, and leave the page cache once committed (pagecache.h).
 *
 * A connection is for reading (the mount's reads of inbox files) or for
 * writing (a download's appends, and deletes: the reaper, aborts). Every
 * call is on the caller's thread; one connection is used by one thread at
 * a time. */
#ifndef CHUTE_CHUNKSTORE_H
#define CHUTE_CHUNKSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define CHUNKSTORE_CHUNK 65536
/* Chunks per batch at most: 256 MiB. */
#define CHUNKSTORE_BATCH 4096

typedef struct chunkstore chunkstore;

/* Open (creating) the chunk file at path. */
chute_status chunkstore_open_reader(const char *path, chunkstore **out);
chute_status chunkstore_open_writer(const char *path, chunkstore **out);
/* For reading the chunks an older version kept in the index file itself
 * (inbox.db): no fd of its own on that file, for closing one would drop
 * the locks the index's connections hold; so no advice either. */
chute_status chunkstore_open_legacy_reader(const char *path, chunkstore **out);
/* An open batch is rolled back. NULL is fine. */
void chunkstore_close(chunkstore *s);

/* ---- reading --------------------------------------------------------- */
/* len bytes at off of data's file, `size` bytes long in all: its chunks
 * must all be there (CHUTE_ERR_IO for a hole). */
chute_status chunkstore_read(chunkstore *s, int64_t data, uint64_t size, uint64_t off,
                             void *buf, size_t len, size_t *got);

/* ---- writing ----------------------------------------------------------- */
/* Chunk idx of data (n bytes: CHUNKSTORE_CHUNK but for a file's last), in
 * the open batch or a new one; the batch commits when full or when a
 * reader waits for it. CHUTE_ERR_LIMIT: the disk is full.
 *
 * A batch that failed (its commit, or an append into it) is gone with
 * every chunk it held: from then on this connection's appends and commits
 * fail with that status, so a caller that goes on cannot commit a file
 * with a hole in it. */
chute_status chunkstore_append(chunkstore *s, int64_t data, int64_t idx,
                               const void *bytes, size_t n);
/* For tests: batches of `chunks` at most from the next one on (0:
 * CHUNKSTORE_BATCH again), so that a test of several batches stays small. */
void chunkstore_set_batch(unsigned chunks);
/* Commit the open batch, if any: what was appended is then on disk. */
chute_status chunkstore_commit(chunkstore *s);
/* Throw the open batch away, if any. */
void chunkstore_rollback(chunkstore *s);
/* How many of data's chunks from the first on are there without a gap,
 * at most max; every chunk after those is deleted. */
chute_status chunkstore_keep_prefix(chunkstore *s, int64_t data, uint64_t max,
                                    uint64_t *kept);
/* Delete data's chunks, at most `limit` of them (0: all); *deleted (may
 * be NULL) gets how many went. Not while a batch is open. */
chute_status chunkstore_delete(chunkstore *s, int64_t data, unsigned limit,
                               unsigned *deleted);

/* Give free pages (what deletes freed) back to the filesystem, at most
 * `pages` of them in one transaction, the file cut by as much; *more:
 * some are left. Live pages near the end move into free ones nearer the
 * start, so this costs I/O up to what it gives back. A file made by a
 * version without it is first rebuilt (VACUUM, a transaction as long as
 * the file's live bytes), but only once those are at most 64 MiB: till
 * then its free pages are only reused. Not while a batch is open. */
chute_status chunkstore_shrink(chunkstore *s, unsigned pages, bool *more);

#endif
