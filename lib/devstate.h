/* devstate.h — a device's own state: who it is, where its inbox is, and
 * whom it is paired with.
 *
 * The state folder (pairtool -H DIR, $CHUTE_HOME, else
 * $XDG_DATA_HOME/chute, else ~/.local/share/chute) is made 0700 (an
 * existing one must be writable by its owner, this user, alone) and holds
 * `state.db`, an SQLite database of mode 0600 (its WAL and shm files get
 * the same mode from SQLite). The schema is versioned by PRAGMA
 * user_version; devstate_open migrates an older file forward in one
 * transaction and refuses a newer one. Other modules (the mount) add their
 * own tables through devstate_db() and their own migrations in their own
 * module; the tables here are `device` and `peers`. */
#ifndef CHUTE_DEVSTATE_H
#define CHUTE_DEVSTATE_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "peername.h"
#include "relay_client.h"
#include "status.h"

#define DEVSTATE_SCHEMA_VERSION 3
#define DEVSTATE_KEY_MAX        128   /* AGE-SECRET-KEY-1… / age1… with NUL */
#define DEVSTATE_PATH_MAX       4096
#define DEVSTATE_PIN_MAX        512
#define DEVSTATE_LINK_KEY_BYTES 32
/* A private relay's access token, with NUL: relay_client sends up to 199. */
#define DEVSTATE_ACCESS_TOKEN_MAX 200

typedef struct devstate devstate;

typedef struct {
    char name[PEERNAME_MAX + 1];          /* this device's name */
    char identity[DEVSTATE_KEY_MAX];      /* AGE-SECRET-KEY-1… (secret) */
    char recipient[DEVSTATE_KEY_MAX];     /* age1… */
    char relay_url[RELAY_URL_MAX];
    char cacert[DEVSTATE_PATH_MAX];       /* "" if none */
    char pin[DEVSTATE_PIN_MAX];           /* "" if none */
    char inbox[RELAY_ID_MAX];
    char owner_token[RELAY_TOKEN_MAX];    /* secret */
    char access_token[DEVSTATE_ACCESS_TOKEN_MAX];   /* secret: a private relay's
                                                      Chute-Access-Token, "" if none */
    long long created;
} devstate_device;

typedef struct {
    char name[PEERNAME_MAX + 1];          /* folder name, unique per device */
    char device_name[PEERNAME_MAX + 1];   /* what the peer calls itself */
    char recipient[DEVSTATE_KEY_MAX];     /* the peer's age1… */
    char relay_url[RELAY_URL_MAX];        /* the peer's inbox: relay … */
    char inbox[RELAY_ID_MAX];             /* … and id */
    char send_token[RELAY_TOKEN_MAX];     /* secret: lets us add to their inbox */
    char granted_sender[RELAY_ID_MAX];    /* sender id of the token we gave them */
    uint8_t link_key[DEVSTATE_LINK_KEY_BYTES];   /* secret */
    long long paired_at;
    long long gone_at;                    /* 0, or when the relay first refused
                                             our send token (the peer unpaired us) */
} devstate_peer;

/* Where the state folder is: dir_opt if given, else $CHUTE_HOME, else
 * $XDG_DATA_HOME/chute, else $HOME/.local/share/chute. */
chute_status devstate_resolve_dir(const char *dir_opt, char *out, size_t cap);

/* Whether dir can hold a state: CHUTE_OK if it does not exist yet (open
 * with create makes it 0700) or is a folder of this user that nobody else
 * can write; CHUTE_ERR_REFUSED if it is another user's or writable by
 * group or others (its mode is never changed); CHUTE_ERR_IO (errno) if it
 * cannot be looked at or is not a folder. */
chute_status devstate_dir_usable(const char *dir);

/* Open (create = 1: create the folder and database if missing) the state
 * in dir and bring its schema up to date. CHUTE_ERR_NOT_FOUND if create is
 * 0 and there is no state yet; CHUTE_ERR_UNSUPPORTED for a schema newer
 * than this build knows; CHUTE_ERR_REFUSED for an existing folder
 * devstate_dir_usable refuses (checked at every open). */
chute_status devstate_open(const char *dir, int create, devstate **out);
void devstate_close(devstate *ds);

/* The handle, for modules that keep their own tables in the same file. */
sqlite3 *devstate_db(devstate *ds);

/* This device. CHUTE_ERR_NOT_FOUND before devstate_set_device. */
chute_status devstate_get_device(devstate *ds, devstate_device *out);
/* Record this device once; CHUTE_ERR_EXISTS if it is already recorded. */
chute_status devstate_set_device(devstate *ds, const devstate_device *d);
/* Replace the stored access token of the relay ("" for none): a private
 * relay may change it. CHUTE_ERR_NOT_FOUND before devstate_set_device. */
chute_status devstate_set_access_token(devstate *ds, const char *token);
/* Rename this device: what peers paired from now on are told (those
 * paired already keep their folder name for it). CHUTE_ERR_ARG if name
 * fails peername_ok; CHUTE_ERR_NOT_FOUND before devstate_set_device. */
chute_status devstate_set_device_name(devstate *ds, const char *name);

/* Add a peer. p->name is ignored on input: the peer gets a folder name
 * derived from p->device_name that no other peer has ("home", "home-2",
 * …) and no unpaired peer of another recipient had (a mount keeps an
 * unpaired peer's queue and inbox under its name; the same device paired
 * again gets its folder back), written back into p->name.
 * CHUTE_ERR_ARG if device_name fails peername_ok. */
chute_status devstate_add_peer(devstate *ds, devstate_peer *p);
chute_status devstate_get_peer(devstate *ds, const char *name, devstate_peer *out);
/* The folder name of a peer with this recipient (the same device paired
 * before) into name[PEERNAME_MAX + 1]; CHUTE_ERR_NOT_FOUND if none. */
chute_status devstate_find_peer_by_recipient(devstate *ds, const char *recipient,
                                             char name[PEERNAME_MAX + 1]);
/* Forget a peer (its keys are zeroed in the file, not only unlinked);
 * its folder name is kept for its recipient. CHUTE_ERR_NOT_FOUND if there
 * is no such peer. */
chute_status devstate_remove_peer(devstate *ds, const char *name);

/* Record that the relay refused our send token for this peer (404 on item
 * create): the peer unpaired us. Kept, not deleted, so the user sees it;
 * `pairtool unpair` forgets it. The first time counts; later calls keep it. */
chute_status devstate_mark_peer_gone(devstate *ds, const char *name);

/* All peers ordered by name; free with devstate_peers_free (which wipes
 * their secrets). */
chute_status devstate_list_peers(devstate *ds, devstate_peer **out, size_t *count);
void devstate_peers_free(devstate_peer *peers, size_t count);
chute_status devstate_count_peers(devstate *ds, size_t *count);

/* Wipe secrets in a record before it goes out of scope. */
void devstate_device_wipe(devstate_device *d);
void devstate_peer_wipe(devstate_peer *p);

#endif
