/* receive.h — checking what arrived from a peer before anyone sees it.
 *
 * receive_open_meta: the item's sealed meta (base64 from the relay listing)
 * opened with the link key of the peer that sent it (PROTOCOL §8).
 *
 * receive_begin / receive_feed / receive_finish: the blob, fed in order as
 * it arrives (from the network or a partial file), stream-decrypted with
 * this device's age identity straight into the cache (cache_item_begin/
 * append, invisible), and committed in one transaction by receive_finish
 * only if its age header MAC equals the meta's, its plaintext size equals
 * the meta's and every chunk authenticated. The chunks are stored by a
 * thread of their own (fs/storer.h) while the next are decrypted; memory
 * stays bounded (its 8 MiB of slots) whatever the size.
 *
 * Both tell a refusal (the item is bad: *reason says why, for people, and
 * it must be quarantined) from a local failure (*reason stays NULL: disk,
 * database, memory — try again later). */
#ifndef CHUTEFS_RECEIVE_H
#define CHUTEFS_RECEIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "age_keys.h"
#include "cache.h"
#include "devstate.h"
#include "meta.h"
#include "status.h"

chute_status receive_open_meta(const char *meta_b64, const devstate_peer *peer,
                               const char *item, const char *my_recipient,
                               chute_meta *m, const char **reason);

typedef struct receiving receiving;

/* m and id must outlive the receiving. m is NULL for an item whose size
 * and meta are not declared yet (deferred, PROTOCOL §6.5): its chunks are
 * decrypted and stored, but it can only be suspended, and is finished by
 * a resume that has the meta (which checks the header MAC then).
 * CHUTE_ERR_EXISTS: the item was
 * committed before. resume: keep the whole chunks an earlier try stored
 * (receive_stored_chunks), to be skipped once the header is fed again
 * (receive_skip_stored), but never the last one of the meta's size nor,
 * if blob_chunks (the blob's chunk count, 0: not known) says so, of the
 * blob's; otherwise they are dropped. */
chute_status receive_begin(cache *c, const char *peer, const char *item,
                           const chute_meta *m, const age_identity *id,
                           bool resume, uint64_t blob_chunks, receiving **out);
uint64_t receive_stored_chunks(const receiving *r);
/* Where the blob's payload begins; CHUTE_ERR_NOT_FOUND until the header
 * and nonce have been fed. */
chute_status receive_payload_start(const receiving *r, uint64_t *offset);
/* Right after the header and nonce (and nothing more) were fed: go on
 * after the stored chunks; *resume_at is the blob offset to feed next. */
chute_status receive_skip_stored(receiving *r, uint64_t *resume_at);
/* The next len bytes of the blob; after a refusal, abort. */
chute_status receive_feed(receiving *r, const uint8_t *in, size_t len,
                          const char **reason);
/* The first len bytes of fd (fewer if it is shorter). */
chute_status receive_feed_fd(receiving *r, int fd, uint64_t len, const char **reason);
/* The blob is whole: verify its end and commit. Frees r, whatever the
 * result. final_path gets the sanitized, collision-free path under
 * inbox/<peer>/. */
chute_status receive_finish(receiving *r, char *final_path, size_t cap,
                            const char **reason);
/* Throw away what was fed (nothing was visible). NULL is a no-op. */
void receive_abort(receiving *r);
/* Stop for now (a dropped connection, unmount): keep the whole chunks
 * stored for a resume. Frees r. */
void receive_suspend(receiving *r);

#endif
