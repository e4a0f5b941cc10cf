/* age_header.c — parse, verify and build the age v1 header. */
#include "age_header.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hkdf.h"

#define VERSION_LINE   "age-encryption.org/v1"
#define VERSION_PREFIX "age-encryption.org/"
#define BODY_COLUMNS   64
#define MAC_B64_LEN    43

struct age_stanza {
    char *line;      /* copy of the argument line, arguments NUL-separated */
    char **args;     /* args[0] is the stanza type */
    size_t n_args;
    uint8_t *body;
    size_t body_len;
};

struct age_header {
    struct age_stanza *stanzas;
    size_t n_stanzas;
    uint8_t *mac_input;    /* the header up to and including "---" */
    size_t mac_input_len;
    uint8_t mac[AGE_MAC_BYTES];
};

/* --- strict base64 (standard alphabet, no padding, canonical) ----------- */

static bool is_b64_char(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

static unsigned b64_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z') return (unsigned)(c - 'A');
    if (c >= 'a' && c <= 'z') return (unsigned)(c - 'a' + 26);
    if (c >= '0' && c <= '9') return (unsigned)(c - '0' + 52);
    return c == '+' ? 62u : 63u;
}

/* Decodes n characters into out (room for n*3/4 bytes). Refuses padding,
 * foreign characters, an impossible length, and non-zero unused bits, so
 * that every byte string has exactly one accepted encoding. */
static chute_status b64_decode(uint8_t *out, size_t *out_len,
                               const uint8_t *in, size_t n)
{
    if (n % 4 == 1)
        return CHUTE_ERR_MALFORMED;
    uint32_t acc = 0;
    int bits = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_b64_char(in[i]))
            return CHUTE_ERR_MALFORMED;
        acc = ((acc << 6) | b64_value(in[i])) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[k++] = (uint8_t)(acc >> bits);
        }
    }
    if (acc & ((1u << bits) - 1))
        return CHUTE_ERR_MALFORMED;
    *out_len = k;
    return CHUTE_OK;
}

/* --- parsing -------------------------------------------------------------- */

static bool is_vchar(uint8_t c) { return c >= 0x21 && c <= 0x7e; }

/* The next LF-terminated line from buf[*pos..len), without its LF. */
static chute_status next_line(const uint8_t *buf, size_t len, size_t *pos,
                              const uint8_t **line, size_t *line_len)
{
    const uint8_t *start = buf + *pos;
    const uint8_t *nl = memchr(start, '\n', len - *pos);
    if (!nl)
        return CHUTE_ERR_TRUNCATED;
    *line = start;
    *line_len = (size_t)(nl - start);
    *pos += *line_len + 1;
    return CHUTE_OK;
}

static void stanza_clear(struct age_stanza *s)
{
    free(s->line);
    free(s->args);
    if (s->body)
        sodium_memzero(s->body, s->body_len);
    free(s->body);
}

void age_header_free(age_header *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n_stanzas; i++)
        stanza_clear(&h->stanzas[i]);
    free(h->stanzas);
    free(h->mac_input);
    free(h);
}

/* "-> " has been checked; splits the rest into non-empty VCHAR arguments. */
static chute_status parse_arguments(struct age_stanza *s, const uint8_t *text,
                                    size_t n)
{
    size_t n_args = 1;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ') {
            if (i == 0 || i + 1 == n || text[i + 1] == ' ')
                return CHUTE_ERR_MALFORMED; /* an empty argument */
            n_args++;
        } else if (!is_vchar(text[i])) {
            return CHUTE_ERR_MALFORMED;
        }
    }
    if (n == 0)
        return CHUTE_ERR_MALFORMED;
    s->line = malloc(n + 1);
    s->args = calloc(n_args, sizeof *s->args);
    if (!s->line || !s->args)
        return CHUTE_ERR_NOMEM;
    memcpy(s->line, text, n);
    s->line[n] = '\0';
    s->args[0] = s->line;
    for (size_t i = 0, k = 1; i < n; i++)
        if (s->line[i] == ' ') {
            s->line[i] = '\0';
            s->args[k++] = s->line + i + 1;
        }
    s->n_args = n_args;
    return CHUTE_OK;
}

/* Body lines: full ones of exactly 64 columns, ended by a shorter one. */
static chute_status parse_body(struct age_stanza *s, const uint8_t *buf,
                               size_t len, size_t *pos)
{
    size_t start = *pos, chars = 0;
    const uint8_t *line;
    size_t line_len;
    do {
        chute_status st = next_line(buf, len, pos, &line, &line_len);
        if (st == CHUTE_ERR_TRUNCATED) {
            /* Judge the unfinished line now, so garbage fails fast. */
            line = buf + *pos;
            line_len = len - *pos;
            if (line_len > BODY_COLUMNS)
                return CHUTE_ERR_MALFORMED;
            for (size_t i = 0; i < line_len; i++)
                if (!is_b64_char(line[i]))
                    return CHUTE_ERR_MALFORMED;
            return CHUTE_ERR_TRUNCATED;
        }
        if (st != CHUTE_OK)
            return st;
        if (line_len > BODY_COLUMNS)
            return CHUTE_ERR_MALFORMED;
        for (size_t i = 0; i < line_len; i++)
            if (!is_b64_char(line[i]))
                return CHUTE_ERR_MALFORMED;
        chars += line_len;
    } while (line_len == BODY_COLUMNS);

    /* Gather the characters without LFs, then decode them at once: full
     * lines are 48 bytes each, so this equals decoding line by line. */
    uint8_t *text = malloc(chars + 1);
    s->body = malloc(chars * 3 / 4 + 1);
    if (!text || !s->body) {
        free(text);
        return CHUTE_ERR_NOMEM;
    }
    size_t k = 0;
    for (size_t i = start; i < *pos; i++)
        if (buf[i] != '\n')
            text[k++] = buf[i];
    chute_status st = b64_decode(s->body, &s->body_len, text, chars);
    free(text);
    return st;
}

/* An X25519 stanza must be well formed even when it is not for us. */
static chute_status check_x25519(const struct age_stanza *s)
{
    uint8_t share[AGE_X25519_BYTES + 3];
    size_t n = 0;
    if (s->n_args != 2 || strlen(s->args[1]) != 43 ||
        b64_decode(share, &n, (const uint8_t *)s->args[1], 43) != CHUTE_OK ||
        n != AGE_X25519_BYTES || s->body_len != AGE_X25519_BODY_BYTES)
        return CHUTE_ERR_MALFORMED;
    return CHUTE_OK;
}

static chute_status parse_stanza(age_header *h, const uint8_t *buf,
                                 size_t len, size_t *pos,
                                 const uint8_t *line, size_t line_len)
{
    struct age_stanza *grown = realloc(h->stanzas, (h->n_stanzas + 1) *
                                                       sizeof *h->stanzas);
    if (!grown)
        return CHUTE_ERR_NOMEM;
    h->stanzas = grown;
    struct age_stanza *s = &h->stanzas[h->n_stanzas++];
    memset(s, 0, sizeof *s);

    chute_status st = parse_arguments(s, line + 3, line_len - 3);
    if (st == CHUTE_OK)
        st = parse_body(s, buf, len, pos);
    if (st == CHUTE_OK && strcmp(s->args[0], "X25519") == 0)
        st = check_x25519(s);
    return st;
}

static chute_status parse_mac_line(age_header *h, const uint8_t *buf,
                                   const uint8_t *line, size_t line_len)
{
    uint8_t mac[AGE_MAC_BYTES + 3];
    size_t n = 0;
    if (line_len != 4 + MAC_B64_LEN || line[3] != ' ' ||
        b64_decode(mac, &n, line + 4, MAC_B64_LEN) != CHUTE_OK ||
        n != AGE_MAC_BYTES)
        return CHUTE_ERR_MALFORMED;
    memcpy(h->mac, mac, AGE_MAC_BYTES);
    h->mac_input_len = (size_t)(line - buf) + 3;
    h->mac_input = malloc(h->mac_input_len);
    if (!h->mac_input)
        return CHUTE_ERR_NOMEM;
    memcpy(h->mac_input, buf, h->mac_input_len);
    return CHUTE_OK;
}

static chute_status check_version(const uint8_t *line, size_t n)
{
    if (n == strlen(VERSION_LINE) && memcmp(line, VERSION_LINE, n) == 0)
        return CHUTE_OK;
    for (size_t i = 0; i < n; i++)
        if (!is_vchar(line[i]))
            return CHUTE_ERR_MALFORMED;
    return CHUTE_ERR_UNSUPPORTED; /* some other age-encryption.org/ version */
}

static chute_status parse(age_header *h, const uint8_t *buf, size_t len,
                          size_t *pos)
{
    const uint8_t *line;
    size_t line_len;
    size_t prefix = strlen(VERSION_PREFIX);
    if (len == 0)
        return CHUTE_ERR_TRUNCATED;
    /* Refuse what is not age at once rather than waiting for a newline. */
    if (memcmp(buf, VERSION_PREFIX, len < prefix ? len : prefix) != 0)
        return CHUTE_ERR_MALFORMED;
    chute_status st = next_line(buf, len, pos, &line, &line_len);
    if (st != CHUTE_OK)
        return st;
    st = check_version(line, line_len);
    while (st == CHUTE_OK) {
        st = next_line(buf, len, pos, &line, &line_len);
        if (st != CHUTE_OK)
            break;
        if (line_len >= 3 && memcmp(line, "---", 3) == 0)
            return parse_mac_line(h, buf, line, line_len);
        if (line_len >= 3 && memcmp(line, "-> ", 3) == 0)
            st = parse_stanza(h, buf, len, pos, line, line_len);
        else
            st = CHUTE_ERR_MALFORMED;
    }
    return st;
}

chute_status age_header_parse(const uint8_t *buf, size_t len,
                              age_header **out, size_t *header_len)
{
    if (!out || !header_len || (len && !buf))
        return CHUTE_ERR_ARG;
    *out = NULL;
    size_t limit = len < AGE_HEADER_MAX ? len : AGE_HEADER_MAX;
    age_header *h = calloc(1, sizeof *h);
    if (!h)
        return CHUTE_ERR_NOMEM;
    size_t pos = 0;
    chute_status st = parse(h, buf, limit, &pos);
    if (st == CHUTE_ERR_TRUNCATED && len >= AGE_HEADER_MAX)
        st = CHUTE_ERR_LIMIT;
    if (st != CHUTE_OK) {
        age_header_free(h);
        return st;
    }
    *out = h;
    *header_len = pos;
    return CHUTE_OK;
}

const uint8_t *age_header_mac(const age_header *h) { return h->mac; }

size_t age_header_stanza_count(const age_header *h) { return h->n_stanzas; }

/* --- MAC, unwrap, build --------------------------------------------------- */

static chute_status compute_mac(uint8_t mac[AGE_MAC_BYTES],
                                const uint8_t file_key[AGE_FILE_KEY_BYTES],
                                const uint8_t *data, size_t len)
{
    uint8_t key[32];
    chute_status st = hkdf_sha256(key, sizeof key, NULL, 0, file_key,
                                  AGE_FILE_KEY_BYTES,
                                  (const uint8_t *)"header", 6);
    if (st == CHUTE_OK)
        crypto_auth_hmacsha256(mac, data, len, key);
    sodium_memzero(key, sizeof key);
    return st;
}

static chute_status find_file_key(const age_header *h,
                                  const age_identity *ids, size_t n_ids,
                                  uint8_t file_key[AGE_FILE_KEY_BYTES])
{
    /* age allows scrypt only alone and only with a passphrase; Chute never
     * makes such files, so their presence is a refusal, not a miss. */
    for (size_t i = 0; i < h->n_stanzas; i++)
        if (strcmp(h->stanzas[i].args[0], "scrypt") == 0)
            return CHUTE_ERR_UNSUPPORTED;
    for (size_t i = 0; i < h->n_stanzas; i++) {
        const struct age_stanza *s = &h->stanzas[i];
        if (strcmp(s->args[0], "X25519") != 0)
            continue; /* unknown types are for other identities */
        uint8_t share[AGE_X25519_BYTES + 3];
        size_t n = 0;
        if (b64_decode(share, &n, (const uint8_t *)s->args[1], 43) !=
            CHUTE_OK)
            return CHUTE_ERR_MALFORMED; /* check_x25519 already passed */
        for (size_t k = 0; k < n_ids; k++) {
            chute_status st = age_x25519_unwrap(file_key, share, s->body,
                                                &ids[k]);
            if (st != CHUTE_ERR_NO_MATCH)
                return st;
        }
    }
    return CHUTE_ERR_NO_MATCH;
}

chute_status age_header_unwrap(const age_header *h, const age_identity *ids,
                               size_t n_ids,
                               uint8_t file_key[AGE_FILE_KEY_BYTES])
{
    if (!h || !file_key || (n_ids && !ids))
        return CHUTE_ERR_ARG;
    if (sodium_init() < 0)
        return CHUTE_ERR_CRYPTO;
    chute_status st = find_file_key(h, ids, n_ids, file_key);
    uint8_t mac[AGE_MAC_BYTES];
    if (st == CHUTE_OK)
        st = compute_mac(mac, file_key, h->mac_input, h->mac_input_len);
    if (st == CHUTE_OK && crypto_verify_32(mac, h->mac) != 0)
        st = CHUTE_ERR_HMAC;
    if (st != CHUTE_OK)
        sodium_memzero(file_key, AGE_FILE_KEY_BYTES);
    return st;
}

chute_status age_header_build(const uint8_t file_key[AGE_FILE_KEY_BYTES],
                              const age_recipient *recipients, size_t n,
                              uint8_t **out, size_t *out_len,
                              uint8_t mac[AGE_MAC_BYTES])
{
    if (!file_key || !recipients || n == 0 || !out || !out_len || !mac)
        return CHUTE_ERR_ARG;
    if (n > AGE_HEADER_MAX / AGE_X25519_STANZA_MAX)
        return CHUTE_ERR_LIMIT;
    size_t cap = strlen(VERSION_LINE) + 1 + n * AGE_X25519_STANZA_MAX +
                 4 + MAC_B64_LEN + 2;
    char *buf = malloc(cap);
    if (!buf)
        return CHUTE_ERR_NOMEM;
    size_t pos = strlen(VERSION_LINE);
    memcpy(buf, VERSION_LINE "\n", pos + 1);
    pos++;
    chute_status st = CHUTE_OK;
    for (size_t i = 0; i < n && st == CHUTE_OK; i++) {
        size_t len = 0;
        st = age_x25519_wrap(file_key, &recipients[i], buf + pos, &len);
        pos += len;
    }
    if (st == CHUTE_OK) {
        memcpy(buf + pos, "---", 3);
        pos += 3;
        st = compute_mac(mac, file_key, (const uint8_t *)buf, pos);
    }
    if (st != CHUTE_OK) {
        free(buf);
        return st;
    }
    buf[pos++] = ' ';
    sodium_bin2base64(buf + pos, MAC_B64_LEN + 1, mac, AGE_MAC_BYTES,
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    pos += MAC_B64_LEN;
    buf[pos++] = '\n';
    *out = (uint8_t *)buf;
    *out_len = pos;
    return CHUTE_OK;
}
