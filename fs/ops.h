/* ops.h — the fuse_operations table: route a path to the outbox, the
 * inbox, the status file or the fixed folders. */
#ifndef CHUTEFS_OPS_H
#define CHUTEFS_OPS_H

#define FUSE_USE_VERSION 312
#include <fuse.h>

extern const struct fuse_operations chutefs_ops;

#endif
