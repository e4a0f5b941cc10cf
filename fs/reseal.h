/* reseal.h — closed files the queue could not take, sealed again.
 *
 * A seal can fail after a file was written whole and closed: the queue's
 * database could not grow (a full disk), a write or fsync failed. close(2)
 * said so, but nothing else would ever send the file. Once no handle has
 * it open, the mount marks it (staging_mark_unsealed_at) and notes it
 * here; one thread seals it again (seal_file_marked), 1 s after the
 * failure, then backing off to every 30 s, until it is queued, changed
 * (its next close seals it), moved away or deleted. At start the thread
 * first finds the files an earlier run marked, by a walk of the staging
 * tree — after the mount is up, never holding a FUSE call up.
 *
 * The mount's status file lists the files still owed a seal, with why. */
#ifndef CHUTEFS_RESEAL_H
#define CHUTEFS_RESEAL_H

#include <stdbool.h>
#include <stddef.h>

#include "chutefs.h"

typedef struct resealer resealer;

chute_status resealer_start(chutefs *fs, resealer **out);
/* Ends the thread and frees r; NULL is a no-op. */
void resealer_stop(resealer *r);

/* peer/rel was marked after a seal failed for `why`. */
void resealer_note(resealer *r, const char *peer, const char *rel, chute_status why);
/* A rename moved peer/from (a file, or a folder and all below it) to to. */
void resealer_move(resealer *r, const char *peer, const char *from, const char *to);
/* peer/rel was deleted. */
void resealer_forget(resealer *r, const char *peer, const char *rel);

/* Why peer/rel is still owed a seal, into out; false if it is not noted. */
bool resealer_error(resealer *r, const char *peer, const char *rel, char *out, size_t cap);
/* "" or a block for the status file: a heading, then one line per file
 * still marked ("peer/path\tnot queued\tlast error: ..."). */
chute_status resealer_text(resealer *r, char **out);

#endif
