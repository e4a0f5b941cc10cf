/* syncer.h — a long PATCH's checkpoints, made in the background.
 *
 * A checkpoint (fdatasync of the body, then its offset committed to the
 * store) took the connection's worker thread for milliseconds every
 * CHECKPOINT_BYTES, stalling the upload and every other connection on that
 * worker. A body_syncer makes it on a thread of its own while the worker
 * goes on writing: the offset committed is still one whose bytes were
 * durable first, so "acknowledged means durable" holds as before. */
#ifndef CHUTED_SYNCER_H
#define CHUTED_SYNCER_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"

typedef struct body_syncer body_syncer;

/* Makes the first `offset` bytes of the body durable, then records that
 * offset; CHUTE_OK only if both happened. Runs on the syncer's thread. */
typedef chute_status (*syncer_checkpoint_fn)(void *arg, uint64_t offset);

/* A syncer; its thread starts at the first checkpoint offered. */
chute_status body_syncer_new(syncer_checkpoint_fn checkpoint, void *arg, body_syncer **out);
/* Run checkpoint(offset) in the background (here and now if no thread can
 * be started). false, with nothing done, while the previous checkpoint is
 * still in progress, or if it ran here and failed: offer again later. */
bool body_syncer_offer(body_syncer *s, uint64_t offset);
/* Wait for the checkpoint in progress, stop the thread, free. NULL: no-op. */
void body_syncer_free(body_syncer *s);

#endif
