/* inbox.h — the FUSE operations under inbox/<peer>/: files received from
 * the peer, served from the cache (lib/cache.h) with random access.
 * Readable, deletable, renamable within the peer's inbox; everything that
 * would change content is refused (EACCES), attribute changes too (EPERM). */
#ifndef CHUTEFS_INBOX_H
#define CHUTEFS_INBOX_H

#define FUSE_USE_VERSION 312
#include <fuse.h>

#include "chutefs.h"

int inbox_getattr(chutefs *fs, const char *peer, const char *rel, struct stat *st);
/* Of an open file, by its handle: it may have been removed since. */
int inbox_getattr_open(chutefs *fs, struct fuse_file_info *fi, struct stat *st);
int inbox_readdir(chutefs *fs, const char *peer, const char *rel, void *buf,
                  fuse_fill_dir_t filler);
int inbox_open(chutefs *fs, const char *peer, const char *rel,
               struct fuse_file_info *fi);
int inbox_read(chutefs *fs, char *buf, size_t size, off_t off,
               struct fuse_file_info *fi);
int inbox_release(chutefs *fs, struct fuse_file_info *fi);
int inbox_unlink(chutefs *fs, const char *peer, const char *rel);
int inbox_rmdir(chutefs *fs, const char *peer, const char *rel);
int inbox_rename(chutefs *fs, const char *peer, const char *from, const char *to,
                 unsigned int flags);

#endif
