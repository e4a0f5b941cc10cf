/* ofiles.h — which outbox files are open, and whether they changed.
 *
 * A file is sealed when its last writer closes it, so the mount counts the
 * open handles of each file (by peer and path) and remembers whether any
 * handle wrote to it since the last seal. Renames move the record with the
 * file; an unlinked file is never sealed. All access under ofiles_lock.
 *
 * The content lock (a reader-writer lock, separate from ofiles_lock) keeps
 * a queued item's plaintext — a hard link to the staging file — from
 * changing: writes and truncates through a handle hold it shared; whatever
 * links a staging inode to an item or puts another inode at a staging path
 * (seal, copy-on-write, rename, unlink, truncate by name, open with
 * O_TRUNC) holds it exclusive. So a seal never links an inode a write is
 * in flight on, and a write never lands in an inode a seal has linked.
 * Order: content lock, then ofiles_lock. */
#ifndef CHUTEFS_OFILES_H
#define CHUTEFS_OFILES_H

#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "status.h"

typedef struct ofile {
    char *peer;
    char *path;          /* relative to outbox/<peer>/ */
    int opens;
    int writers;         /* of the opens, handles that may write: the last of
                            them to close seals (a reader open meanwhile, a
                            preview or `tail -f`, does not hold it up) */
    int writers_releasing;
    int writers_flushed; /* of the writers, handles closed (flushed), not
                            written through since, release still to come */
    bool dirty;          /* written or truncated since the last seal */
    pid_t changer;       /* the process that did so last (fs/caller.h); 0: unknown */
    bool written;        /* a write landed since it was opened (not just created) */
    bool write_failed;   /* a write failed (a full disk): the content is not
                            what was written, so it is not sealed until it
                            is truncated to 0 and written anew */
    bool unsealed;       /* bears the not-queued mark (staging.h): cleared
                            before the first change through a handle */
    bool unlinked;
    int orphan_fd;       /* unlinked: the private copy its handles moved to
                            before a change (a queued item still links the
                            inode they had), -1 until then; owned */
    /* Its item was delivered while it was open: the inode sent (the one
     * below) is deleted at the last close if it is still at the path,
     * unchanged and not queued again. */
    bool delivered;
    dev_t delivered_dev;
    ino_t delivered_ino;
    ino_t ino;           /* the inode at the staging path, as the mount last put it */
    /* Sent while written (fs/growing.h): only while every write since the
     * file was opened went to its end, one at a time. */
    bool appending;
    bool grow_starting;  /* seal_grow_start runs for it */
    int writes_in_flight;
    unsigned long long append_end;   /* the file's size, as the writes made it */
    struct growing *g;   /* its early send, one reference; NULL if none */
    struct ofile *next;
} ofile;

typedef struct ofiles ofiles;

chute_status ofiles_new(ofiles **out);
void ofiles_free(ofiles *o);

void ofiles_lock(ofiles *o);
void ofiles_unlock(ofiles *o);
/* With ofiles_lock held: a handle's release has begun (wakes waiters);
 * wait for one until `until` (CLOCK_MONOTONIC), false once it passed. */
void ofiles_note_release(ofiles *o);
bool ofiles_wait_release(ofiles *o, const struct timespec *until);

void ofiles_content_shared(ofiles *o);
void ofiles_content_excl(ofiles *o);
void ofiles_content_unlock(ofiles *o);

/* With the lock held: */
ofile *ofiles_find(ofiles *o, const char *peer, const char *path);
/* Find or add, and count one more open; NULL on allocation failure. */
ofile *ofiles_acquire(ofiles *o, const char *peer, const char *path);
/* Count one close; frees the record at zero and returns the count left. */
int ofiles_release(ofiles *o, ofile *f);
/* The file or folder `from` is now `to` (descendants follow). */
chute_status ofiles_move(ofiles *o, const char *peer, const char *from, const char *to);

#endif
