/* downloader.h — the background thread that brings items home.
 *
 * Started when the mount is up (the mount never waits on it), with its own
 * relay client, device-state and cache connections. It long-polls this
 * device's relay inbox (partial=1), so an item committed on the relay is
 * fetched at once — a big one already while it uploads — and for each
 * listed item:
 *
 *   sender → peer (granted_sender)   no such peer: left on the relay, logged
 *   seen or quarantined before?      only acknowledged again
 *   open the sealed meta             fails: quarantined
 *   download, verify, store          each piece decrypted into the cache;
 *     (receive.h, as it arrives)     the age header kept in
 *                                    spool/incoming/<item>.part; resumed after
 *                                    the chunks stored (Range); refused:
 *                                    quarantined; whole: committed
 *   ack (DELETE, owner token)        retried until the relay has it
 *
 * Network failures back off exponentially (capped, with jitter); the last
 * outcome is the status file's "relay:" line. Exactly once: a commit is
 * recorded in the cache (cache_seen) before the ack, so a crash between
 * the two only repeats the ack. */
#ifndef CHUTEFS_DOWNLOADER_H
#define CHUTEFS_DOWNLOADER_H

#include <stddef.h>

#include "chutefs.h"
#include "status.h"

typedef struct downloader downloader;

/* Starts the thread; *out is NULL on failure (the mount still works). */
chute_status downloader_start(chutefs *fs, downloader **out);
/* Ends the thread (a long-poll in flight gives up within about a second)
 * and frees everything. NULL is fine. */
void downloader_stop(downloader *d);
/* Items listed since the mount began whose sender is no current peer's:
 * left on the relay, unacknowledged. */
unsigned long downloader_unclaimed(const downloader *d);
/* Why downloads fail at the moment (a full disk, an error answer), for
 * the status file; "" while they work or while the relay is just down
 * (the status file's relay: line says that). */
void downloader_failing(downloader *d, char *buf, size_t cap);

#endif
