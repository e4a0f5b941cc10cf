/* blobs.h — item bodies: the one interface to body storage.
 *
 * Files under DATA/items/ today (DESIGN §5 plans S3 as a second
 * implementation). An item's body is "<inbox>.<item>.part" while it is
 * uploading and "<inbox>.<item>" once complete; a body is written only by
 * appending at its durable offset, and made durable by blob_writer_sync. */
#ifndef CHUTED_BLOBS_H
#define CHUTED_BLOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "status.h"

typedef struct blobs blobs;
typedef struct blob_writer blob_writer;

chute_status blobs_open(const char *data_dir, blobs **out);
void blobs_close(blobs *b);

/* Start appending to an uploading body at its durable `offset`: anything
 * beyond it (bytes written but never committed before a crash) is cut off.
 * The body never passes `limit` (its declared size): no disk is reserved
 * beyond it. CHUTE_ERR_IO if the stored body is shorter than `offset`. */
chute_status blob_append_begin(blobs *b, const char *inbox, const char *item,
                               uint64_t offset, uint64_t limit, blob_writer **out);
chute_status blob_write(blob_writer *w, const void *buf, size_t len);
/* fsync; afterwards blob_writer_offset bytes are durable. */
chute_status blob_writer_sync(blob_writer *w);
uint64_t blob_writer_offset(const blob_writer *w);
/* How many bytes an uploading body holds (0 when it has no file yet). */
chute_status blob_part_length(blobs *b, const char *inbox, const char *item, uint64_t *have);
/* Gives back the disk reserved beyond the body's end, and closes. */
void blob_writer_close(blob_writer *w);

/* Make a complete uploading body of `size` bytes final (rename, then fsync
 * the folder). Idempotent: succeeds if it is already final, once the folder
 * syncs (an earlier rename may not be durable yet). CHUTE_ERR_TRUNCATED
 * if it has fewer bytes (*have: how many; 0 if the file is gone): never an
 * empty or short body for an item that says more. */
chute_status blob_finish(blobs *b, const char *inbox, const char *item, uint64_t size,
                         uint64_t *have);

/* An fd open for reading the body (final, or uploading when not complete).
 * A missing body of an uploading item reads as empty (*fd = -1). */
chute_status blob_open_read(blobs *b, const char *inbox, const char *item,
                            bool complete, int *fd);

/* A body read in order from an offset, as a download does: what was read
 * leaves the page cache behind the reader (lib/pagecache.h), so serving a
 * big item does not fill the relay's memory. following: the body is still
 * being uploaded, and this reader follows it: the writer keeps what it has
 * yet to read in the cache (pagecache_follow). Takes over fd (closed by
 * blob_reader_free). */
typedef struct blob_reader blob_reader;
chute_status blob_reader_new(int fd, uint64_t first, bool following, blob_reader **out);
/* Up to max bytes from first + pos; 0 at the end of the file, -1 on error. */
ssize_t blob_reader_read(blob_reader *r, uint64_t pos, void *buf, size_t max);
void blob_reader_free(blob_reader *r);

/* Remove the body in any state; a missing body is fine. */
void blob_remove(blobs *b, const char *inbox, const char *item);

/* Remove bodies for which is_live(cls, inbox, item) says false. */
typedef bool (*blob_live_fn)(void *cls, const char *inbox, const char *item);
void blobs_remove_orphans(blobs *b, blob_live_fn is_live, void *cls);

#endif
