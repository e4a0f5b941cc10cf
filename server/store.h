/* store.h — the relay's metadata: inboxes, senders, items, pairing sessions.
 *
 * This is the one interface to metadata storage (SQLite today; DESIGN §5
 * plans PostgreSQL as a second implementation). Every function is one
 * transaction and thread-safe. Token hashes are SHA-256 (32 bytes); ids are
 * NUL-terminated strings already validated by relay_wire.h. */
#ifndef CHUTED_STORE_H
#define CHUTED_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay_wire.h"
#include "status.h"

#define STORE_HASH_LEN 32

typedef struct store store;

typedef enum {
    ITEM_UPLOADING = 0, ITEM_PENDING, ITEM_DELIVERED, ITEM_EXPIRED, ITEM_CANCELLED,
    ITEM_REJECTED       /* the owner took it down as failing its checks */
} item_state;
const char *item_state_name(item_state st);

typedef enum { ROLE_NONE = 0, ROLE_OWNER, ROLE_SENDER } store_role;

typedef struct {
    char id[RELAY_ITEM_ID_MAX + 1];
    char sender[RELAY_ID_CHARS + 1];
    item_state state;
    bool deferred;          /* size and meta not declared yet (size 0, meta NULL) */
    uint64_t size, offset, seq;
    int64_t created, expires;
    uint8_t *meta;          /* malloc'd; NULL for tombstones */
    size_t meta_len;
} store_item;

typedef struct {
    uint64_t items, bytes, senders;
} store_inbox_info;

typedef enum { PAIR_WAITING = 0, PAIR_CLAIMED, PAIR_CLOSED } pair_state;

typedef struct {
    uint64_t seq;
    uint8_t *body;          /* malloc'd */
    size_t len;
} store_message;

/* Called for each item body that must go (inbox and item id). */
typedef void (*store_body_fn)(void *cls, const char *inbox, const char *item);

chute_status store_open(const char *path, store **out);
void store_close(store *s);

/* --- inboxes and senders ---------------------------------------------- */
chute_status store_inbox_create(store *s, const char *inbox,
                                const uint8_t owner_hash[STORE_HASH_LEN], int64_t now);
/* Who holds this token on this inbox. ROLE_NONE (and CHUTE_OK) for nobody,
 * including a missing inbox. The owner's hash is compared in constant
 * time, a sender's is looked up by index. */
chute_status store_inbox_auth(store *s, const char *inbox,
                              const uint8_t hash[STORE_HASH_LEN], store_role *role,
                              char sender[RELAY_ID_CHARS + 1]);
chute_status store_inbox_info_get(store *s, const char *inbox, store_inbox_info *out);
/* Deletes the inbox, senders and items; `each` runs for every item after
 * the transaction committed. */
chute_status store_inbox_delete(store *s, const char *inbox, store_body_fn each,
                                void *cls);
/* CHUTE_ERR_LIMIT when the inbox has max_senders already. */
chute_status store_sender_create(store *s, const char *inbox, const char *sender,
                                 const uint8_t hash[STORE_HASH_LEN], int64_t now,
                                 uint64_t max_senders);
/* CHUTE_ERR_NOT_FOUND when there is no such sender. */
chute_status store_sender_delete(store *s, const char *inbox, const char *sender);

/* --- items -------------------------------------------------------------- */
/* CHUTE_ERR_NOT_FOUND when absent; *out's meta is malloc'd. */
chute_status store_item_get(store *s, const char *inbox, const char *item,
                            store_item *out);
void store_item_clear(store_item *it);
void store_items_free(store_item *items, size_t n);

typedef struct {
    bool deferred;          /* size and meta come later (store_item_declare) */
    uint64_t size;
    const uint8_t *meta;
    size_t meta_len;
    int64_t now, expires;
    uint64_t quota_items, quota_bytes;
} store_item_new;

/* Create an item (a size-0 item that is not deferred is committed at once).
 * *created false when an identical item existed (then *out is it; for a
 * deferred create: a deferred item of this sender). CHUTE_ERR_EXISTS: same
 * id, other size/meta/sender, deferred or not as asked, or a tombstone (*out
 * is what exists); CHUTE_ERR_LIMIT: over a quota. The byte quota counts
 * declared sizes, and the durable offsets of deferred items. */
chute_status store_item_create(store *s, const char *inbox, const char *item,
                               const char *sender, const store_item_new *n,
                               bool *created, store_item *out);
/* Fix the size and meta (n->size, n->meta) of this sender's deferred,
 * uploading item; it stays uploading (store_item_commit completes it if its
 * offset is the size). *declared false when the item was already declared
 * with this size and meta (nothing changes). CHUTE_ERR_EXISTS: anything else
 * under the id, or its durable offset is past n->size (*out is the item);
 * CHUTE_ERR_LIMIT: n->size instead of its offset would go over the byte
 * quota; CHUTE_ERR_NOT_FOUND: no such item. */
chute_status store_item_declare(store *s, const char *inbox, const char *item,
                                const char *sender, const store_item_new *n,
                                bool *declared, store_item *out);
/* Record a durable offset of an uploading item (at most its size unless it
 * is deferred). CHUTE_ERR_NOT_FOUND when the item is no longer uploading,
 * or its sender no longer granted (revoked during the upload). */
chute_status store_item_set_offset(store *s, const char *inbox, const char *item,
                                   uint64_t offset);
/* Lower an uploading item's offset to what its body really holds (at
 * start, after the disk lost its end), whether or not its sender is still
 * granted; CHUTE_ERR_NOT_FOUND when it is not above. */
chute_status store_item_rewind_offset(store *s, const char *inbox, const char *item,
                                      uint64_t offset);
/* Commit an uploading, declared item whose offset reached its size: it gets
 * the next sequence number. CHUTE_ERR_NOT_FOUND when it is not in that state. */
chute_status store_item_commit(store *s, const char *inbox, const char *item,
                               uint64_t *seq);
/* Turn a live item into a tombstone of `to` (delivered or cancelled) that
 * lives until tomb_expires. *was is the state before; live states change,
 * tombstones stay as they are. */
chute_status store_item_retire(store *s, const char *inbox, const char *item,
                               item_state to, int64_t tomb_expires, item_state *was);
/* Committed (or with `partial`, also uploading) items with seq > after,
 * in order, at most `limit`, and no more than `max_meta` bytes of meta
 * together (but at least one item, if there is one). */
chute_status store_item_list(store *s, const char *inbox, uint64_t after,
                             bool partial, int64_t now, size_t limit, size_t max_meta,
                             store_item **items, size_t *n);
/* Is there a live (uploading or pending) item with this id? */
chute_status store_item_live(store *s, const char *inbox, const char *item, bool *live);

/* --- pairing ------------------------------------------------------------ */
/* Allocate a session with a fresh nameplate (written to nameplate[]). */
chute_status store_pair_create(store *s, const char *session,
                               const uint8_t inviter_hash[STORE_HASH_LEN],
                               int64_t now, int64_t expires,
                               char nameplate[RELAY_NAMEPLATE_MAX + 1]);
/* First claim wins. NOT_FOUND unknown, EXPIRED, EXISTS already claimed,
 * REFUSED closed by its inviter before anyone claimed it. A claim makes
 * the session last until run_until at least (the code's expiry bounds the
 * time to claim it, not the run that follows); *expires is the session's
 * expiry after the claim. */
chute_status store_pair_claim(store *s, const char *nameplate,
                              const uint8_t joiner_hash[STORE_HASH_LEN], int64_t now,
                              int64_t run_until,
                              char session[RELAY_ID_CHARS + 1], int64_t *expires);
/* Which side (0 inviter, 1 joiner) holds the token. NOT_FOUND for none. */
chute_status store_pair_auth(store *s, const char *session,
                             const uint8_t hash[STORE_HASH_LEN], int *side,
                             pair_state *state, int64_t *expires);
/* EXPIRED when not claimed, closed or expired; LIMIT at max_messages. */
chute_status store_pair_send(store *s, const char *session, int side,
                             const uint8_t *body, size_t len, uint64_t max_messages,
                             int64_t now, uint64_t *seq);
/* The other side's messages after `after`, and the session's state. */
chute_status store_pair_receive(store *s, const char *session, int side,
                                uint64_t after, store_message **msgs, size_t *n,
                                pair_state *state, int64_t *expires);
void store_messages_free(store_message *m, size_t n);
chute_status store_pair_close(store *s, const char *session);

/* --- housekeeping ------------------------------------------------------- */
/* Expire items past their lifetime (each body goes through `each`), forget
 * tombstones past theirs, drop messages of expired sessions and sessions
 * expired longer than pair_grace. */
chute_status store_sweep(store *s, int64_t now, uint64_t tombstone_ttl,
                         uint64_t pair_grace, store_body_fn each, void *cls);
/* Uploading items with bytes committed (their bodies may have lost their
 * end since), and declared ones whose offset reached their size (a crash
 * between the last fsync, or the declare, and the commit). */
chute_status store_unfinished(store *s, store_body_fn each, void *cls);

typedef struct {
    uint64_t items, bytes, pairings;
} store_stats;
chute_status store_stats_get(store *s, int64_t now, store_stats *out);

#endif
