/* peername.h — device and folder names that arrive from elsewhere.
 *
 * A peer's device name becomes a folder name under outbox/ and inbox/ of
 * the mount, so it is untrusted input: it must be one path component that
 * no tool mistakes for something else. */
#ifndef CHUTE_PEERNAME_H
#define CHUTE_PEERNAME_H

#include <stddef.h>

#define PEERNAME_MAX 64   /* bytes, without the NUL */
/* A quoted name: two quotes, each byte at most escaped, and the NUL. */
#define PEERNAME_QUOTED_MAX (2 * PEERNAME_MAX + 3)

/* 1 if name is 1..PEERNAME_MAX bytes of valid UTF-8 that PROTOCOL §7.4
 * allows: no '/' or '\\', no control character (C0, DEL, C1), nothing
 * that shows as nothing or as a plain space (format characters, line and
 * paragraph separators, spaces other than U+0020, fillers and other
 * default-ignorables, U+2800, private use, noncharacters, plane 14 on);
 * not starting with '.', '-', a space or a combining mark; not ending with
 * '~' or a space. Every such name has a visible first character. */
int peername_ok(const char *name);

/* Write candidate number n (1, 2, 3, ...) for a folder named after `base`
 * into out[cap]: base itself for n == 1, else "base-n", shortening base so
 * the result stays within PEERNAME_MAX. Returns 0, or -1 if cap is too
 * small. base must satisfy peername_ok. */
int peername_candidate(const char *base, unsigned n, char *out, size_t cap);

/* A peer-chosen name as people should see it next to the tool's own text:
 * in double quotes, with each '"' (and '\\') escaped by a backslash, so
 * the name cannot close the quotes and pass what follows off as ours.
 * peername_ok names have no line breaks or other controls. Writes into
 * out[cap] (cap >= PEERNAME_QUOTED_MAX for any peername_ok name); returns
 * 0, or -1 if it does not fit (out then holds ""). */
int peername_quote(const char *name, char *out, size_t cap);

#endif
