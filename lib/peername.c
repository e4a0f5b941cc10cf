/* peername.c — validation and collision names for peer folders. */
#include "peername.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* A range of code points, first..last. */
struct cp_range {
    uint32_t first, last;
};

/* Code points a name may not hold anywhere (PROTOCOL §7.4), sorted: what
 * shows as nothing or as a plain space, so that a name could read as
 * another ("home" and "home" + U+E0020) or as no name at all; the bidi
 * characters also change how the text around them shows. From Unicode
 * 15.0: General_Category Cf, Zl, Zp, Co, Zs but U+0020, and
 * Default_Ignorable_Code_Point; then U+2800, the C1 controls and the
 * noncharacters (U+nFFFE and U+nFFFF are tested in hidden()). */
static const struct cp_range hidden_ranges[] = {
    {0x0080, 0x00A0},     /* C1 controls, NO-BREAK SPACE */
    {0x00AD, 0x00AD},     /* SOFT HYPHEN */
    {0x034F, 0x034F},     /* COMBINING GRAPHEME JOINER */
    {0x0600, 0x0605},     /* Arabic prepended format characters */
    {0x061C, 0x061C},     /* ARABIC LETTER MARK */
    {0x06DD, 0x06DD},
    {0x070F, 0x070F},
    {0x0890, 0x0891},
    {0x08E2, 0x08E2},
    {0x115F, 0x1160},     /* Hangul choseong and jungseong fillers */
    {0x1680, 0x1680},     /* OGHAM SPACE MARK */
    {0x17B4, 0x17B5},     /* Khmer inherent vowels */
    {0x180B, 0x180F},     /* Mongolian variation selectors, vowel separator */
    {0x2000, 0x200F},     /* spaces; zero-width space, joiners, LRM, RLM */
    {0x2028, 0x202F},     /* line and paragraph separators; bidi; NNBSP */
    {0x205F, 0x206F},     /* MMSP; word joiner, invisible operators, bidi */
    {0x2800, 0x2800},     /* BRAILLE PATTERN BLANK */
    {0x3000, 0x3000},     /* IDEOGRAPHIC SPACE */
    {0x3164, 0x3164},     /* HANGUL FILLER */
    {0xE000, 0xF8FF},     /* private use */
    {0xFDD0, 0xFDEF},     /* noncharacters */
    {0xFE00, 0xFE0F},     /* variation selectors */
    {0xFEFF, 0xFEFF},     /* ZERO WIDTH NO-BREAK SPACE (BOM) */
    {0xFFA0, 0xFFA0},     /* HALFWIDTH HANGUL FILLER */
    {0xFFF0, 0xFFFB},     /* unassigned ignorables; interlinear annotation */
    {0x110BD, 0x110BD},
    {0x110CD, 0x110CD},
    {0x13430, 0x1343F},   /* Egyptian hieroglyph format controls */
    {0x1BCA0, 0x1BCA3},   /* shorthand format controls */
    {0x1D173, 0x1D17A},   /* musical symbol format controls */
    {0xE0000, 0x10FFFF},  /* tags, variation selectors; private use planes */
};

static int in_ranges(uint32_t cp, const struct cp_range *r, size_t n)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].first)
            hi = mid;
        else if (cp > r[mid].last)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static int hidden(uint32_t cp)
{
    return (cp & 0xFFFE) == 0xFFFE ||
           in_ranges(cp, hidden_ranges, sizeof hidden_ranges / sizeof hidden_ranges[0]);
}

/* Decodes the UTF-8 sequence at s into *cp: its length (1..4), or 0 if it
 * is not valid (overlong, surrogate, beyond U+10FFFF, truncated). */
static size_t utf8_decode(const unsigned char *s, size_t left, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; v = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; v = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; v = c & 0x07; }
    else return 0;
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10FFFF)) ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
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
        uint32_t cp;
        size_t n = utf8_decode(s + i, len - i, &cp);
        if (n == 0 || cp < 0x20 || cp == 0x7F || cp == '/' || cp == '\\' ||
            hidden(cp))
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
