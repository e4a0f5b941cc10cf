/* peername.h — device and folder names that arrive from elsewhere.
 *
 * A peer's device name becomes a folder name under outbox/ and inbox/ of
 * the mount, so it is untrusted input: it must be one path component that
 * no tool mistakes for something else. */
#ifndef CHUTE_PEERNAME_H
#define CHUTE_PEERNAME_H

#include <stddef.h>

#define PEERNAME_MAX 64   /* bytes, without the NUL */

/* 1 if name is 1..PEERNAME_MAX bytes of valid UTF-8 with no '/' or '\\',
 * no control characters (C0, DEL, C1), no bidi or zero-width format
 * characters, does not start with '.' or '-', and does not end with '~'
 * or a space. */
int peername_ok(const char *name);

/* Write candidate number n (1, 2, 3, ...) for a folder named after `base`
 * into out[cap]: base itself for n == 1, else "base-n", shortening base so
 * the result stays within PEERNAME_MAX. Returns 0, or -1 if cap is too
 * small. base must satisfy peername_ok. */
int peername_candidate(const char *base, unsigned n, char *out, size_t cap);

#endif
