/* storer.h — storing decrypted chunks on a thread of their own.
 *
 * Receiving is download → decrypt → store; one thread doing all three
 * leaves the second CPU idle and waits out every batch's fsync. With a
 * storer the downloader decrypts into a slot, hands it on, and decrypts
 * the next while this thread appends the slot to the cache transaction
 * (cache_item_append). Slots are few (bounded memory), taken and stored
 * in order, and wiped when freed: they hold plaintext.
 *
 * When no slot comes for a moment (the download stalled), the storer
 * checkpoints what it stored (cache_item_checkpoint): durable for a
 * resume, and the chunk file no longer held by a half-done batch.
 *
 * The transaction belongs to the storer from storer_start until
 * storer_drain returns; only then may the caller commit, suspend or abort
 * it. A store failure is a local one (disk, database): it is returned by
 * every later call, and nothing after it is stored. */
#ifndef CHUTEFS_STORER_H
#define CHUTEFS_STORER_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "status.h"

#define STORER_SLOT_BYTES 65536

typedef struct storer storer;

chute_status storer_start(cache_txn *t, storer **out);
/* A free slot of STORER_SLOT_BYTES to decrypt into (waits for one). */
chute_status storer_slot(storer *s, uint8_t **buf);
/* Store the slot storer_slot gave, holding n bytes (0: give it back). */
chute_status storer_put(storer *s, size_t n);
/* Wait until every slot put is stored; the first failure, if any. */
chute_status storer_drain(storer *s);
/* Drain, stop the thread, wipe the slots. NULL is a no-op. */
void storer_free(storer *s);

#endif
