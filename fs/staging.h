/* staging.h — where outbox files live while written and until delivered:
 * <spool>/staging/<peer>/<relative path>, an ordinary local tree, so
 * writes at any offset, truncate and reads back behave like a local disk. */
#ifndef CHUTEFS_STAGING_H
#define CHUTEFS_STAGING_H

#include <stddef.h>

#include "chutefs.h"

/* out = staging/<peer>/<rel> (rel "" → the peer's folder, made on demand).
 * -ENAMETOOLONG if it does not fit, -errno if the folder cannot be made. */
int staging_path(chutefs *fs, const char *peer, const char *rel, char *out,
                 size_t cap);

/* out = sealed/<id>.age (suffix ".tmp" while being written). */
int sealed_path(chutefs *fs, const char *id, const char *suffix, char *out,
                size_t cap);

/* fsync a folder so a rename or create in it is durable. */
int fsync_dir(const char *dir);

#endif
