/* outbox.h — the FUSE operations under outbox/<peer>/.
 *
 * Every call gets the peer (already known to be paired) and the path
 * relative to the peer's folder ("" for the folder itself) and returns 0
 * or -errno. Files are served from the staging tree; a file is sealed at
 * its last close unless its name is temporary, and on a rename to a
 * normal name. The entry stays listed until delivered (outbox_delivered). */
#ifndef CHUTEFS_OUTBOX_H
#define CHUTEFS_OUTBOX_H

#define FUSE_USE_VERSION 312
#include <fuse.h>

#include "chutefs.h"

int outbox_getattr(chutefs *fs, const char *peer, const char *rel, struct stat *st,
                   struct fuse_file_info *fi);
int outbox_readdir(chutefs *fs, const char *peer, const char *rel, void *buf,
                   fuse_fill_dir_t filler);
int outbox_mkdir(chutefs *fs, const char *peer, const char *rel, mode_t mode);
int outbox_rmdir(chutefs *fs, const char *peer, const char *rel);
int outbox_create(chutefs *fs, const char *peer, const char *rel, mode_t mode,
                  struct fuse_file_info *fi);
int outbox_open(chutefs *fs, const char *peer, const char *rel,
                struct fuse_file_info *fi);
int outbox_read(chutefs *fs, char *buf, size_t size, off_t off,
                struct fuse_file_info *fi);
int outbox_write(chutefs *fs, const char *buf, size_t size, off_t off,
                 struct fuse_file_info *fi);
int outbox_truncate(chutefs *fs, const char *peer, const char *rel, off_t size,
                    struct fuse_file_info *fi);
/* fallocate(2) through an open handle, passed to the staging file: a
 * change (sealed at close) unless it only reserves blocks (KEEP_SIZE). */
int outbox_fallocate(chutefs *fs, int mode, off_t off, off_t len, struct fuse_file_info *fi);
int outbox_flush(chutefs *fs, struct fuse_file_info *fi);
int outbox_release(chutefs *fs, struct fuse_file_info *fi);
int outbox_fsync(chutefs *fs, int datasync, struct fuse_file_info *fi);
int outbox_unlink(chutefs *fs, const char *peer, const char *rel);
int outbox_rename(chutefs *fs, const char *peer, const char *from, const char *to,
                  unsigned int flags);
int outbox_chmod(chutefs *fs, const char *peer, const char *rel, mode_t mode,
                 struct fuse_file_info *fi);
int outbox_utimens(chutefs *fs, const char *peer, const char *rel,
                   const struct timespec tv[2], struct fuse_file_info *fi);
int outbox_getxattr(chutefs *fs, const char *peer, const char *rel,
                    const char *name, char *value, size_t size);

/* The later uploader calls this after queue_mark_delivered: the staging
 * copy and the blob go, so the entry leaves the outbox — unless the file
 * is open or a newer item has replaced it at that path. */
void outbox_delivered(chutefs *fs, const queue_item *it);

#endif
