/* paircode.c — make, format and forgivingly parse pair codes. */
#include "paircode.h"

#include <string.h>

#include <sodium.h>

/* Crockford's base32 symbols, lowercase: no i, l, o or u, so nothing looks
 * like 1, 0 or v when handwritten, and no accidental words. */
static const char ALPHABET[] = "0123456789abcdefghjkmnpqrstvwxyz";

void paircode_secret_make(char secret_out[PAIRCODE_SECRET_CHARS + 1])
{
    for (int i = 0; i < PAIRCODE_SECRET_CHARS; i++)
        secret_out[i] = ALPHABET[randombytes_uniform(32)];
    secret_out[PAIRCODE_SECRET_CHARS] = '\0';
}

static int is_lower_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z');
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

static int is_separator(char c)
{
    return c == '-' || c == '_' || c == ' ' || c == '\t';
}

chute_status paircode_check_nameplate(const char *nameplate)
{
    if (!nameplate)
        return CHUTE_ERR_MALFORMED;
    size_t n = strnlen(nameplate, PAIRCODE_NAMEPLATE_MAX + 1);
    if (n == 0 || n > PAIRCODE_NAMEPLATE_MAX)
        return CHUTE_ERR_MALFORMED;
    for (size_t i = 0; i < n; i++)
        if (!is_lower_alnum(nameplate[i]))
            return CHUTE_ERR_MALFORMED;
    return CHUTE_OK;
}

static int secret_is_canonical(const char *secret)
{
    if (strnlen(secret, PAIRCODE_SECRET_CHARS + 1) != PAIRCODE_SECRET_CHARS)
        return 0;
    for (int i = 0; i < PAIRCODE_SECRET_CHARS; i++)
        if (secret[i] == '\0' || !strchr(ALPHABET, secret[i]))
            return 0;
    return 1;
}

chute_status paircode_format(const char *nameplate, const char *secret,
                             char *out, size_t out_cap)
{
    if (!out || !secret || paircode_check_nameplate(nameplate) != CHUTE_OK ||
        !secret_is_canonical(secret))
        return CHUTE_ERR_ARG;
    size_t np = strlen(nameplate);
    size_t need = np + 1 + PAIRCODE_SECRET_CHARS + 1 + 1;
    if (out_cap < need)
        return CHUTE_ERR_LIMIT;
    char *p = out;
    memcpy(p, nameplate, np);
    p += np;
    *p++ = '-';
    memcpy(p, secret, 4);
    p += 4;
    *p++ = '-';
    memcpy(p, secret + 4, 4);
    p += 4;
    *p = '\0';
    return CHUTE_OK;
}

void paircode_wipe(paircode *pc)
{
    if (pc)
        sodium_memzero(pc, sizeof *pc);
}

/* One secret symbol as a person may have written it (the caller already
 * refused anything but letters and digits), or 0 for 'u', the one letter
 * Crockford's alphabet leaves out without an alias. Crockford's decoding:
 * i and l were meant as 1, o as 0. */
static char secret_symbol(char c)
{
    c = ascii_lower(c);
    if (c == 'i' || c == 'l')
        return '1';
    if (c == 'o')
        return '0';
    return c != 'u' && is_lower_alnum(c) ? c : 0;
}

static chute_status reject(paircode *out, const char **why, const char *reason)
{
    paircode_wipe(out);
    if (why)
        *why = reason;
    return CHUTE_ERR_MALFORMED;
}

chute_status paircode_parse(const char *text, size_t len, paircode *out,
                            const char **why)
{
    if (why)
        *why = NULL;
    if (!out)
        return CHUTE_ERR_ARG;
    paircode_wipe(out);
    if (!text && len)
        return CHUTE_ERR_ARG;

    size_t b = 0, e = len;
    while (b < e && is_space(text[b]))
        b++;
    while (e > b && is_space(text[e - 1]))
        e--;
    if (b == e)
        return reject(out, why, "the code is empty");
    for (size_t i = b; i < e; i++) {
        char c = ascii_lower(text[i]);
        if (!is_separator(c) && !is_lower_alnum(c))
            return reject(out, why,
                          "the code may contain only letters, digits, "
                          "spaces, '-' and '_'");
    }
    if (is_separator(text[b]))
        return reject(out, why, "the code must start with its number");

    /* The nameplate: everything up to the first separator. */
    size_t np = 0, i = b;
    for (; i < e && !is_separator(text[i]); i++) {
        if (np == PAIRCODE_NAMEPLATE_MAX)
            return reject(out, why,
                          "the number before the first '-' is too long");
        out->nameplate[np++] = ascii_lower(text[i]);
    }
    out->nameplate[np] = '\0';

    /* The secret: the symbols of all remaining groups, however grouped. */
    size_t n = 0;
    for (; i < e; i++) {
        if (is_separator(text[i]))
            continue;
        char s = secret_symbol(text[i]);
        if (!s)
            return reject(out, why,
                          "the letter 'u' never occurs in a code's secret");
        if (n == PAIRCODE_SECRET_CHARS)
            return reject(out, why,
                          "the secret part is too long: it has 8 letters "
                          "or digits");
        out->secret[n++] = s;
    }
    if (n == 0)
        return reject(out, why,
                      "the secret part is missing: a code looks like "
                      "4213-k7qm-x2dp");
    if (n < PAIRCODE_SECRET_CHARS)
        return reject(out, why,
                      "the secret part is too short: it has 8 letters or "
                      "digits");
    out->secret[n] = '\0';
    return CHUTE_OK;
}
