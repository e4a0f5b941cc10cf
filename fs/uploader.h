/* uploader.h — the sender half of the drop folder: background threads that
 * take sealed items from the queue to the relay and follow them there.
 *
 * Threads (all started by uploader_start, after the mount is up; none of
 * them is waited for by a FUSE call):
 *
 *   UPLOADER_WORKERS upload workers, each with its own relay_client: claim
 *   the oldest due queued item, create it on the peer's inbox (idempotent),
 *   append the blob from the relay's durable offset in chunks, recording
 *   progress, then mark it uploaded. Woken at once by uploader_wake (a
 *   seal) and every second by a timer for items whose retry time came.
 *
 *   one tracker: boot (own devstate handle, requeue items a kill left
 *   uploading), then loop: relay DELETEs owed by cancelled items, delivery
 *   checks of items on the relay (each item polled from every 1 s backing
 *   off to every 60 s), a relay health probe while the relay is not known
 *   to answer, and once, a few seconds after start, a sweep of orphaned
 *   sealed blobs.
 *
 * Failures keep the item: network errors retry with exponential backoff
 * and jitter (1 s → 5 min), a refusal by the relay (peer unpaired us,
 * quota, too large) with a long backoff and a clear last error.
 *
 * CHUTE_UPLOADER=off in the environment leaves the uploader out (the mount
 * then never talks to the relay; for tests of the mount's local
 * behaviour). */
#ifndef CHUTEFS_UPLOADER_H
#define CHUTEFS_UPLOADER_H

#include <stddef.h>

#include "chutefs.h"

#define UPLOADER_WORKERS 3

typedef struct uploader uploader;

/* Start the threads; *out is NULL (and CHUTE_OK returned) when disabled by
 * the environment. Does no I/O itself: the threads do. */
chute_status uploader_start(chutefs *fs, uploader **out);

/* Stop and join every thread, free everything. NULL is a no-op. An item
 * being sent stays "uploading" in the queue and is resumed from the
 * relay's offset at the next start. */
void uploader_stop(uploader *up);

/* Something changed in the queue (an item was sealed or cancelled): wake
 * the threads now. NULL is a no-op. */
void uploader_wake(uploader *up);

#endif
