/* statusfile.h — MOUNT/status: read-only text from lib/report.h, a
 * snapshot taken at open so one read-through sees one consistent text. */
#ifndef CHUTEFS_STATUSFILE_H
#define CHUTEFS_STATUSFILE_H

#define FUSE_USE_VERSION 312
#include <fuse.h>

#include "chutefs.h"

int statusfile_getattr(chutefs *fs, struct stat *st);
int statusfile_open(chutefs *fs, struct fuse_file_info *fi);
int statusfile_read(char *buf, size_t size, off_t off, struct fuse_file_info *fi);
int statusfile_release(struct fuse_file_info *fi);

#endif
