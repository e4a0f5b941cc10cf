/* relay_wire.c — pure parsers for relay requests (see relay_wire.h). */
#include "relay_wire.h"

#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- units ---------------------------------------------------------------- */

/* Leading decimal digits of s; *end points after them. */
static chute_status parse_digits(const char *s, uint64_t *out, const char **end)
{
    uint64_t v = 0;
    const char *p = s;
    if (!s || *p < '0' || *p > '9')
        return CHUTE_ERR_MALFORMED;
    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return CHUTE_ERR_MALFORMED;
        v = v * 10 + d;
    }
    *out = v;
    *end = p;
    return CHUTE_OK;
}

chute_status relay_parse_u64(const char *s, uint64_t *out)
{
    const char *end;
    uint64_t v;
    if (parse_digits(s, &v, &end) != CHUTE_OK || *end != '\0')
        return CHUTE_ERR_MALFORMED;
    *out = v;
    return CHUTE_OK;
}

static chute_status scale(uint64_t v, uint64_t mul, uint64_t *out)
{
    if (mul && v > UINT64_MAX / mul)
        return CHUTE_ERR_MALFORMED;
    *out = v * mul;
    return CHUTE_OK;
}

chute_status relay_parse_duration(const char *s, uint64_t *secs)
{
    const char *end;
    uint64_t v, mul;
    if (parse_digits(s, &v, &end) != CHUTE_OK)
        return CHUTE_ERR_MALFORMED;
    switch (*end) {
    case '\0': case 's': mul = 1; break;
    case 'm': mul = 60; break;
    case 'h': mul = 3600; break;
    case 'd': mul = 86400; break;
    default: return CHUTE_ERR_MALFORMED;
    }
    if (*end && end[1] != '\0')
        return CHUTE_ERR_MALFORMED;
    return scale(v, mul, secs);
}

chute_status relay_parse_size(const char *s, uint64_t *bytes)
{
    const char *end;
    uint64_t v, mul = 1;
    if (parse_digits(s, &v, &end) != CHUTE_OK)
        return CHUTE_ERR_MALFORMED;
    switch (*end) {
    case 'K': case 'k': mul = 1ull << 10; end++; break;
    case 'M': case 'm': mul = 1ull << 20; end++; break;
    case 'G': case 'g': mul = 1ull << 30; end++; break;
    case 'T': case 't': mul = 1ull << 40; end++; break;
    default: break;
    }
    /* Allow the spellings people write: 64K, 64KB, 64KiB, 4096B. */
    if (mul != 1 && *end == 'i')
        end++;
    if (*end == 'B')
        end++;
    if (*end != '\0')
        return CHUTE_ERR_MALFORMED;
    return scale(v, mul, bytes);
}

/* --- identifiers ---------------------------------------------------------- */

static bool b64url_chars(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool relay_valid_id(const char *s, size_t len)
{
    return s && len == RELAY_ID_CHARS && b64url_chars(s, len);
}

bool relay_valid_item_id(const char *s, size_t len)
{
    return s && len >= RELAY_ITEM_ID_MIN && len <= RELAY_ITEM_ID_MAX &&
           b64url_chars(s, len);
}

bool relay_valid_nameplate(const char *s, size_t len)
{
    if (!s || len < 1 || len > RELAY_NAMEPLATE_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

bool relay_valid_token(const char *s, size_t len)
{
    return s && len == RELAY_TOKEN_CHARS && b64url_chars(s, len);
}

const char *relay_bearer_token(const char *header)
{
    if (!header || strncasecmp(header, "Bearer ", 7) != 0)
        return NULL;
    const char *t = header + 7;
    while (*t == ' ')
        t++;
    size_t n = strlen(t);
    while (n > 0 && t[n - 1] == ' ')
        n--;
    /* Tokens are fixed-length; trailing spaces are all we forgive. */
    if (n != RELAY_TOKEN_CHARS || !relay_valid_token(t, n))
        return NULL;
    return t;
}

/* --- request bodies ------------------------------------------------------- */

/* Parse buf as one JSON object; empty input is the empty object. */
static chute_status load_object(const uint8_t *buf, size_t len, json_t **out)
{
    json_error_t err;
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' ||
                       buf[i] == '\n'))
        i++;
    json_t *j = i == len ? json_object()
                         : json_loadb((const char *)buf, len,
                                      JSON_REJECT_DUPLICATES, &err);
    if (!j)
        return i == len ? CHUTE_ERR_NOMEM : CHUTE_ERR_MALFORMED;
    if (!json_is_object(j)) {
        json_decref(j);
        return CHUTE_ERR_MALFORMED;
    }
    *out = j;
    return CHUTE_OK;
}

/* Decode standard padded base64 of at most max_len bytes into a new buffer. */
static chute_status decode_b64(const char *s, size_t slen, size_t max_len,
                               uint8_t **out, size_t *out_len)
{
    if (slen % 4 != 0)
        return CHUTE_ERR_MALFORMED;
    size_t cap = slen / 4 * 3;
    /* Padding makes cap overshoot by at most 2 bytes. */
    if (cap > max_len + 2)
        return CHUTE_ERR_LIMIT;
    uint8_t *bin = malloc(cap ? cap : 1);
    if (!bin)
        return CHUTE_ERR_NOMEM;
    size_t n = 0;
    const char *end = NULL;
    if (sodium_base642bin(bin, cap, s, slen, NULL, &n, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != s + slen) {
        free(bin);
        return CHUTE_ERR_MALFORMED;
    }
    if (n > max_len) {
        free(bin);
        return CHUTE_ERR_LIMIT;
    }
    *out = bin;
    *out_len = n;
    return CHUTE_OK;
}

/* A non-negative JSON integer (not a real, not a bool). */
static bool json_uint(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* The size and meta of a create body that declares them. */
static chute_status parse_declared(json_t *j, size_t max_meta, relay_item_create *out)
{
    json_t *size = json_object_get(j, "size");
    json_t *meta = json_object_get(j, "meta");
    if (!json_uint(size, &out->size) || !json_is_string(meta))
        return CHUTE_ERR_MALFORMED;
    return decode_b64(json_string_value(meta), json_string_length(meta),
                      max_meta, &out->meta, &out->meta_len);
}

chute_status relay_parse_item_create(const uint8_t *buf, size_t len,
                                     size_t max_meta, relay_item_create *out)
{
    json_t *j;
    memset(out, 0, sizeof *out);
    chute_status st = load_object(buf, len, &j);
    if (st)
        return st;
    json_t *deferred = json_object_get(j, "deferred");
    if (deferred && !json_is_boolean(deferred))
        st = CHUTE_ERR_MALFORMED;
    else if (json_is_true(deferred))
        /* Size and meta come with the declare, never with the create. */
        st = json_object_get(j, "size") || json_object_get(j, "meta") ? CHUTE_ERR_MALFORMED
                                                                       : CHUTE_OK;
    else
        st = parse_declared(j, max_meta, out);
    out->deferred = st == CHUTE_OK && json_is_true(deferred);
    json_decref(j);
    return st;
}

void relay_item_create_free(relay_item_create *c)
{
    if (!c)
        return;
    free(c->meta);
    c->meta = NULL;
    c->meta_len = 0;
}

chute_status relay_parse_pair_alloc(const uint8_t *buf, size_t len,
                                    bool *has_ttl, uint64_t *ttl)
{
    json_t *j;
    chute_status st = load_object(buf, len, &j);
    if (st)
        return st;
    json_t *t = json_object_get(j, "ttl");
    *has_ttl = false;
    *ttl = 0;
    if (t) {
        if (!json_uint(t, ttl) || *ttl == 0)
            st = CHUTE_ERR_MALFORMED;
        else
            *has_ttl = true;
    }
    json_decref(j);
    return st;
}

chute_status relay_parse_pair_message(const uint8_t *buf, size_t len,
                                      size_t max_len, uint8_t **body,
                                      size_t *body_len)
{
    json_t *j;
    *body = NULL;
    *body_len = 0;
    chute_status st = load_object(buf, len, &j);
    if (st)
        return st;
    json_t *b = json_object_get(j, "body");
    if (!json_is_string(b))
        st = CHUTE_ERR_MALFORMED;
    else
        st = decode_b64(json_string_value(b), json_string_length(b), max_len,
                        body, body_len);
    json_decref(j);
    return st;
}

chute_status relay_parse_empty_object(const uint8_t *buf, size_t len)
{
    json_t *j;
    chute_status st = load_object(buf, len, &j);
    if (st == CHUTE_OK)
        json_decref(j);
    return st;
}

/* --- headers -------------------------------------------------------------- */

chute_status relay_parse_range(const char *h, uint64_t size, uint64_t *first,
                               uint64_t *last)
{
    uint64_t a, b;
    const char *p;
    if (!h || strncmp(h, "bytes=", 6) != 0)
        return CHUTE_ERR_MALFORMED;
    h += 6;
    if (strchr(h, ','))
        return CHUTE_ERR_UNSUPPORTED;
    if (*h == '-') {                        /* suffix: the last b bytes */
        if (parse_digits(h + 1, &b, &p) != CHUTE_OK || *p != '\0')
            return CHUTE_ERR_MALFORMED;
        if (b == 0 || size == 0)
            return CHUTE_ERR_LIMIT;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return CHUTE_OK;
    }
    if (parse_digits(h, &a, &p) != CHUTE_OK || *p != '-')
        return CHUTE_ERR_MALFORMED;
    if (p[1] == '\0') {
        b = UINT64_MAX;
    } else if (parse_digits(p + 1, &b, &p) != CHUTE_OK || *p != '\0' || b < a) {
        return CHUTE_ERR_MALFORMED;
    }
    if (a >= size)
        return CHUTE_ERR_LIMIT;
    *first = a;
    *last = b >= size ? size - 1 : b;
    return CHUTE_OK;
}

/* --- routing -------------------------------------------------------------- */

#define MAX_SEGMENTS 6

/* Split "/a/b/c" into segments; false if too many, empty or too long. */
static int split_path(const char *path, const char *seg[MAX_SEGMENTS],
                      size_t seglen[MAX_SEGMENTS])
{
    int n = 0;
    if (!path || *path != '/')
        return -1;
    const char *p = path + 1;
    while (*p) {
        const char *s = strchr(p, '/');
        size_t l = s ? (size_t)(s - p) : strlen(p);
        if (l == 0 || l > RELAY_ITEM_ID_MAX || n == MAX_SEGMENTS)
            return -1;
        seg[n] = p;
        seglen[n] = l;
        n++;
        if (!s)
            break;
        p = s + 1;
        if (!*p)
            return -1;              /* trailing slash */
    }
    return n;
}

static bool seg_is(const char *s, size_t l, const char *lit)
{
    return strlen(lit) == l && memcmp(s, lit, l) == 0;
}

static void copy_seg(char *dst, const char *s, size_t l)
{
    memcpy(dst, s, l);
    dst[l] = '\0';
}

static void match_route(const char *path, relay_route *out)
{
    const char *s[MAX_SEGMENTS];
    size_t l[MAX_SEGMENTS];
    memset(out, 0, sizeof *out);
    int n = split_path(path, s, l);
    if (n < 1)
        return;
    if (n == 1 && seg_is(s[0], l[0], "metrics")) {
        out->id = RELAY_R_METRICS;
        return;
    }
    if (n < 2 || !seg_is(s[0], l[0], "v1"))
        return;
    if (n == 2 && seg_is(s[1], l[1], "health")) {
        out->id = RELAY_R_HEALTH;
    } else if (seg_is(s[1], l[1], "inboxes")) {
        if (n == 2) {
            out->id = RELAY_R_INBOXES;
            return;
        }
        if (!relay_valid_id(s[2], l[2]))
            return;
        copy_seg(out->a, s[2], l[2]);
        if (n == 3) {
            out->id = RELAY_R_INBOX;
        } else if (seg_is(s[3], l[3], "senders")) {
            if (n == 4)
                out->id = RELAY_R_SENDERS;
            else if (n == 5 && relay_valid_id(s[4], l[4])) {
                copy_seg(out->b, s[4], l[4]);
                out->id = RELAY_R_SENDER;
            }
        } else if (seg_is(s[3], l[3], "items")) {
            if (n == 4) {
                out->id = RELAY_R_ITEMS;
                return;
            }
            if (!relay_valid_item_id(s[4], l[4]))
                return;
            copy_seg(out->b, s[4], l[4]);
            if (n == 5)
                out->id = RELAY_R_ITEM;
            else if (n == 6 && seg_is(s[5], l[5], "status"))
                out->id = RELAY_R_ITEM_STATUS;
            else if (n == 6 && seg_is(s[5], l[5], "data"))
                out->id = RELAY_R_ITEM_DATA;
        }
    } else if (seg_is(s[1], l[1], "pair")) {
        if (n == 2) {
            out->id = RELAY_R_PAIR;
        } else if (n == 4 && seg_is(s[3], l[3], "claim") &&
                   relay_valid_nameplate(s[2], l[2])) {
            copy_seg(out->a, s[2], l[2]);
            out->id = RELAY_R_PAIR_CLAIM;
        } else if (relay_valid_id(s[2], l[2])) {
            copy_seg(out->a, s[2], l[2]);
            if (n == 3)
                out->id = RELAY_R_PAIR_SESSION;
            else if (n == 4 && seg_is(s[3], l[3], "messages"))
                out->id = RELAY_R_PAIR_MESSAGES;
        }
    }
}

void relay_match_route(const char *path, relay_route *out)
{
    match_route(path, out);
    /* No parameters leak out of a path that matched nothing. */
    if (out->id == RELAY_R_NONE) {
        out->a[0] = '\0';
        out->b[0] = '\0';
    }
}

const char *relay_route_methods(relay_route_id id)
{
    switch (id) {
    case RELAY_R_HEALTH:        return "GET, HEAD";
    case RELAY_R_METRICS:       return "GET, HEAD";
    case RELAY_R_INBOXES:       return "POST";
    case RELAY_R_INBOX:         return "GET, HEAD, DELETE";
    case RELAY_R_SENDERS:       return "POST";
    case RELAY_R_SENDER:        return "DELETE";
    case RELAY_R_ITEMS:         return "GET, HEAD";
    case RELAY_R_ITEM:          return "PUT, PATCH, HEAD, DELETE";
    case RELAY_R_ITEM_STATUS:   return "GET, HEAD";
    case RELAY_R_ITEM_DATA:     return "GET, HEAD";
    case RELAY_R_PAIR:          return "POST";
    case RELAY_R_PAIR_CLAIM:    return "POST";
    case RELAY_R_PAIR_SESSION:  return "GET, HEAD, DELETE";
    case RELAY_R_PAIR_MESSAGES: return "GET, HEAD, POST";
    case RELAY_R_NONE:
    case RELAY_R_COUNT:         break;
    }
    return "";
}

bool relay_route_allows(relay_route_id id, const char *method)
{
    const char *m = relay_route_methods(id);
    size_t n = method ? strlen(method) : 0;
    if (n == 0)
        return false;
    for (const char *p = m; (p = strstr(p, method)) != NULL; p += n) {
        bool starts = p == m || p[-1] == ' ';
        bool ends = p[n] == '\0' || p[n] == ',';
        if (starts && ends)
            return true;
    }
    return false;
}
