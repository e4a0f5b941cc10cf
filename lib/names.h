/* names.h — file names: untrusted names from a peer, temporary-name rule.
 *
 * A name that arrives in sealed meta was chosen by the other device and is
 * treated as hostile: names_sanitize() turns any byte string into one safe
 * path component (valid UTF-8, no '/', no control characters, never "." or
 * "..", at most NAMES_MAX bytes). names_variant() makes the collision names
 * "x (2).pdf", "x (3).pdf", ... so an arrival never overwrites. */
#ifndef CHUTE_NAMES_H
#define CHUTE_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

/* Bytes of one component, without the NUL (Linux NAME_MAX). */
#define NAMES_MAX 255
/* Sanitized names stop here so a " (NNNN)" suffix still fits. */
#define NAMES_SANE_MAX 240

/* out gets a NUL-terminated safe component; never fails on content (an
 * empty or all-invalid input becomes "unnamed"). CHUTE_ERR_ARG only for
 * NULL pointers. */
chute_status names_sanitize(const char *in, size_t in_len,
                            char out[NAMES_MAX + 1]);

/* out = name with " (n)" before its extension ("a.tar.gz" → "a (2).tar.gz"
 * keeps only the last extension: "a.tar (2).gz"), the stem shortened on a
 * UTF-8 boundary if the result would exceed NAMES_MAX. n >= 2. */
chute_status names_variant(const char *name, unsigned n,
                           char out[NAMES_MAX + 1]);

/* True for names that stay local until renamed: a leading '.', or a
 * trailing "~", ".part", ".crdownload" or ".tmp". base is one component. */
bool names_is_temporary(const char *base);
/* The same for a relative path: its last component is temporary, or it
 * lies in a folder named ".~tmp~" (where rsync --delay-updates keeps each
 * finished file until it renames them all into place at the end). */
bool names_is_temporary_path(const char *rel);

/* True if s[0..len) is valid UTF-8 (no overlongs, no surrogates). */
bool names_utf8_valid(const char *s, size_t len);

#endif
