/* growing.h — files sent while they are still being written.
 *
 * A file in the outbox that has grown past GROWING_MIN_BYTES by appends
 * alone starts going before its last close: the outbox fixes its file key,
 * nonce and age header, queues a growing row (lib/queue.h) and registers
 * it here; an upload worker creates the item on the relay with a deferred
 * length and sends each age chunk once the file has grown past it (the
 * last chunk's flag needs the end). At the last close the row is sealed
 * under the same id (seal.c) and the worker finishes it as any item.
 * Anything else — a write elsewhere than the end, a truncate, an unlink,
 * a temporary name, a failed write — ends it cancelled: the item is
 * deleted from the relay and the file goes the usual way at its close.
 *
 * The table is shared by the FUSE threads (writers) and the upload workers
 * (readers); every call is thread-safe. An entry lives until both sides
 * have let go of it. */
#ifndef CHUTEFS_GROWING_H
#define CHUTEFS_GROWING_H

#include <stdbool.h>
#include <stdint.h>

#include "queue.h"
#include "status.h"

/* Below this a file is sent at its close: a small file is written in
 * milliseconds, and a relay round trip would only slow it down. */
#define GROWING_MIN_BYTES (8u << 20)

typedef enum { GROWING_OPEN = 0, GROWING_SEALED, GROWING_CANCELLED } growing_end;

typedef struct growing growing;
typedef struct growing_table growing_table;

chute_status growing_table_new(growing_table **out);
/* Every entry must have been let go of. NULL is fine. */
void growing_table_free(growing_table *t);

/* Register item id, whose plaintext is read from fd (taken over: closed
 * when the entry goes) and is `size` bytes long so far. The caller holds
 * one reference. */
chute_status growing_add(growing_table *t, const char *id, int fd, uint64_t size,
                         growing **out);
/* A reference to item id's entry, or NULL if it has none. */
growing *growing_find(growing_table *t, const char *id);
/* One more reference to g (the caller holds one already). */
void growing_ref(growing *g);
void growing_release(growing_table *t, growing *g);

const char *growing_id(const growing *g);
int growing_fd(const growing *g);

/* The writer: the file is now `size` bytes, all written in order. */
void growing_grew(growing *g, uint64_t size);
/* The writer: sealed under this id (final size `size`), or cancelled. */
void growing_finish(growing *g, growing_end how, uint64_t size);

/* The sender: wait up to timeout_ms for the file to reach `want` bytes or
 * to end; returns how it stands and its size now. */
growing_end growing_wait(growing *g, uint64_t want, int timeout_ms, uint64_t *size);

#endif
