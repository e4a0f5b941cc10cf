/* paircode.h — the one-time pair code people type: <nameplate>-<secret>.
 *
 *   4213-k7qm-x2dp
 *   ^^^^ nameplate: allocated by the relay, names the rendezvous
 *        ^^^^^^^^^ secret: 8 Crockford base32 symbols (40 bits) made on
 *                  the inviting device; never sent anywhere; the
 *                  canonical 8 lowercase characters are CPace's PRS
 *
 * Parsing is forgiving of how people copy things (case, spaces, '_' or
 * several '-', surrounding whitespace, i/l for 1 and o for 0) and strict
 * about everything else, with a reason a person can act on. The grammar and
 * the reasons are in docs/PROTOCOL.md §4. */
#ifndef CHUTE_PAIRCODE_H
#define CHUTE_PAIRCODE_H

#include <stddef.h>

#include "status.h"

#define PAIRCODE_NAMEPLATE_MAX 16   /* characters of [0-9a-z] */
#define PAIRCODE_SECRET_CHARS  8    /* symbols, 5 bits each */
#define PAIRCODE_SECRET_BITS   40
/* Longest formatted code, "<16>-xxxx-xxxx", without its NUL. */
#define PAIRCODE_MAX_LEN (PAIRCODE_NAMEPLATE_MAX + 1 + PAIRCODE_SECRET_CHARS + 1)

typedef struct {
    char nameplate[PAIRCODE_NAMEPLATE_MAX + 1];  /* lowercase, NUL-ended */
    char secret[PAIRCODE_SECRET_CHARS + 1];      /* canonical, NUL-ended */
} paircode;

/* A fresh secret from libsodium's RNG: 8 canonical symbols and a NUL. */
void paircode_secret_make(char secret_out[PAIRCODE_SECRET_CHARS + 1]);

/* CHUTE_OK if nameplate is 1..16 characters of [0-9a-z] (as the relay must
 * allocate them), CHUTE_ERR_MALFORMED otherwise. */
chute_status paircode_check_nameplate(const char *nameplate);

/* "<nameplate>-<secret[0..4]>-<secret[4..8]>" into out (NUL-terminated).
 * CHUTE_ERR_ARG unless nameplate passes paircode_check_nameplate and secret
 * is canonical; CHUTE_ERR_LIMIT if out_cap < PAIRCODE_MAX_LEN + 1 would not
 * hold this code. */
chute_status paircode_format(const char *nameplate, const char *secret,
                             char *out, size_t out_cap);

/* Parse len bytes of what a person typed. On success fills *out and sets
 * *why to NULL; on CHUTE_ERR_MALFORMED wipes *out and points *why (if why
 * is not NULL) at a static English sentence saying what is wrong. */
chute_status paircode_parse(const char *text, size_t len, paircode *out,
                            const char **why);

/* The secret is key material: wipe a paircode when done with it. */
void paircode_wipe(paircode *pc);

#endif
