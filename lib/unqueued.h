/* unqueued.h — files a mount closed whole but could not queue.
 *
 * A seal can fail after the last close of a complete file (the queue's
 * database cannot grow on a full disk). chutefs then marks the staging
 * file, SPOOL/staging/<peer>/<path>, with the xattr UNQUEUED_XATTR and
 * seals it again later (fs/reseal.h). The mark lives on the file, so
 * whoever reads the state folder finds these files by a walk: the mount
 * after a restart, and `pairtool status`, which sees no queue row for
 * them. */
#ifndef CHUTE_UNQUEUED_H
#define CHUTE_UNQUEUED_H

#include <sys/stat.h>

#include "status.h"

#define UNQUEUED_XATTR "user.chute.unsealed"

/* peer and path (relative to the peer's folder) of one marked file, st its
 * lstat. st_nlink > 1 means it was queued after all (a kill came between
 * the seal and the mark's removal): the caller decides. Nonzero stops the
 * walk. */
typedef int (*unqueued_fn)(const char *peer, const char *path, const struct stat *st,
                           void *arg);

/* Calls fn for every marked regular file under staging (SPOOL/staging),
 * without following symlinks or crossing mounts. CHUTE_OK also when fn
 * stopped the walk; CHUTE_ERR_NOT_FOUND if a folder went away during the
 * walk (a rename or rmdir: walk again), CHUTE_ERR_IO on any other failure,
 * errno saying why; whatever fn was given before stands. */
chute_status unqueued_each(const char *staging, unqueued_fn fn, void *arg);

#endif
