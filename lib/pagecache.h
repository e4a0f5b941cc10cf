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
 * ignored, and the data stays correct either way. */
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
 * ahead of the disk, and an fsync at the end finds little left to do. */
void pagecache_wrote(int fd, off_t off, off_t end);

/* [s->released, durable) of fd is on disk (after an fsync): hand it back
 * once it amounts to a step. */
void pagecache_synced(pagecache_stream *s, int fd, off_t durable);

/* A sequential reader is at pos of fd: hand back what lies a step behind. */
void pagecache_read_to(pagecache_stream *s, int fd, off_t pos);

#endif
