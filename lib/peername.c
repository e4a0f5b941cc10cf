/* peername.c — validation and collision names for peer folders. */
#include "peername.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Characters that change how the text around them is shown without
 * showing themselves (bidi overrides and isolates, zero-width and
 * invisible format characters): a name shown for approval must read as
 * what it is. */
static int invisible(uint32_t cp)
{
    return (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x202A && cp <= 0x202E) ||
           (cp >= 0x2060 && cp <= 0x2069) || cp == 0xFEFF || cp == 0x00AD ||
           cp == 0x061C;
}

/* Length of the UTF-8 sequence at s (1..4), or 0 if it is not valid
 * (overlong, surrogate, beyond U+10FFFF, truncated), a C1 control or an
 * invisible format character. */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
    else return 0;
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0x80 && cp <= 0x9F) ||
        invisible(cp))
        return 0;
    return n;
}

int peername_ok(const char *name)
{
    if (!name)
        return 0;
    size_t len = strlen(name);
    if (len == 0 || len > PEERNAME_MAX)
        return 0;
    /* A leading '.' hides the folder and ".."/"." walk the tree; a leading
     * '-' reads as an option to every command-line tool. */
    if (name[0] == '.' || name[0] == '-' || name[len - 1] == '~' ||
        name[len - 1] == ' ')
        return 0;
    const unsigned char *s = (const unsigned char *)name;
    for (size_t i = 0; i < len;) {
        if (s[i] < 0x20 || s[i] == 0x7F || s[i] == '/' || s[i] == '\\')
            return 0;
        size_t n = utf8_seq(s + i, len - i);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

int peername_candidate(const char *base, unsigned n, char *out, size_t cap)
{
    if (cap < PEERNAME_MAX + 1)
        return -1;
    if (n <= 1) {
        snprintf(out, cap, "%s", base);
        return 0;
    }
    char suffix[16];
    int sl = snprintf(suffix, sizeof suffix, "-%u", n);
    size_t keep = strlen(base);
    if (keep + (size_t)sl > PEERNAME_MAX)
        keep = PEERNAME_MAX - (size_t)sl;
    /* Do not cut a UTF-8 sequence in half. */
    while (keep > 0 && ((unsigned char)base[keep] & 0xC0) == 0x80)
        keep--;
    memcpy(out, base, keep);
    memcpy(out + keep, suffix, (size_t)sl + 1);
    return 0;
}

int peername_quote(const char *name, char *out, size_t cap)
{
    size_t n = 0;
    if (cap < 3)
        return -1;
    out[n++] = '"';
    for (const char *p = name; *p; p++) {
        int esc = *p == '"' || *p == '\\';
        if (n + (size_t)esc + 1 + 2 > cap) {   /* room for the byte, the quote and NUL */
            out[0] = '\0';
            return -1;
        }
        if (esc)
            out[n++] = '\\';
        out[n++] = *p;
    }
    out[n++] = '"';
    out[n] = '\0';
    return 0;
}
