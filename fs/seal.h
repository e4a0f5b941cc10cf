/* seal.h — turning a closed outbox file into a queued item.
 *
 * seal_file: fix how the file will be encrypted — a fresh file key and
 * nonce, and the age header to the peer's recipient — hard-link the
 * staging file to sealed/<id>.plain (fsync file and folder), seal its meta
 * under the link key, insert the queue row with the header, nonce and key
 * (synchronous=FULL), which replaces an active item at the same path. The
 * uploader encrypts as it sends (lib/age_source.h). When it returns
 * CHUTE_OK the file is durably queued: close() may return 0. A file
 * that was marked as owed a seal (staging.h) is no longer.
 *
 * seal_refresh_attrs: after chmod/utimens of a queued file, re-seal the
 * meta with the new mode and mtime if the upload has not begun. */
#ifndef CHUTEFS_SEAL_H
#define CHUTEFS_SEAL_H

#include "chutefs.h"
#include "growing.h"

/* An empty file is due this many seconds after its seal, not at once:
 * it may be a download's placeholder (see the uploader). */
#define SEAL_EMPTY_GRACE_S 2

chute_status seal_file(chutefs *fs, const char *peer, const char *rel);

/* seal_file for a retry (fs/reseal.h): CHUTE_ERR_NOT_FOUND unless the file
 * at the path still bears the not-queued mark (staging.h), checked under
 * the content lock, so a file changed since its close is never sealed
 * half rewritten. */
chute_status seal_file_marked(chutefs *fs, const char *peer, const char *rel);

/* Is a seal's failure one that a retry may get past (a full disk, a failed
 * write or allocation), not a refusal (a cut file, an unpaired peer)? */
bool seal_failure_passes(chute_status st);

/* Sending while written (fs/growing.h). seal_grow_start: peer/rel has
 * grown to `size` bytes by appends: fix its age parts, queue a growing row
 * and register it; *out gets the writer's reference. The caller holds the
 * content lock (shared or exclusive), so the inode at the path is the one
 * written. seal_file_grown: the last close of such a file, `size` bytes
 * long: the row is sealed under the same id if the file at the path is
 * the inode sent so far, with that size; otherwise g is cancelled and the
 * file sealed afresh (seal_file). Either way g's reference is let go of.
 * seal_grow_cancel: the file stopped being appended to: g ends cancelled
 * (its relay copy is deleted) and its reference is let go of. NULL is a
 * no-op. */
chute_status seal_grow_start(chutefs *fs, const char *peer, const char *rel,
                             uint64_t size, growing **out);
chute_status seal_file_grown(chutefs *fs, const char *peer, const char *rel,
                             growing *g, uint64_t size);
void seal_grow_cancel(chutefs *fs, growing *g);
chute_status seal_refresh_attrs(chutefs *fs, const char *peer, const char *rel);

/* it's sealed meta as the peer p is paired now, before it goes: kept if
 * it opens with p's link key. If the same device (recipient) was paired
 * again since (unpaired, then paired anew), the item takes a new id, its
 * meta is sealed again for it and it goes from byte 0 (what the relay
 * holds under the old id is the old pairing's): it is updated, and so is
 * the queue. CHUTE_ERR_REFUSED if it was sealed for another device (whose
 * header it could not open either), CHUTE_ERR_UNSUPPORTED if whom for is
 * unknown (a row queued by an earlier version, not tried since),
 * CHUTE_ERR_NOT_FOUND if it was cancelled meanwhile. */
chute_status seal_meta_for_pairing(chutefs *fs, queue_item *it, const devstate_peer *p);
/* it under a new id, its meta sealed anew for p (whose recipient its
 * header was made for), to go from byte 0: the queue row and the sealed
 * file follow, or nothing changes (CHUTE_ERR_NOT_FOUND: cancelled
 * meanwhile; CHUTE_ERR_TRUNCATED: its sealed file is missing). For an id the relay holds for another sender: an earlier
 * pairing's. */
chute_status seal_renew_id(chutefs *fs, queue_item *it, const devstate_peer *p);
/* Does it's sealed meta open with p's link key (the pairing it was made
 * for is p's current one)? */
bool seal_meta_is_current(const queue_item *it, const devstate_peer *p);

/* Cancel the active item at peer/rel, if any, and delete its sealed file
 * (.plain, not the staging file). */
void seal_cancel(chutefs *fs, const char *peer, const char *rel);

#endif
