/* staging.h — where outbox files live while written and until delivered:
 * <spool>/staging/<peer>/<relative path>, an ordinary local tree, so
 * writes at any offset, truncate and reads back behave like a local disk. */
#ifndef CHUTEFS_STAGING_H
#define CHUTEFS_STAGING_H

#include <stdbool.h>
#include <stddef.h>

#include "chutefs.h"

/* out = staging/<peer>/<rel> (rel "" → the peer's folder, made on demand).
 * -ENAMETOOLONG if it does not fit, -errno if the folder cannot be made. */
int staging_path(chutefs *fs, const char *peer, const char *rel, char *out,
                 size_t cap);

/* out = sealed/<id><ext>: ".plain" is an item's plaintext, a hard link to
 * its staging file as it was sealed; ".age" the finished blob of an item
 * queued by an earlier version. */
int sealed_path(chutefs *fs, const char *id, const char *ext, char *out,
                size_t cap);

/* Delete whatever sealed/ holds for item id (a missing file is fine). */
void sealed_unlink(chutefs *fs, const char *id);
/* Give what sealed/ holds for item old_id (.plain or .age) the name of
 * new_id too, durably (the folder is synced). 0 or -errno. */
int sealed_link(chutefs *fs, const char *old_id, const char *new_id);

/* The staging file at path shares its inode with a sealed item: put a
 * private inode there instead, renamed over it — empty (for O_TRUNC and
 * truncate to 0) or a copy of the content with the same mode and times.
 * The item keeps the old inode untouched. The caller holds the content
 * lock exclusive (ofiles.h). 0 or -errno. The copy is made in sealed/ as
 * cow-*.tmp (same filesystem, never listed; a crash leaves it to the
 * sweep). */
int staging_unshare(chutefs *fs, const char *path, bool keep_content);

/* For a file no longer at any path (unlinked, or replaced by a rename)
 * whose inode a sealed item still links: a private, nameless copy of the
 * inode open at fd (any access mode), empty or with the content; its fd
 * (read-write), or -errno. */
int staging_orphan_copy(chutefs *fs, int fd, bool keep_content);

/* A staging file a write to failed (a full disk) does not hold what was
 * written. The mark, an xattr on its inode, keeps it from being sealed
 * through closes, renames and remounts, until it is emptied. Setting it
 * can fail (a filesystem without user xattrs); the open file's record
 * (ofiles.h) still holds it until the last close. */
void staging_mark_cut(int fd);
bool staging_is_cut(int fd);
bool staging_is_cut_at(const char *path);
/* It was truncated to 0: written anew from here. */
void staging_clear_cut(int fd);
void staging_clear_cut_at(const char *path);

/* A staging file closed whole whose seal failed (a full disk under the
 * queue): the mark says its content is complete and owed a seal, so it is
 * sealed again later, after a remount too (fs/reseal.h). Set only while no
 * handle has the file open; cleared before the first change through a
 * handle (the next close seals that), and by a seal (on the .plain link,
 * the same inode). staging_mark_unsealed_at: false (said on stderr) if the
 * filesystem refused the mark. */
bool staging_mark_unsealed_at(const char *path);
bool staging_is_unsealed(int fd);
bool staging_is_unsealed_at(const char *path);
void staging_clear_unsealed(int fd);
void staging_clear_unsealed_at(const char *path);

/* fsync a folder so a rename or create in it is durable. */
int fsync_dir(const char *dir);

#endif
