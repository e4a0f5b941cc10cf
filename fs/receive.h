/* receive.h — checking what arrived from a peer before anyone sees it.
 *
 * receive_open_meta: the item's sealed meta (base64 from the relay listing)
 * opened with the link key of the peer that sent it (PROTOCOL §8).
 *
 * verify_and_store: the downloaded blob, stream-decrypted with this
 * device's age identity straight into the cache (cache_item_begin/append),
 * committed in one transaction only if its age header MAC equals the
 * meta's, its plaintext size equals the meta's and every chunk
 * authenticates. Memory stays bounded (a few 64 KiB buffers) whatever the
 * size.
 *
 * Both tell a refusal (the item is bad: *reason says why, for people, and
 * it must be quarantined) from a local failure (*reason stays NULL: disk,
 * database, memory — try again later). */
#ifndef CHUTEFS_RECEIVE_H
#define CHUTEFS_RECEIVE_H

#include <stddef.h>

#include "age_keys.h"
#include "cache.h"
#include "devstate.h"
#include "meta.h"
#include "status.h"

chute_status receive_open_meta(const char *meta_b64, const devstate_peer *peer,
                               const char *item, const char *my_recipient,
                               chute_meta *m, const char **reason);

/* CHUTE_ERR_EXISTS: the item was committed before (nothing changed).
 * final_path gets the sanitized, collision-free path under inbox/<peer>/. */
chute_status verify_and_store(cache *c, const char *peer, const char *item,
                              const chute_meta *m, int blob_fd,
                              const age_identity *id,
                              char *final_path, size_t cap, const char **reason);

#endif
