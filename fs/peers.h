/* peers.h — the mount's view of the paired peers.
 *
 * The list lives in the device state DB (pairtool writes it). It is cached
 * here and re-read only when SQLite's data_version says another connection
 * committed, so pairing or unpairing while mounted shows up at the next
 * listing without a remount, and a lookup costs one PRAGMA. */
#ifndef CHUTEFS_PEERS_H
#define CHUTEFS_PEERS_H

#include <stdbool.h>

#include "devstate.h"
#include "status.h"

typedef struct peers peers;

chute_status peers_open(devstate *ds, peers **out);
void peers_close(peers *p);

/* Re-read the list if the DB changed since the last read. */
void peers_refresh(peers *p);

/* Is name a paired peer now? (refreshes first) */
bool peers_has(peers *p, const char *name);

/* A copy of the peer, secrets included; wipe it with devstate_peer_wipe. */
chute_status peers_get(peers *p, const char *name, devstate_peer *out);

/* fn(name) for each peer, in name order (refreshes first). */
void peers_each(peers *p, void (*fn)(const char *name, void *arg), void *arg);

/* fn(name, relay_url) for each peer, in name order (refreshes first); fn
 * must not call back into p. */
void peers_each_relay(peers *p, void (*fn)(const char *name, const char *relay_url, void *arg),
                      void *arg);

#endif
