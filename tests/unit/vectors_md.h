/* vectors_md.h — read values out of the draft's Markdown test vectors.
 *
 * The tests parse tests/vectors/cpace-ristretto255-sha512.md at run time,
 * so they prove the shipped file rather than a pasted copy. Two shapes
 * occur in the file:
 *
 *     sid = 7e4b4791d6a8ef019b936c79fb7f2c57          (hex on the line)
 *     hash result: (length: 64 bytes)                 (hex on the lines
 *       c63a5750e2439c17ccd8213be14fde2f87e1bc637001a97f5929c77b      below,
 *       ...                                            length checked)
 *
 * and Python byte literals such as  PRS = b'Password'. */
#ifndef CHUTE_VECTORS_MD_H
#define CHUTE_VECTORS_MD_H

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The whole file as a NUL-terminated string, or NULL. */
static inline char *vec_load(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", unit_vectors_dir(), name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); return NULL; }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[len] = '\0';
    return buf;
}

static inline const char *vec_line_end(const char *p)
{
    const char *e = strchr(p, '\n');
    return e ? e : p + strlen(p);
}

/* Decode [p, end) if it is only hex digits and blanks; -1 otherwise. */
static inline long vec_hex_span(const char *p, const char *end,
                                unsigned char *out, size_t cap)
{
    size_t n = 0;
    int hi = -1;
    for (; p < end; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\r')
            continue;
        if (!isxdigit((unsigned char)*p))
            return -1;
        int v = isdigit((unsigned char)*p) ? *p - '0'
              : tolower((unsigned char)*p) - 'a' + 10;
        if (hi < 0) { hi = v; continue; }
        if (n == cap)
            return -1;
        out[n++] = (unsigned char)(hi << 4 | v);
        hi = -1;
    }
    return hi < 0 ? (long)n : -1;
}

static inline long vec_stated_length(const char *p, const char *end)
{
    const char *m = strstr(p, "(length: ");
    return m && m < end ? strtol(m + 9, NULL, 10) : -1;
}

/* The hex value labelled `label`, searching from `from`. Returns its length
 * or -1. Occurrences whose value does not parse are skipped. */
static inline long vec_hex(const char *from, const char *label,
                           unsigned char *out, size_t cap)
{
    for (const char *p = strstr(from, label); p; p = strstr(p + 1, label)) {
        const char *rest = p + strlen(label), *end = vec_line_end(rest);
        long n = vec_hex_span(rest, end, out, cap);
        if (n > 0)
            return n;
        long stated = vec_stated_length(rest, end);
        const char *line = *end ? end + 1 : end;
        if (stated < 0) {                 /* "(length: N bytes)" below */
            const char *e2 = vec_line_end(line);
            stated = vec_stated_length(line, e2);
            if (stated >= 0)
                line = *e2 ? e2 + 1 : e2;
        }
        long total = 0;
        for (;;) {
            const char *e = vec_line_end(line);
            long got = e > line ? vec_hex_span(line, e, out + total,
                                               cap - (size_t)total) : -1;
            if (got <= 0)
                break;
            total += got;
            line = *e ? e + 1 : e;
        }
        if (total > 0 && (stated < 0 || stated == total))
            return total;
    }
    return -1;
}

/* The Python byte literal after `label` (b'...', with \xNN escapes). */
static inline long vec_literal(const char *from, const char *label,
                               unsigned char *out, size_t cap)
{
    const char *p = strstr(from, label);
    if (!p)
        return -1;
    p = strstr(p, "b'");
    if (!p)
        return -1;
    size_t n = 0;
    for (p += 2; *p && *p != '\'' && *p != '\n'; p++) {
        if (n == cap)
            return -1;
        if (p[0] == '\\' && p[1] == 'x' && isxdigit((unsigned char)p[2]) &&
            isxdigit((unsigned char)p[3])) {
            char hex[3] = { p[2], p[3], 0 };
            out[n++] = (unsigned char)strtol(hex, NULL, 16);
            p += 3;
        } else {
            out[n++] = (unsigned char)*p;
        }
    }
    return *p == '\'' ? (long)n : -1;
}

#endif
