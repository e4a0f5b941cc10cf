/* seal.h — turning a closed outbox file into a queued item.
 *
 * seal_file: fix how the file will be encrypted — a fresh file key and
 * nonce, and the age header to the peer's recipient — hard-link the
 * staging file to sealed/<id>.plain (fsync file and folder), seal its meta
 * under the link key, insert the queue row with the header, nonce and key
 * (synchronous=FULL), which replaces an active item at the same path. The
 * uploader encrypts as it sends (lib/age_source.h). When it returns
 * CHUTE_OK the file is durably queued: close() may return 0.
 *
 * seal_refresh_attrs: after chmod/utimens of a queued file, re-seal the
 * meta with the new mode and mtime if the upload has not begun. */
#ifndef CHUTEFS_SEAL_H
#define CHUTEFS_SEAL_H

#include "chutefs.h"

chute_status seal_file(chutefs *fs, const char *peer, const char *rel);
chute_status seal_refresh_attrs(chutefs *fs, const char *peer, const char *rel);

/* Cancel the active item at peer/rel, if any, and delete its sealed file
 * (.plain, not the staging file). */
void seal_cancel(chutefs *fs, const char *peer, const char *rel);

#endif
