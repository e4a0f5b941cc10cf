/* prealloc.h — reserving disk blocks ahead of a file that grows.
 *
 * A write that extends a file into blocks not yet allocated costs ext4
 * (and the other filesystems with delayed allocation) more CPU per page
 * than one into blocks reserved beforehand: measured here, 1 GiB written
 * in 1 MiB steps took 0.37–0.48 s of system time, 0.25 s with the blocks
 * reserved 16 MiB ahead. Chute writes every big file three times (outbox,
 * relay, inbox), on the CPUs its transfer needs; so a file that grows past
 * a step gets the next two reserved (FALLOC_FL_KEEP_SIZE: its size does
 * not change), and what is still reserved beyond its end when its writer
 * is done is given back (prealloc_trim).
 *
 * Advice, like pagecache.h: a filesystem without fallocate, or one with
 * less than PREALLOC_MIN_FREE free, goes without, and the data is the same
 * either way. Small files (below one step) are never touched. */
#ifndef CHUTE_PREALLOC_H
#define CHUTE_PREALLOC_H

#include <stdbool.h>
#include <sys/types.h>

#include "status.h"

#define PREALLOC_STEP ((off_t)8 << 20)
/* Reserve only while this much stays free: a reservation must never be
 * what fills a disk. */
#define PREALLOC_MIN_FREE ((unsigned long long)1 << 30)

/* fd (open for writing) grew from old_end to new_end: when that crossed a
 * step, reserve the two steps after it. Nothing for a write inside the
 * file (its size is past new_end): the holes of a sparse file stay. */
void prealloc_grew(int fd, off_t old_end, off_t new_end);
/* The same for a file known never to pass `limit` bytes (an upload of a
 * declared size): nothing is reserved beyond it. */
void prealloc_grew_within(int fd, off_t old_end, off_t new_end, off_t limit);

/* Does fd hold blocks beyond its end (a reservation not given back)? */
bool prealloc_beyond_end(int fd);

/* Give back blocks reserved beyond the end of fd (open for writing). Only
 * while no one can extend the file: it is cut to the size it has now. */
chute_status prealloc_trim(int fd);

#endif
