/* sweeper.h — housekeeping: startup recovery and a background thread that
 * expires items, forgets tombstones and pairing sessions, and removes item
 * bodies nothing refers to. */
#ifndef CHUTED_SWEEPER_H
#define CHUTED_SWEEPER_H

#include "blobs.h"
#include "config.h"
#include "status.h"
#include "store.h"

typedef struct sweeper sweeper;

/* Before serving: finish items whose last bytes were durable but whose
 * commit was cut short, take back the offsets of uploads whose bodies are
 * shorter, and remove orphaned bodies. */
chute_status sweeper_recover(store *st, blobs *bl);

chute_status sweeper_start(store *st, blobs *bl, const relay_config *cfg, sweeper **out);
void sweeper_stop(sweeper *sw);

#endif
