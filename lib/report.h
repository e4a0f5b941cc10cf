/* report.h — the status of a device in words: the mount's `status` file
 * and `pairtool status --json` print the same facts from here.
 *
 * Counters (as in the seed's picture): outgoing = items sealed but not yet
 * whole on the relay; on_relay = uploaded, waiting for the peer; incoming =
 * downloads in progress; stored = files in the inbox cache. Then every
 * pending outgoing item with its state, progress and last error; then
 * the files sent while still being written ("writing:", with the bytes
 * of each on the relay so far). */
#ifndef CHUTE_REPORT_H
#define CHUTE_REPORT_H

#include <stddef.h>

#include "cache.h"
#include "queue.h"
#include "status.h"

/* The user-visible state of an item: "queued", "uploading 42%",
 * "on relay", "delivered", "cancelled" (also the xattr user.chute.state). */
const char *report_state_text(const queue_item *it, char *buf, size_t cap);

/* relay: "unknown", "reachable" or "unreachable". Each returns a malloc'd
 * NUL-terminated string in *out (free it). */
/* c may be NULL: no cache made yet, counted as empty. */
chute_status report_text(queue *q, cache *c, const char *relay, char **out);
chute_status report_json(queue *q, cache *c, const char *relay, char **out);

#endif
