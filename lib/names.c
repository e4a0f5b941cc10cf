/* names.c — sanitizing untrusted names; see names.h. */
#include "names.h"

#include <stdio.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is invalid.
 * Rejects overlong forms, surrogates and code points above U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t avail, unsigned *cp)
{
    unsigned c = s[0];
    size_t n;
    unsigned v, min;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xC2 && c <= 0xDF) { n = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (avail < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return n;
}

bool names_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned cp;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(p + i, len - i, &cp);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

/* Largest prefix length <= max that ends on a UTF-8 boundary of the
 * (already valid) string s. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max) return len;
    size_t cut = max;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80) cut--;
    return cut;
}

/* Characters that change how a name shows without showing themselves:
 * bidi overrides and marks ("invoice\u202Efdp.exe" shows as
 * "invoiceexe.pdf"), line and paragraph separators, the soft hyphen, the
 * zero-width space, word joiner and BOM — the set PROTOCOL §7.4 keeps out
 * of device names, less ZWNJ and ZWJ, which emoji and some scripts need. */
static bool is_hidden_control(unsigned cp)
{
    return cp == 0xAD || cp == 0x061C || cp == 0x200B || cp == 0x200E || cp == 0x200F ||
           (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x2069) ||
           cp == 0xFEFF;
}

/* White space of any width, trimmed at both ends: "y\u00A0" beside "y"
 * would be a twin nobody can tell apart. */
static bool is_space(unsigned cp)
{
    return cp == ' ' || cp == '\t' || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* The (valid UTF-8) code point that ends at s[len]: its start. */
static size_t last_start(const char *s, size_t len)
{
    size_t i = len - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

chute_status names_sanitize(const char *in, size_t in_len,
                            char out[NAMES_MAX + 1])
{
    if (!out || (!in && in_len)) return CHUTE_ERR_ARG;
    const unsigned char *p = (const unsigned char *)in;
    size_t o = 0;
    /* Build the cleaned string; stop adding once NAMES_SANE_MAX is
     * reached so 10,000-byte names cost nothing extra. */
    for (size_t i = 0; i < in_len && o < NAMES_SANE_MAX;) {
        unsigned cp;
        size_t n = utf8_seq(p + i, in_len - i, &cp);
        if (n == 0) { out[o++] = '_'; i++; continue; }
        /* C0, DEL, C1 controls, hidden ones, and the path separators of
         * any OS. */
        if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0) || is_hidden_control(cp) ||
            cp == '/' || cp == '\\') {
            out[o++] = '_'; i += n; continue;
        }
        if (o + n > NAMES_SANE_MAX) break;
        memcpy(out + o, p + i, n);
        o += n; i += n;
    }
    out[o] = '\0';
    /* Trim surrounding white space: "  x " would look like "x" to people
     * and make confusable twins. out is valid UTF-8 here. */
    size_t start = 0;
    unsigned cp;
    for (size_t n; start < o && (n = utf8_seq((unsigned char *)out + start, o - start, &cp)) &&
                   is_space(cp);)
        start += n;
    while (o > start) {
        size_t at = last_start(out, o);
        if (!utf8_seq((unsigned char *)out + at, o - at, &cp) || !is_space(cp)) break;
        o = at;
    }
    memmove(out, out + start, o - start);
    o -= start;
    out[o] = '\0';
    if (o == 0) { strcpy(out, "unnamed"); return CHUTE_OK; }
    if (strcmp(out, ".") == 0 || strcmp(out, "..") == 0) {
        /* Keep the user's intent visible but make it an ordinary name. */
        memmove(out + 1, out, o + 1);
        out[0] = '_';
    }
    return CHUTE_OK;
}

chute_status names_variant(const char *name, unsigned n,
                           char out[NAMES_MAX + 1])
{
    if (!name || !out || n < 2) return CHUTE_ERR_ARG;
    size_t len = strlen(name);
    if (len > NAMES_MAX) return CHUTE_ERR_ARG;
    /* The extension is the last ".x" that is not the whole name and is
     * short enough to be one; otherwise the suffix goes at the end. */
    const char *dot = strrchr(name, '.');
    size_t stem = len;
    if (dot && dot != name && (size_t)(name + len - dot) <= 16)
        stem = (size_t)(dot - name);
    char suffix[16];
    int sl = snprintf(suffix, sizeof suffix, " (%u)", n);
    if (sl < 0 || (size_t)sl >= sizeof suffix) return CHUTE_ERR_ARG;
    size_t ext = len - stem;
    size_t room = NAMES_MAX - (size_t)sl - ext;
    size_t keep = utf8_cut(name, stem, room);
    memcpy(out, name, keep);
    memcpy(out + keep, suffix, (size_t)sl);
    memcpy(out + keep + (size_t)sl, name + stem, ext);
    out[keep + (size_t)sl + ext] = '\0';
    return CHUTE_OK;
}

static bool ends_with(const char *s, size_t len, const char *suf)
{
    size_t n = strlen(suf);
    return len >= n && memcmp(s + len - n, suf, n) == 0;
}

bool names_is_temporary(const char *base)
{
    if (!base || !*base) return false;
    size_t len = strlen(base);
    return base[0] == '.' || ends_with(base, len, "~") ||
           ends_with(base, len, ".part") ||
           ends_with(base, len, ".crdownload") ||
           ends_with(base, len, ".tmp");
}

#define RSYNC_DELAY_DIR ".~tmp~"

bool names_is_temporary_path(const char *rel)
{
    if (!rel) return false;
    const char *base = strrchr(rel, '/');
    if (names_is_temporary(base ? base + 1 : rel)) return true;
    size_t n = strlen(RSYNC_DELAY_DIR);
    for (const char *p = rel; base && p < base;) {
        const char *e = strchr(p, '/');
        if ((size_t)(e - p) == n && memcmp(p, RSYNC_DELAY_DIR, n) == 0) return true;
        p = e + 1;
    }
    return false;
}
