/* relay_client.c — PROTOCOL §6 over libcurl, one easy handle per client. */
#include "relay_client.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

/* Answers we parse are small JSON documents; a relay that sends more is
 * broken or hostile, so cap what we buffer. Item lists carry up to 1000
 * items with up to 4 KiB of meta each (base64: ~5.5 KiB). */
#define RESPONSE_MAX (8u * 1024u * 1024u)
#define PAIR_BODY_MAX 4096u

struct relay_client {
    CURL *curl;
    char *base_url;
    char *cacert;
    char *pin;
    char *access_token;
    long connect_timeout_ms;
    long timeout_ms;
    const atomic_int *stop;   /* relay_client_set_stop */
    /* last answer */
    long http_status;
    char error[RELAY_ERROR_MAX];
    char reason[RELAY_STATE_MAX];
};

/* A growable buffer for response bodies. */
typedef struct {
    char *data;
    size_t len, cap;
    int overflow;
} rbuf;

/* What the header callback picks out. */
typedef struct {
    uint64_t upload_offset, upload_length;
    uint64_t range_start;      /* Content-Range: bytes <range_start>-... */
    int has_offset, has_length, deferred, has_range;
} rheaders;

/* A streamed upload: fill gives the bytes at upload position pos. */
typedef struct {
    relay_fill_fn fill;
    void *ctx;
    uint64_t pos, left;
    int failed;
} rupload;

/* Streamed download into a sink. An error answer's body is JSON for us,
 * not data for the sink: it goes to errbody instead. The sink gets the
 * bytes from `first` to `last` and no others, whatever range the answer
 * holds: a proxy may answer a Range with 200 and the whole body. */
typedef struct {
    relay_sink_fn sink;
    void *ctx;
    int stopped;
    CURL *curl;
    void *errbody;       /* rbuf */
    const rheaders *hdrs;
    uint64_t first, last;
    int placed;          /* the answer's first byte has been placed */
    int wrong_range;     /* it starts past first: a gap, not our bytes */
    uint64_t pos;        /* offset in the item of the next byte received */
} rdownload;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void curl_global_once(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *dup_opt(const char *s, int *failed)
{
    if (!s || !*s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *failed = 1;
    return d;
}

chute_status relay_client_new(const relay_config *cfg, relay_client **out)
{
    if (!cfg || !cfg->base_url || !*cfg->base_url || !out)
        return CHUTE_ERR_ARG;
    *out = NULL;
    if (strlen(cfg->base_url) >= RELAY_URL_MAX)
        return CHUTE_ERR_ARG;
    pthread_once(&curl_once, curl_global_once);
    if (curl_init_result != CURLE_OK)
        return CHUTE_ERR_NETWORK;

    relay_client *c = calloc(1, sizeof *c);
    if (!c)
        return CHUTE_ERR_NOMEM;
    int failed = 0;
    c->base_url = dup_opt(cfg->base_url, &failed);
    c->cacert = dup_opt(cfg->cacert, &failed);
    c->pin = dup_opt(cfg->pin, &failed);
    c->access_token = dup_opt(cfg->access_token, &failed);
    c->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 10000;
    c->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
    c->curl = failed ? NULL : curl_easy_init();
    if (failed || !c->curl) {
        relay_client_free(c);
        return CHUTE_ERR_NOMEM;
    }
    /* The base URL must not end in '/': paths are appended as "/v1/...". */
    size_t n = strlen(c->base_url);
    while (n > 0 && c->base_url[n - 1] == '/')
        c->base_url[--n] = '\0';
    *out = c;
    return CHUTE_OK;
}

void relay_client_free(relay_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->base_url);
    free(c->cacert);
    free(c->pin);
    if (c->access_token) {
        sodium_memzero(c->access_token, strlen(c->access_token));
        free(c->access_token);
    }
    free(c);
}

long relay_client_http_status(const relay_client *c) { return c ? c->http_status : 0; }
const char *relay_client_error(const relay_client *c) { return c ? c->error : ""; }
const char *relay_client_reason(const relay_client *c) { return c ? c->reason : ""; }

/* ---- curl callbacks --------------------------------------------------- */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    rbuf *b = userdata;
    size_t n = size * nmemb;
    if (b->len + n + 1 > RESPONSE_MAX) {
        b->overflow = 1;
        return 0;   /* makes curl stop with CURLE_WRITE_ERROR */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return 0;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static size_t on_download(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    rdownload *d = userdata;
    size_t n = size * nmemb;
    long code = 0;
    curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &code);
    if (code < 200 || code >= 300)
        return on_body(ptr, size, nmemb, d->errbody);
    if (!d->placed) {
        d->placed = 1;
        /* A 206 starts where its Content-Range says (one that does not say
         * is of no use); a 200 is the whole body. */
        d->pos = code != 206 ? 0 : d->hdrs->has_range ? d->hdrs->range_start : UINT64_MAX;
        if (d->pos > d->first) {
            d->wrong_range = 1;
            return 0;
        }
    }
    /* Before first (a range ignored) or past last: not for the sink. */
    const uint8_t *p = (const uint8_t *)ptr;
    size_t left = n;
    if (d->pos < d->first) {
        uint64_t skip = d->first - d->pos;
        size_t k = skip < left ? (size_t)skip : left;
        p += k;
        left -= k;
        d->pos += k;
    }
    if (left && d->last != UINT64_MAX) {
        uint64_t room = d->pos > d->last ? 0 : d->last - d->pos + 1;
        if (left > room) left = (size_t)room;
    }
    if (left && d->sink(d->ctx, p, left) != 0) {
        d->stopped = 1;
        return 0;
    }
    d->pos += left;
    return n;
}

/* The decimal number at line[*i], after blanks; *i moves past it. */
static int take_u64(const char *line, size_t n, size_t *i, uint64_t *out)
{
    char tmp[32];
    size_t j = 0;
    while (*i < n && (line[*i] == ' ' || line[*i] == '\t'))
        (*i)++;
    while (*i < n && line[*i] >= '0' && line[*i] <= '9' && j + 1 < sizeof tmp)
        tmp[j++] = line[(*i)++];
    if (j == 0)
        return 0;
    tmp[j] = '\0';
    errno = 0;
    unsigned long long v = strtoull(tmp, NULL, 10);
    if (errno)
        return 0;
    *out = v;
    return 1;
}

/* Where the value of header `name` starts in line; 0: another header. */
static size_t header_value(const char *line, size_t n, const char *name)
{
    size_t k = strlen(name);
    if (n <= k + 1 || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return 0;
    return k + 1;
}

static int header_u64(const char *line, size_t n, const char *name,
                      uint64_t *out)
{
    size_t i = header_value(line, n, name);
    if (!i || !take_u64(line, n, &i, out))
        return 0;
    while (i < n && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n'))
        i++;
    return i == n;   /* "12abc" is no number */
}

/* "Content-Range: bytes a-b/N": a, where the body starts. */
static int header_range_start(const char *line, size_t n, uint64_t *out)
{
    size_t i = header_value(line, n, "Content-Range");
    while (i && i < n && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (!i || n - i < 6 || strncasecmp(line + i, "bytes ", 6) != 0)
        return 0;
    i += 6;
    return take_u64(line, n, &i, out) && i < n && line[i] == '-';
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    rheaders *h = userdata;
    size_t n = size * nitems;
    uint64_t v = 0;
    if (header_u64(buf, n, "Upload-Offset", &h->upload_offset))
        h->has_offset = 1;
    else if (header_u64(buf, n, "Upload-Length", &h->upload_length))
        h->has_length = 1;
    else if (header_u64(buf, n, "Upload-Defer-Length", &v) && v == 1)
        h->deferred = 1;
    else if (header_range_start(buf, n, &h->range_start))
        h->has_range = 1;
    return n;
}

static size_t on_upload(char *buffer, size_t size, size_t nitems, void *userdata)
{
    rupload *u = userdata;
    size_t want = size * nitems;
    if (u->left < want)
        want = (size_t)u->left;
    if (want == 0)
        return 0;
    if (u->fill(u->ctx, u->pos, (uint8_t *)buffer, want) != 0) {
        u->failed = 1;
        return CURL_READFUNC_ABORT;
    }
    u->pos += want;
    u->left -= want;
    return want;
}

/* The fill of relay_item_append_fd: the file's bytes at the same offset. */
typedef struct {
    int fd;
    off_t base;   /* file offset of upload position 0 */
} fd_source;

static int fill_from_fd(void *ctx, uint64_t pos, uint8_t *buf, size_t len)
{
    fd_source *f = ctx;
    while (len > 0) {
        ssize_t got = pread(f->fd, buf, len, f->base + (off_t)pos);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)   /* an error, or the file shrank under us */
            return -1;
        buf += got;
        pos += (uint64_t)got;
        len -= (size_t)got;
    }
    return 0;
}

/* ---- one request ------------------------------------------------------- */

typedef struct {
    const char *method;        /* GET POST PUT PATCH DELETE HEAD */
    const char *path;          /* "/v1/..." */
    const char *token;         /* bearer token or NULL */
    int access_token;          /* send Chute-Access-Token if configured */
    const char *json;          /* request body (JSON) or NULL */
    rupload *upload;           /* PATCH body streamed from a file */
    uint64_t upload_len;
    uint64_t upload_offset;    /* Upload-Offset header for PATCH */
    const char *range;         /* "bytes=a-b" or NULL */
    long extra_timeout_ms;     /* long-polls wait this much longer */
    rdownload *download;       /* stream body to a sink instead of buffering */
} rrequest;

static void set_error(relay_client *c, const char *msg)
{
    snprintf(c->error, sizeof c->error, "%s", msg);
}

static chute_status status_for_http(long code)
{
    if (code >= 200 && code < 300)
        return CHUTE_OK;
    switch (code) {
    case 401: return CHUTE_ERR_REFUSED;
    case 404: return CHUTE_ERR_NOT_FOUND;
    case 409: return CHUTE_ERR_EXISTS;
    case 410: return CHUTE_ERR_EXPIRED;
    case 413: case 429: case 507: return CHUTE_ERR_LIMIT;
    default: break;
    }
    return code >= 500 ? CHUTE_ERR_NETWORK : CHUTE_ERR_PROTOCOL;
}

/* src (UTF-8: jansson checked it) into dst, cap bytes with the NUL, fit
 * for a terminal: the relay is not trusted, and its words reach screens
 * and the status file. Control characters (C0, DEL, C1) become '?'; a
 * cut never splits a character. */
static void copy_printable(char *dst, size_t cap, const char *src)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p;) {
        size_t len = *p < 0x80 ? 1 : *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : 2;
        for (size_t k = 1; k < len; k++)
            if (!p[k]) len = k;               /* never past the end */
        bool control = *p < 0x20 || *p == 0x7f || (*p == 0xc2 && len == 2 && p[1] < 0xa0);
        size_t out = control ? 1 : len;
        if (o + out + 1 > cap)
            break;
        if (control)
            dst[o] = '?';
        else
            memcpy(dst + o, p, len);
        o += out;
        p += len;
    }
    dst[o] = '\0';
}

/* Pick "error" and "reason" out of an error body, if it is JSON. */
static void take_error_body(relay_client *c, const rbuf *b)
{
    if (!b->data || b->len == 0)
        return;
    json_t *j = json_loadb(b->data, b->len, 0, NULL);
    if (!j)
        return;
    const char *e = json_string_value(json_object_get(j, "error"));
    const char *r = json_string_value(json_object_get(j, "reason"));
    if (e)
        copy_printable(c->error, sizeof c->error, e);
    if (r)
        copy_printable(c->reason, sizeof c->reason, r);
    json_decref(j);
}

void relay_client_set_stop(relay_client *c, const atomic_int *stop)
{
    if (c)
        c->stop = stop;
}

long relay_client_set_timeout(relay_client *c, long timeout_ms)
{
    if (!c)
        return 0;
    long before = c->timeout_ms;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
    return before;
}

/* curl calls this at least about once a second, even on an idle
 * connection: a non-zero answer aborts the transfer. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal; (void)dlnow; (void)ultotal; (void)ulnow;
    const relay_client *c = arg;
    return atomic_load(c->stop) != 0;
}

static chute_status perform(relay_client *c, const rrequest *rq, rbuf *body,
                            rheaders *hdrs)
{
    c->http_status = 0;
    c->error[0] = '\0';
    c->reason[0] = '\0';

    size_t url_len = strlen(c->base_url) + strlen(rq->path) + 1;
    char *url = malloc(url_len);
    if (!url)
        return CHUTE_ERR_NOMEM;
    snprintf(url, url_len, "%s%s", c->base_url, rq->path);

    CURL *h = c->curl;
    curl_easy_reset(h);
    struct curl_slist *headers = NULL, *tmp;
    chute_status st = CHUTE_OK;
    char line[256];

#define ADD_HEADER(s) do { \
        tmp = curl_slist_append(headers, (s)); \
        if (!tmp) { st = CHUTE_ERR_NOMEM; goto out; } \
        headers = tmp; } while (0)

    if (rq->token) {
        if (strlen(rq->token) >= RELAY_TOKEN_MAX) {
            st = CHUTE_ERR_ARG;
            goto out;
        }
        snprintf(line, sizeof line, "Authorization: Bearer %s", rq->token);
        tmp = curl_slist_append(headers, line);
        sodium_memzero(line, sizeof line);   /* the token: keep no stray copy */
        if (!tmp) {
            st = CHUTE_ERR_NOMEM;
            goto out;
        }
        headers = tmp;
    }
    if (rq->access_token && c->access_token) {
        if (strlen(c->access_token) >= 200) {
            st = CHUTE_ERR_ARG;
            goto out;
        }
        snprintf(line, sizeof line, "Chute-Access-Token: %s", c->access_token);
        tmp = curl_slist_append(headers, line);
        sodium_memzero(line, sizeof line);
        if (!tmp) {
            st = CHUTE_ERR_NOMEM;
            goto out;
        }
        headers = tmp;
    }
    /* No 100-continue round trip: bodies are small or the relay is ours. */
    ADD_HEADER("Expect:");

    CURLcode cc = CURLE_OK;
#define SET(opt, val) do { if (cc == CURLE_OK) cc = curl_easy_setopt(h, opt, val); } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_NOSIGNAL, 1L);          /* thread-safe timeouts */
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);    /* a capability never follows a redirect */
    SET(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    if (rq->upload || rq->download) {
        /* Bodies may be gigabytes: no overall limit, but a transfer that
         * moves under 1 byte/s for the timeout is cut. */
        SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
        SET(CURLOPT_LOW_SPEED_TIME, (c->timeout_ms + 999) / 1000);
    } else {
        SET(CURLOPT_TIMEOUT_MS, c->timeout_ms + rq->extra_timeout_ms);
    }
    if (c->stop) {
        SET(CURLOPT_NOPROGRESS, 0L);
        SET(CURLOPT_XFERINFOFUNCTION, on_progress);
        SET(CURLOPT_XFERINFODATA, c);
    }
    SET(CURLOPT_USERAGENT, "chute/" CHUTE_VERSION);
    if (c->cacert)
        SET(CURLOPT_CAINFO, c->cacert);
    if (c->pin) {
        SET(CURLOPT_PINNEDPUBLICKEY, c->pin);
        /* A pinned key is the stronger check; a pinned relay may use a
         * self-signed certificate that no CA store knows. */
        if (!c->cacert) {
            SET(CURLOPT_SSL_VERIFYPEER, 0L);
            SET(CURLOPT_SSL_VERIFYHOST, 0L);
        }
    }
    if (rq->download) {
        rq->download->curl = h;
        rq->download->errbody = body;
        rq->download->hdrs = hdrs;
        SET(CURLOPT_WRITEFUNCTION, on_download);
        SET(CURLOPT_WRITEDATA, rq->download);
        /* 16 KiB pieces (curl's default) mean 64 sink calls per MiB: a
         * bigger buffer lets the receiver write and decrypt in bulk. */
        SET(CURLOPT_BUFFERSIZE, 256L * 1024);
    } else {
        SET(CURLOPT_WRITEFUNCTION, on_body);
        SET(CURLOPT_WRITEDATA, body);
    }
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, hdrs);

    if (strcmp(rq->method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (rq->upload) {
        snprintf(line, sizeof line, "Upload-Offset: %" PRIu64, rq->upload_offset);
        ADD_HEADER(line);
        ADD_HEADER("Content-Type: application/offset+octet-stream");
        SET(CURLOPT_UPLOAD, 1L);
        SET(CURLOPT_CUSTOMREQUEST, rq->method);
        SET(CURLOPT_READFUNCTION, on_upload);
        SET(CURLOPT_READDATA, rq->upload);
        SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->upload_len);
    } else if (rq->json) {
        ADD_HEADER("Content-Type: application/json");
        SET(CURLOPT_POSTFIELDS, rq->json);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(rq->json));
        if (strcmp(rq->method, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, rq->method);
    } else if (strcmp(rq->method, "GET") != 0) {
        SET(CURLOPT_CUSTOMREQUEST, rq->method);
    }
    if (rq->range)
        SET(CURLOPT_RANGE, rq->range);
    SET(CURLOPT_HTTPHEADER, headers);
#undef SET
    if (cc != CURLE_OK) {
        set_error(c, curl_easy_strerror(cc));
        st = CHUTE_ERR_ARG;
        goto out;
    }

    cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->http_status);
    if (cc != CURLE_OK) {
        if (body && body->overflow) {
            set_error(c, "relay answer too large");
            st = CHUTE_ERR_PROTOCOL;
        } else if (rq->download && rq->download->stopped) {
            set_error(c, "download stopped by its sink");
            st = CHUTE_ERR_IO;
        } else if (rq->download && rq->download->wrong_range) {
            set_error(c, "the answer holds bytes from past the offset asked for");
            st = CHUTE_ERR_NETWORK;
        } else if (rq->upload && rq->upload->failed) {
            set_error(c, "reading the upload's source failed");
            st = CHUTE_ERR_IO;
        } else {
            set_error(c, curl_easy_strerror(cc));
            st = CHUTE_ERR_NETWORK;
        }
        goto out;
    }
    st = status_for_http(c->http_status);
    if (st != CHUTE_OK) {
        char generic[64];
        snprintf(generic, sizeof generic, "HTTP %ld", c->http_status);
        set_error(c, generic);
        if (body)
            take_error_body(c, body);
    }
out:
#undef ADD_HEADER
    curl_slist_free_all(headers);
    free(url);
    return st;
}

/* A request whose answer is a JSON object (or nothing). *json_out, if
 * given, gets the parsed object of a 2xx answer. */
static chute_status call(relay_client *c, const rrequest *rq, json_t **json_out,
                         rheaders *hdrs_out)
{
    rbuf body = {0};
    rheaders hdrs = {0};
    if (json_out)
        *json_out = NULL;
    chute_status st = perform(c, rq, &body, &hdrs);
    if (st == CHUTE_OK && json_out) {
        json_t *j = body.data ? json_loadb(body.data, body.len, 0, NULL) : NULL;
        if (!j || !json_is_object(j)) {
            json_decref(j);
            set_error(c, "relay answer is not a JSON object");
            st = CHUTE_ERR_PROTOCOL;
        } else {
            *json_out = j;
        }
    }
    if (hdrs_out)
        *hdrs_out = hdrs;
    free(body.data);
    return st;
}

/* ---- helpers for answers ---------------------------------------------- */

/* Copy a JSON string field into a fixed buffer; missing, not a string or
 * too long is a protocol error. */
static chute_status get_str(relay_client *c, json_t *o, const char *key,
                            char *dst, size_t cap)
{
    const char *s = json_string_value(json_object_get(o, key));
    /* Ids, tokens, nameplates and states are printable ASCII words: the
     * relay is not trusted, and a state reaches the status file. */
    bool word = s != NULL;
    for (const char *p = s; word && *p; p++)
        word = *p > ' ' && *p < 0x7f;
    if (!word || strlen(s) >= cap) {
        char msg[96];
        snprintf(msg, sizeof msg, "relay answer lacks a valid \"%s\"", key);
        set_error(c, msg);
        return CHUTE_ERR_PROTOCOL;
    }
    memcpy(dst, s, strlen(s) + 1);
    return CHUTE_OK;
}

static long long get_int(json_t *o, const char *key, long long dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

/* Path segments come from our own state or the relay; still refuse
 * anything that would change the path's shape. */
static int segment_ok(const char *s)
{
    if (!s || !*s || strlen(s) >= RELAY_ID_MAX)
        return 0;
    for (const char *p = s; *p; p++) {
        char ch = *p;
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
            return 0;
    }
    return 1;
}

#define PATH_MAX_LEN 256

/* ---- health and inboxes ------------------------------------------------ */

chute_status relay_health(relay_client *c)
{
    json_t *j;
    rrequest rq = { .method = "GET", .path = "/v1/health" };
    chute_status st = call(c, &rq, &j, NULL);
    if (st != CHUTE_OK)
        return st;
    const char *s = json_string_value(json_object_get(j, "status"));
    if (!s || strcmp(s, "ok") != 0) {
        set_error(c, "relay is not healthy");
        st = CHUTE_ERR_PROTOCOL;
    }
    json_decref(j);
    return st;
}

chute_status relay_inbox_create(relay_client *c, relay_inbox *out)
{
    json_t *j;
    rrequest rq = { .method = "POST", .path = "/v1/inboxes", .json = "{}",
                    .access_token = 1 };
    chute_status st = call(c, &rq, &j, NULL);
    if (st != CHUTE_OK)
        return st;
    st = get_str(c, j, "inbox", out->inbox, sizeof out->inbox);
    if (st == CHUTE_OK)
        st = get_str(c, j, "owner_token", out->owner_token, sizeof out->owner_token);
    json_decref(j);
    return st;
}

chute_status relay_inbox_get(relay_client *c, const char *inbox,
                             const char *owner_token, relay_inbox_info *out)
{
    if (!segment_ok(inbox))
        return CHUTE_ERR_ARG;
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "/v1/inboxes/%s", inbox);
    json_t *j;
    rrequest rq = { .method = "GET", .path = path, .token = owner_token };
    chute_status st = call(c, &rq, &j, NULL);
    if (st != CHUTE_OK)
        return st;
    out->items = get_int(j, "items", 0);
    out->bytes = get_int(j, "bytes", 0);
    out->quota_items = get_int(j, "quota_items", 0);
    out->quota_bytes = get_int(j, "quota_bytes", 0);
    out->senders = get_int(j, "senders", 0);
    json_decref(j);
    return CHUTE_OK;
}

chute_status relay_inbox_delete(relay_client *c, const char *inbox,
                                const char *owner_token)
{
    if (!segment_ok(inbox))
        return CHUTE_ERR_ARG;
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "/v1/inboxes/%s", inbox);
    rrequest rq = { .method = "DELETE", .path = path, .token = owner_token };
    return call(c, &rq, NULL, NULL);
}

chute_status relay_sender_add(relay_client *c, const char *inbox,
                              const char *owner_token, relay_sender *out)
{
    if (!segment_ok(inbox))
        return CHUTE_ERR_ARG;
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "/v1/inboxes/%s/senders", inbox);
    json_t *j;
    rrequest rq = { .method = "POST", .path = path, .token = owner_token,
                    .json = "{}" };
    chute_status st = call(c, &rq, &j, NULL);
    if (st != CHUTE_OK)
        return st;
    st = get_str(c, j, "sender", out->sender, sizeof out->sender);
    if (st == CHUTE_OK)
        st = get_str(c, j, "send_token", out->send_token, sizeof out->send_token);
    json_decref(j);
    return st;
}

chute_status relay_sender_revoke(relay_client *c, const char *inbox,
                                 const char *owner_token, const char *sender)
{
    if (!segment_ok(inbox) || !segment_ok(sender))
        return CHUTE_ERR_ARG;
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "/v1/inboxes/%s/senders/%s", inbox, sender);
    rrequest rq = { .method = "DELETE", .path = path, .token = owner_token };
    return call(c, &rq, NULL, NULL);
}

/* ---- items ------------------------------------------------------------- */

static chute_status item_path(char path[PATH_MAX_LEN], const char *inbox,
                              const char *item, const char *suffix)
{
    if (!segment_ok(inbox) || !segment_ok(item))
        return CHUTE_ERR_ARG;
    snprintf(path, PATH_MAX_LEN, "/v1/inboxes/%s/items/%s%s", inbox, item, suffix);
    return CHUTE_OK;
}

static chute_status take_item_state(relay_client *c, json_t *j,
                                    relay_item_state *out)
{
    chute_status st = get_str(c, j, "item", out->item, sizeof out->item);
    if (st == CHUTE_OK)
        st = get_str(c, j, "state", out->state, sizeof out->state);
    out->deferred = json_is_true(json_object_get(j, "deferred"));
    long long size = out->deferred ? 0 : get_int(j, "size", -1);
    long long offset = get_int(j, "offset", -1);
    if (st == CHUTE_OK && (size < 0 || offset < 0 || (!out->deferred && offset > size))) {
        set_error(c, "relay answer has a bad size or offset");
        st = CHUTE_ERR_PROTOCOL;
    }
    out->size = (uint64_t)size;
    out->offset = (uint64_t)offset;
    return st;
}

chute_status relay_item_create(relay_client *c, const char *inbox,
                               const char *send_token, const char *item,
                               uint64_t size, const char *meta_b64,
                               relay_item_state *out)
{
    char path[PATH_MAX_LEN];
    chute_status st = item_path(path, inbox, item, "");
    if (st != CHUTE_OK || !meta_b64 || size > (uint64_t)INT64_MAX)
        return st ? st : CHUTE_ERR_ARG;
    json_t *req = json_pack("{s:I,s:s}", "size", (json_int_t)size, "meta", meta_b64);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!text)
        return CHUTE_ERR_NOMEM;
    json_t *j;
    rrequest rq = { .method = "PUT", .path = path, .token = send_token,
                    .json = text };
    st = call(c, &rq, &j, NULL);
    free(text);
    if (st != CHUTE_OK)
        return st;
    st = take_item_state(c, j, out);
    json_decref(j);
    return st;
}

chute_status relay_item_create_deferred(relay_client *c, const char *inbox,
                                        const char *send_token, const char *item,
                                        relay_item_state *out)
{
    char path[PATH_MAX_LEN];
    chute_status st = item_path(path, inbox, item, "");
    if (st != CHUTE_OK)
        return st;
    json_t *j;
    rrequest rq = { .method = "PUT", .path = path, .token = send_token,
                    .json = "{\"deferred\":true}" };
    st = call(c, &rq, &j, NULL);
    if (st != CHUTE_OK)
        return st;
    st = take_item_state(c, j, out);
    if (st == CHUTE_OK && !out->deferred) {
        set_error(c, "relay does not take items of deferred length");
        st = CHUTE_ERR_PROTOCOL;
    }
    json_decref(j);
    return st;
}

/* PATCH of len bytes from u at upload offset `offset`. */
static chute_status append(relay_client *c, const char *inbox, const char *send_token,
                           const char *item, uint64_t offset, rupload *u,
                           uint64_t *new_offset)
{
    char path[PATH_MAX_LEN];
    chute_status st = item_path(path, inbox, item, "");
    if (st != CHUTE_OK)
        return st;
    rrequest rq = { .method = "PATCH", .path = path, .token = send_token,
                    .upload = u, .upload_len = u->left, .upload_offset = offset };
    rbuf body = {0};
    rheaders hdrs = {0};
    st = perform(c, &rq, &body, &hdrs);
    if (st == CHUTE_OK) {
        uint64_t len = rq.upload_len, got = hdrs.upload_offset;
        if (!hdrs.has_offset) {
            set_error(c, "relay answer lacks Upload-Offset");
            st = CHUTE_ERR_PROTOCOL;
        } else if (len ? got <= offset || got - offset > len : got != offset) {
            /* The sender resumes from here: not past the request's offset
             * it would resend the same bytes for ever; past its end it
             * would count bytes never sent. */
            snprintf(c->error, sizeof c->error, "relay answered Upload-Offset %" PRIu64
                     " to a PATCH of %" PRIu64 " bytes at %" PRIu64, got, len, offset);
            st = CHUTE_ERR_PROTOCOL;
        } else {
            *new_offset = got;
        }
    } else if (st == CHUTE_ERR_EXISTS && body.data) {
        json_t *j = json_loadb(body.data, body.len, 0, NULL);
        long long cur = j ? get_int(j, "offset", -1) : -1;
        if (cur >= 0)
            *new_offset = (uint64_t)cur;
        json_decref(j);
    }
    free(body.data);
    return st;
}

chute_status relay_item_append_fd(relay_client *c, const char *inbox,
                                  const char *send_token, const char *item,
                                  uint64_t offset, int fd, off_t file_offset,
                                  uint64_t len, uint64_t *new_offset)
{
    if (fd < 0 || file_offset < 0 || !new_offset)
        return CHUTE_ERR_ARG;
    fd_source f = { .fd = fd, .base = file_offset };
    rupload u = { .fill = fill_from_fd, .ctx = &f, .left = len };
    return append(c, inbox, send_token, item, offset, &u, new_offset);
}

chute_status relay_item_append_source(relay_client *c, const char *inbox,
                                      const char *send_token, const char *item,
                                      uint64_t offset, uint64_t len,
                                      relay_fill_fn fill, void *ctx,
                                      uint64_t *new_offset)
{
    if (!fill || !new_offset)
        return CHUTE_ERR_ARG;
    rupload u = { .fill = fill, .ctx = ctx, .pos = offset, .left = len };
    return append(c, inbox, send_token, item, offset, &u, new_offset);
}

chute_status relay_item_offset(relay_client *c, const char *inbox,
                               const char *token, const char *item,
                               uint64_t *offset, uint64_t *length)
{
    char path[PATH_MAX_LEN];
    chute_status st = item_path(path, inbox, item, "");
    if (st != CHUTE_OK)
        return st;
    rheaders hdrs;
    rrequest rq = { .method = "HEAD", .path = path, .token = token };
    st = call(c, &rq, NULL, &hdrs);
    if (st != CHUTE_OK)
        return st;
    if (!hdrs.has_offset || (!hdrs.has_length && !hdrs.deferred)) {
        set_error(c, "relay answer lacks Upload-Offset or Upload-Length");
        return CHUTE_ERR_PROTOCOL;
    }
    if (offset)
        *offset = hdrs.upload_offset;
    if (length)
        *length = hdrs.has_length ? hdrs.upload_length : RELAY_LENGTH_DEFERRED;
    return CHUTE_OK;
}

chute_status relay_item_status(relay_client *c, const char *inbox,
                               const char *token, const char *item,
                               relay_item_state *out)
{
    char path[PATH_MAX_LEN];
    chute_status st = item_path(path, inbox, item, "/status");
    if (st != CHUTE_OK)
        return st;
    json_t *j;
    rrequest rq = { .method = "GET", .path = path, .token = token };
    st = call(c, &rq, &j, NULL);
    if (st != CHUTE_OK)
        return st;
    st = take_item_state(c, j, out);
    json_decref(j);
    return st;
}

static chute_status item_delete(relay_client *c, const char *inbox,
                                const char *token, const char *item, const char *query)
{
    char path[PATH_MAX_LEN];
    chute_status st = item_path(path, inbox, item, query);
    if (st != CHUTE_OK)
        return st;
    rrequest rq = { .method = "DELETE", .path = path, .token = token };
    return call(c, &rq, NULL, NULL);
}

chute_status relay_item_cancel(relay_client *c, const char *inbox,
                               const char *send_token, const char *item)
{
    return item_delete(c, inbox, send_token, item, "");
}

chute_status relay_item_ack(relay_client *c, const char *inbox,
                            const char *owner_token, const char *item)
{
    return item_delete(c, inbox, owner_token, item, "");
}

chute_status relay_item_reject(relay_client *c, const char *inbox,
                               const char *owner_token, const char *item)
{
    return item_delete(c, inbox, owner_token, item, "?reject=1");
}

void relay_item_list_free(relay_item_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i].meta_b64);
    free(l->items);
    memset(l, 0, sizeof *l);
}

chute_status relay_items_list(relay_client *c, const char *inbox,
                              const char *owner_token, uint64_t after,
                              int wait_s, int partial, relay_item_list *out)
{
    memset(out, 0, sizeof *out);
    if (!segment_ok(inbox) || wait_s < 0)
        return CHUTE_ERR_ARG;
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "/v1/inboxes/%s/items?after=%" PRIu64 "&wait=%d%s",
             inbox, after, wait_s, partial ? "&partial=1" : "");
    json_t *j;
    rrequest rq = { .method = "GET", .path = path, .token = owner_token,
                    .extra_timeout_ms = (long)wait_s * 1000 };
    chute_status st = call(c, &rq, &j, NULL);
    if (st != CHUTE_OK)
        return st;
    json_t *items = json_object_get(j, "items");
    long long cursor = get_int(j, "cursor", -1);
    if (!json_is_array(items) || cursor < 0) {
        set_error(c, "relay item list is malformed");
        json_decref(j);
        return CHUTE_ERR_PROTOCOL;
    }
    size_t n = json_array_size(items);
    out->cursor = (uint64_t)cursor;
    out->items = n ? calloc(n, sizeof *out->items) : NULL;
    if (n && !out->items) {
        json_decref(j);
        return CHUTE_ERR_NOMEM;
    }
    for (size_t i = 0; i < n && st == CHUTE_OK; i++) {
        json_t *it = json_array_get(items, i);
        relay_listed_item *li = &out->items[i];
        out->count = i + 1;
        st = get_str(c, it, "item", li->item, sizeof li->item);
        if (st == CHUTE_OK)
            st = get_str(c, it, "sender", li->sender, sizeof li->sender);
        li->deferred = json_is_true(json_object_get(it, "deferred"));
        long long seq = get_int(it, "seq", -1);
        long long size = li->deferred ? 0 : get_int(it, "size", -1);
        const char *meta = json_string_value(json_object_get(it, "meta"));
        json_t *complete = json_object_get(it, "complete");
        li->complete = complete ? json_is_true(complete) : 1;
        if (st == CHUTE_OK && (seq < 0 || size < 0 || (!meta && !li->deferred) ||
                               (li->deferred && li->complete))) {
            set_error(c, "relay item list entry is malformed");
            st = CHUTE_ERR_PROTOCOL;
        }
        if (st != CHUTE_OK)
            break;
        li->seq = (uint64_t)seq;
        li->size = (uint64_t)size;
        long long off = get_int(it, "offset", li->complete ? size : 0);
        li->offset = off < 0 ? 0 : (uint64_t)off;
        li->created = get_int(it, "created", 0);
        li->meta_b64 = li->deferred ? NULL : strdup(meta);
        if (!li->deferred && !li->meta_b64)
            st = CHUTE_ERR_NOMEM;
    }
    json_decref(j);
    if (st != CHUTE_OK)
        relay_item_list_free(out);
    return st;
}

chute_status relay_item_download(relay_client *c, const char *inbox,
                                 const char *owner_token, const char *item,
                                 uint64_t first, uint64_t last,
                                 relay_sink_fn sink, void *ctx)
{
    char path[PATH_MAX_LEN];
    chute_status st = item_path(path, inbox, item, "/data");
    if (st != CHUTE_OK)
        return st;
    if (!sink || first > last)
        return CHUTE_ERR_ARG;
    char range[64];
    const char *range_p = NULL;
    if (first != 0 || last != UINT64_MAX) {
        if (last == UINT64_MAX)
            snprintf(range, sizeof range, "%" PRIu64 "-", first);
        else
            snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, first, last);
        range_p = range;
    }
    rdownload dl = { .sink = sink, .ctx = ctx, .first = first, .last = last };
    rrequest rq = { .method = "GET", .path = path, .token = owner_token,
                    .range = range_p, .download = &dl };
    rbuf errbody = {0};
    st = perform(c, &rq, &errbody, &(rheaders){0});
    free(errbody.data);
    return st;
}

/* ---- pairing rendezvous ------------------------------------------------ */

chute_status relay_pair_allocate(relay_client *c, long ttl_s,
                                 relay_pair_side *out)
{
    memset(out, 0, sizeof *out);
    if (ttl_s < 0)
        return CHUTE_ERR_ARG;
    char req[64];
    if (ttl_s > 0)
        snprintf(req, sizeof req, "{\"ttl\":%ld}", ttl_s);
    else
        snprintf(req, sizeof req, "{}");
    json_t *j;
    rrequest rq = { .method = "POST", .path = "/v1/pair", .json = req,
                    .access_token = 1 };
    chute_status st = call(c, &rq, &j, NULL);
    if (st != CHUTE_OK)
        return st;
    st = get_str(c, j, "nameplate", out->nameplate, sizeof out->nameplate);
    if (st == CHUTE_OK)
        st = get_str(c, j, "session", out->session, sizeof out->session);
    if (st == CHUTE_OK)
        st = get_str(c, j, "token", out->token, sizeof out->token);
    out->expires = get_int(j, "expires", 0);
    out->ttl = get_int(j, "ttl", -1);
    json_decref(j);
    if (st == CHUTE_OK && (!segment_ok(out->nameplate) || !segment_ok(out->session))) {
        set_error(c, "relay sent a malformed nameplate or session");
        st = CHUTE_ERR_PROTOCOL;
    }
    if (st != CHUTE_OK)
        sodium_memzero(out, sizeof *out);
    return st;
}

chute_status relay_pair_claim(relay_client *c, const char *nameplate,
                              relay_pair_side *out)
{
    memset(out, 0, sizeof *out);
    if (!segment_ok(nameplate) || strlen(nameplate) >= RELAY_NAMEPLATE_BUF)
        return CHUTE_ERR_ARG;
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "/v1/pair/%s/claim", nameplate);
    json_t *j;
    rrequest rq = { .method = "POST", .path = path, .json = "{}" };
    chute_status st = call(c, &rq, &j, NULL);
    if (st != CHUTE_OK)
        return st;
    st = get_str(c, j, "session", out->session, sizeof out->session);
    if (st == CHUTE_OK)
        st = get_str(c, j, "token", out->token, sizeof out->token);
    out->expires = get_int(j, "expires", 0);
    out->ttl = get_int(j, "ttl", -1);
    json_decref(j);
    if (st == CHUTE_OK && !segment_ok(out->session)) {
        set_error(c, "relay sent a malformed session");
        st = CHUTE_ERR_PROTOCOL;
    }
    if (st != CHUTE_OK)
        sodium_memzero(out, sizeof *out);
    return st;
}

chute_status relay_pair_state(relay_client *c, const relay_pair_side *side,
                              char state[RELAY_STATE_MAX], long long *expires)
{
    if (!segment_ok(side->session))
        return CHUTE_ERR_ARG;
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "/v1/pair/%s", side->session);
    json_t *j;
    rrequest rq = { .method = "GET", .path = path, .token = side->token };
    chute_status st = call(c, &rq, &j, NULL);
    if (st != CHUTE_OK)
        return st;
    st = get_str(c, j, "state", state, RELAY_STATE_MAX);
    if (expires)
        *expires = get_int(j, "expires", 0);
    json_decref(j);
    return st;
}

chute_status relay_pair_send(relay_client *c, const relay_pair_side *side,
                             const uint8_t *body, size_t len, uint64_t *seq)
{
    if (!segment_ok(side->session) || !body || len == 0 || len > PAIR_BODY_MAX)
        return CHUTE_ERR_ARG;
    size_t b64_len = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    size_t req_len = b64_len + 32;
    char *req = malloc(req_len);
    if (!req)
        return CHUTE_ERR_NOMEM;
    memcpy(req, "{\"body\":\"", 9);
    sodium_bin2base64(req + 9, b64_len, body, len, sodium_base64_VARIANT_ORIGINAL);
    size_t n = strlen(req);
    memcpy(req + n, "\"}", 3);

    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "/v1/pair/%s/messages", side->session);
    json_t *j;
    rrequest rq = { .method = "POST", .path = path, .token = side->token,
                    .json = req };
    chute_status st = call(c, &rq, &j, NULL);
    free(req);
    if (st != CHUTE_OK)
        return st;
    if (seq)
        *seq = (uint64_t)get_int(j, "seq", 0);
    json_decref(j);
    return CHUTE_OK;
}

void relay_pair_inbox_free(relay_pair_inbox *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->count; i++) {
        if (m->messages[i].body) {
            sodium_memzero(m->messages[i].body, m->messages[i].len);
            free(m->messages[i].body);
        }
    }
    free(m->messages);
    memset(m, 0, sizeof *m);
}

chute_status relay_pair_receive(relay_client *c, const relay_pair_side *side,
                                uint64_t after, int wait_s,
                                relay_pair_inbox *out)
{
    memset(out, 0, sizeof *out);
    if (!segment_ok(side->session) || wait_s < 0)
        return CHUTE_ERR_ARG;
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "/v1/pair/%s/messages?after=%" PRIu64 "&wait=%d",
             side->session, after, wait_s);
    json_t *j;
    rrequest rq = { .method = "GET", .path = path, .token = side->token,
                    .extra_timeout_ms = (long)wait_s * 1000 };
    chute_status st = call(c, &rq, &j, NULL);
    if (st != CHUTE_OK)
        return st;
    json_t *msgs = json_object_get(j, "messages");
    const char *state = json_string_value(json_object_get(j, "state"));
    if (!json_is_array(msgs)) {
        set_error(c, "relay message list is malformed");
        json_decref(j);
        return CHUTE_ERR_PROTOCOL;
    }
    snprintf(out->state, sizeof out->state, "%s", state ? state : "");
    size_t n = json_array_size(msgs);
    out->messages = n ? calloc(n, sizeof *out->messages) : NULL;
    if (n && !out->messages) {
        json_decref(j);
        return CHUTE_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        long long s = get_int(m, "seq", -1);
        const char *b64 = json_string_value(json_object_get(m, "body"));
        size_t b64_len = b64 ? strlen(b64) : 0;
        if (s < 0 || !b64 || b64_len > (PAIR_BODY_MAX / 3 + 1) * 4) {
            set_error(c, "relay message is malformed");
            st = CHUTE_ERR_PROTOCOL;
            break;
        }
        relay_pair_message *pm = &out->messages[i];
        out->count = i + 1;
        pm->seq = (uint64_t)s;
        pm->body = malloc(b64_len / 4 * 3 + 3);
        if (!pm->body) {
            st = CHUTE_ERR_NOMEM;
            break;
        }
        if (sodium_base642bin(pm->body, b64_len / 4 * 3 + 3, b64, b64_len, NULL,
                              &pm->len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
            set_error(c, "relay message body is not base64");
            st = CHUTE_ERR_PROTOCOL;
            break;
        }
    }
    json_decref(j);
    if (st != CHUTE_OK)
        relay_pair_inbox_free(out);
    return st;
}

chute_status relay_pair_close(relay_client *c, const relay_pair_side *side)
{
    if (!segment_ok(side->session))
        return CHUTE_ERR_ARG;
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "/v1/pair/%s", side->session);
    rrequest rq = { .method = "DELETE", .path = path, .token = side->token };
    return call(c, &rq, NULL, NULL);
}
