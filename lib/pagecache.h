/* pagecache.h — streaming a big file through the page cache without
 * filling memory with it.
 *
 * Chute streams every file it carries once: written into the outbox, read
 * by the uploader, stored by the relay, stored in the inbox. Kept in the
 * page cache, each gigabyte pushes a gigabyte of other data out, and on a
 * VM whose freed memory goes back to the host every new page costs a host
 * fault (~3 s per GiB measured here, against ~0.3 s for pages reused).
 * So a stream hands its pages back behind itself: written pages once they
 * are on disk, read pages once read — the usual sync_file_range +
 * POSIX_FADV_DONTNEED pattern. It never changes what a file holds, and
 * does nothing for small files (below one step).
 *
 * Every call is advice: a failure (a filesystem without the support) is
 * ignored, and the data stays correct either way. But one: waiting for a
 * step's writeback takes its write error (EIO, ENOSPC underneath) from
 * the descriptor's next fsync, which would then pass with the bytes
 * lost; pagecache_wrote hands that error to the writer. A writer whose
 * fsyncs run on another thread (the relay's checkpoints) gives it a second
 * descriptor of the file, opened before any write: Linux reports a write
 * error once to each open file, so the wait then takes nothing from the
 * fsync's. */
#ifndef CHUTE_PAGECACHE_H
#define CHUTE_PAGECACHE_H

#include <stdint.h>
#include <sys/types.h>

/* Pages are handed back in steps of this many bytes. */
#define PAGECACHE_STEP ((off_t)8 << 20)

/* A stream's position in handing back: bytes [0, released) are gone. */
typedef struct {
    off_t released;
} pagecache_stream;

/* A write of [off, end) happened on fd. When it filled a step, that step
 * starts going to disk (no wait) and the step two behind it, waited for
 * if still in flight, leaves the cache: the writer runs at most two steps
 * ahead of the disk, and an fsync at the end finds little left to do.
 * While the file is followed (below), what its follower has still to
 * read stays, up to pagecache_follow_window() behind the writer.
 * 0, or -errno if writing the file back failed: bytes written before are
 * lost (the writer must treat the file as failed; a later fsync will not
 * say so), and nothing was dropped from the cache. */
int pagecache_wrote(int fd, off_t off, off_t end);

/* A reader that reads a file while it is being written, a little behind
 * the writer (the relay's owner downloading an item as it is uploaded).
 * Dropped behind the writer, those pages were read back from the disk by
 * the follower (measured: 1 GiB of reads for a 1 GiB arrival, and ~5 %
 * slower end to end). Following at pos, the writer keeps [pos, end) in
 * the cache, up to the window; the follower drops behind itself
 * (pagecache_read_to). Its hold outlives pagecache_unfollow by
 * PAGECACHE_FOLLOW_GRACE_MS, for the next request of a reader that
 * follows in several. NULL (nothing held) if fd is no file or the table
 * is full. Thread-safe; several followers of a file hold from the
 * lowest position. */
#define PAGECACHE_FOLLOW_GRACE_MS 1000
typedef struct pagecache_follower pagecache_follower;
pagecache_follower *pagecache_follow(int fd, off_t pos);
void pagecache_follow_at(pagecache_follower *f, off_t pos);
void pagecache_unfollow(pagecache_follower *f);
/* The most a followed file keeps: 1/32 of the RAM, 16 MiB to 512 MiB,
 * for each such file (clean pages, which the kernel reclaims at need; a
 * hold whose slot another file took once it ran out is left to it too). */
off_t pagecache_follow_window(void);
/* For tests: another window (bytes, a multiple of the step); 0 restores. */
void pagecache_set_follow_window(off_t bytes);

/* [s->released, durable) of fd is on disk (after an fsync): hand it back
 * once it amounts to a step. */
void pagecache_synced(pagecache_stream *s, int fd, off_t durable);

/* A sequential reader is at pos of fd: hand back what lies a step behind. */
void pagecache_read_to(pagecache_stream *s, int fd, off_t pos);

#endif
