/* http.c — libmicrohttpd glue: listening, routing, request bodies, replies.
 *
 * MHD runs a small thread pool over epoll; a long-poll suspends its
 * connection (waiters.c) instead of holding a thread. A request's state
 * lives in a `request` from its first handler call to MHD's completion
 * notice, which also flushes an interrupted upload. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "routes.h"

/* --- capabilities ----------------------------------------------------------- */

void make_id(char out[RELAY_ID_CHARS + 1])
{
    uint8_t raw[16];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(out, RELAY_ID_CHARS + 1, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

void make_token(char out[RELAY_TOKEN_CHARS + 1], uint8_t hash[32])
{
    uint8_t raw[32];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(out, RELAY_TOKEN_CHARS + 1, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
    crypto_hash_sha256(hash, (const uint8_t *)out, RELAY_TOKEN_CHARS);
}

char *base64_encode(const uint8_t *bin, size_t len)
{
    size_t n = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(n);
    if (s)
        sodium_bin2base64(s, n, bin, len, sodium_base64_VARIANT_ORIGINAL);
    return s;
}

/* --- reading the request -------------------------------------------------- */

const char *request_header(request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *request_arg(request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

bool request_token_hash(request *r, uint8_t hash[32])
{
    const char *t = relay_bearer_token(request_header(r, MHD_HTTP_HEADER_AUTHORIZATION));
    if (!t)
        return false;
    crypto_hash_sha256(hash, (const uint8_t *)t, RELAY_TOKEN_CHARS);
    return true;
}

bool request_has_access(request *r)
{
    const char *want = r->srv->cfg->access_token;
    if (!want)
        return true;
    const char *got = request_header(r, "Chute-Access-Token");
    if (!got)
        return false;
    /* Hash both so the comparison is constant-time whatever the lengths. */
    uint8_t a[32], b[32];
    crypto_hash_sha256(a, (const uint8_t *)want, strlen(want));
    crypto_hash_sha256(b, (const uint8_t *)got, strlen(got));
    return sodium_memcmp(a, b, sizeof a) == 0;
}

const struct sockaddr *request_client_addr(request *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    return ci ? ci->client_addr : NULL;
}

/* --- answering -------------------------------------------------------------- */

enum MHD_Result reply_response(request *r, unsigned status, struct MHD_Response *resp)
{
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (atomic_load(&r->srv->stopping))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result rc = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    if (rc == MHD_YES) {
        r->status = status;
        metrics_count_response(status);
    }
    return rc;
}

enum MHD_Result reply_json(request *r, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        static const char oom[] = "{\"error\":\"out of memory\"}";
        struct MHD_Response *resp = MHD_create_response_from_buffer(
            sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
        if (resp)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        return reply_response(r, 500, resp);
    }
    if (r->defer) {
        r->defer = false;
        r->deferred = text;
        r->deferred_status = status;
        return MHD_YES;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    return reply_response(r, status, resp);
}

/* Send the answer kept by a deferred reply_json. */
static enum MHD_Result reply_deferred(request *r)
{
    char *text = r->deferred;
    r->deferred = NULL;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    return reply_response(r, r->deferred_status, resp);
}

/* Drain (rather than refuse) the body of a refused PATCH up to this size,
 * unless the client waits for "100 Continue" and so sends no body. */
#define DRAIN_MAX (16u << 20)

static bool should_defer(request *r)
{
    const char *cl = request_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t n;
    return !request_header(r, MHD_HTTP_HEADER_EXPECT) && cl &&
           relay_parse_u64(cl, &n) == CHUTE_OK && n > 0 && n <= DRAIN_MAX;
}

enum MHD_Result reply_error_with(request *r, unsigned status, const char *msg,
                                 json_t *extra)
{
    json_t *o = extra ? extra : json_object();
    if (o)
        json_object_set_new(o, "error", json_string(msg));
    /* Only our own failures are worth a warning; limits are routine. */
    if (status == 500)
        log_warn("%s answered 500: %s", r->method, msg);
    else
        log_debug("%s answered %u: %s", r->method, status, msg);
    return reply_json(r, status, o);
}

enum MHD_Result reply_too_many(request *r, const char *what, uint64_t retry_after)
{
    char msg[96];
    snprintf(msg, sizeof msg, "too many %s; retry later", what);
    json_t *o = json_pack("{s:s,s:I}", "error", msg, "retry_after", (json_int_t)retry_after);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    struct MHD_Response *resp =
        text ? MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    char ra[24];
    snprintf(ra, sizeof ra, "%llu", (unsigned long long)retry_after);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    return reply_response(r, 429, resp);
}

enum MHD_Result reply_error(request *r, unsigned status, const char *msg)
{
    return reply_error_with(r, status, msg, NULL);
}

enum MHD_Result reply_empty(request *r, unsigned status)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    return reply_response(r, status, resp);
}

/* --- the handler -------------------------------------------------------------- */

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind,
                                    const char *key, const char *value)
{
    (void)kind;
    size_t *sum = cls;
    *sum += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

static bool route_takes_json(relay_route_id id)
{
    switch (id) {
    case RELAY_R_INBOXES: case RELAY_R_SENDERS: case RELAY_R_ITEM:
    case RELAY_R_PAIR: case RELAY_R_PAIR_CLAIM: case RELAY_R_PAIR_MESSAGES:
        return true;
    default:
        return false;
    }
}

/* Checks that need only the headers; answers (and returns true) on failure. */
static bool reject_early(request *r, const char *url, enum MHD_Result *rc)
{
    const relay_config *cfg = r->srv->cfg;
    if (atomic_load(&r->srv->stopping)) {
        *rc = reply_error(r, 503, "shutting down");
        return true;
    }
    if ((uint64_t)atomic_load(&r->srv->connections) > cfg->max_conns) {
        *rc = reply_error(r, 503, "too many connections");
        return true;
    }
    /* The request line as sent: method, path, query arguments, version. */
    size_t hdr = strlen(r->method) + strlen(url) + 12;
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, count_header, &hdr);
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, count_header, &hdr);
    if (hdr > cfg->max_header) {
        *rc = reply_error(r, 431, "request header fields too large");
        return true;
    }
    if (r->route.id == RELAY_R_NONE) {
        *rc = reply_error(r, 404, "not found");
        return true;
    }
    if (!relay_route_allows(r->route.id, r->method)) {
        struct MHD_Response *resp = NULL;
        json_t *o = json_pack("{s:s}", "error", "method not allowed");
        char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (text)
            resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            free(text);
            *rc = MHD_NO;
            return true;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, relay_route_methods(r->route.id));
        *rc = reply_response(r, 405, resp);
        return true;
    }
    if (route_takes_json(r->route.id) && strcmp(r->method, "PATCH") != 0) {
        const char *cl = request_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
        uint64_t n;
        if (cl && relay_parse_u64(cl, &n) == CHUTE_OK && n > cfg->max_body) {
            *rc = reply_error(r, 413, "request body too large");
            return true;
        }
    }
    return false;
}

static enum MHD_Result dispatch(request *r)
{
    switch (r->route.id) {
    case RELAY_R_HEALTH: {
        json_t *o = json_pack("{s:s,s:s}", "status", "ok", "version", CHUTE_VERSION);
        return reply_json(r, 200, o);
    }
    case RELAY_R_METRICS: {
        char *text;
        size_t len;
        if (metrics_render(r->srv->store, r->srv->waiters, &text, &len) != CHUTE_OK)
            return reply_error(r, 500, "metrics unavailable");
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            free(text);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "text/plain; version=0.0.4");
        return reply_response(r, 200, resp);
    }
    case RELAY_R_INBOXES: case RELAY_R_INBOX: case RELAY_R_SENDERS: case RELAY_R_SENDER:
        return routes_inbox(r);
    case RELAY_R_ITEMS: case RELAY_R_ITEM: case RELAY_R_ITEM_STATUS: case RELAY_R_ITEM_DATA:
        return routes_item(r);
    case RELAY_R_PAIR: case RELAY_R_PAIR_CLAIM: case RELAY_R_PAIR_SESSION:
    case RELAY_R_PAIR_MESSAGES:
        return routes_pair(r);
    case RELAY_R_NONE: case RELAY_R_COUNT:
        break;
    }
    return reply_error(r, 404, "not found");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
    (void)version;
    server *srv = cls;
    request *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->srv = srv;
        r->conn = conn;
        r->method = method;
        *con_cls = r;
        atomic_fetch_add(&srv->in_flight, 1);
        relay_match_route(url, &r->route);
        /* HEAD is answered as GET wherever there is one (PROTOCOL §6.1):
         * MHD, which knows it is HEAD, leaves the body out. An item's own
         * HEAD (its upload offset) has no GET beside it. */
        if (strcmp(method, "HEAD") == 0 && relay_route_allows(r->route.id, "GET"))
            r->method = "GET";
        enum MHD_Result rc;
        if (reject_early(r, url, &rc))
            return rc;
        if (r->route.id == RELAY_R_ITEM && strcmp(method, "PATCH") == 0) {
            r->defer = should_defer(r);
            rc = routes_item_patch_begin(r);
            r->defer = false;
            return rc;
        }
        return MHD_YES;
    }
    if (r->status)
        return MHD_YES;             /* answered early; MHD drains the body */
    if (r->deferred) {
        if (*data_size) {
            *data_size = 0;         /* dropped: the answer is already known */
            return MHD_YES;
        }
        return reply_deferred(r);
    }
    if (*data_size) {
        if (r->upload) {
            routes_item_patch_data(r, data, *data_size);
        } else if (!r->body_too_big) {
            if (r->body_len + *data_size > srv->cfg->max_body) {
                r->body_too_big = true;
                free(r->body);
                r->body = NULL;
                r->body_len = 0;
            } else {
                char *b = realloc(r->body, r->body_len + *data_size + 1);
                if (!b)
                    return MHD_NO;
                memcpy(b + r->body_len, data, *data_size);
                r->body = b;
                r->body_len += *data_size;
                r->body[r->body_len] = '\0';
            }
        }
        *data_size = 0;
        return MHD_YES;
    }
    if (r->body_too_big)
        return reply_error(r, 413, "request body too large");
    return dispatch(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    server *srv = cls;
    request *r = *con_cls;
    if (!r)
        return;
    if (r->upload)
        routes_item_patch_end(r);       /* the client went away mid-PATCH */
    waiters_forget(srv->waiters, &r->wait);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        log_debug("%s request ended early (%d)", r->method, (int)toe);
    free(r->body);
    free(r->deferred);
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->in_flight, 1);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)conn;
    (void)socket_ctx;
    server *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&srv->connections, 1);
    else if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
        atomic_fetch_sub(&srv->connections, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        line[--n] = '\0';
    log_debug("microhttpd: %s", line);
}

/* --- listening -------------------------------------------------------------- */

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

/* Bind and listen on "HOST:PORT" or "[V6]:PORT"; exit-worthy errors logged. */
static chute_status open_listener(server *srv, int *out_fd, bool *loopback)
{
    const char *spec = srv->cfg->listen;
    char host[256];
    const char *port;
    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');
        if (!end || end[1] != ':' || (size_t)(end - spec - 1) >= sizeof host)
            goto bad;
        memcpy(host, spec + 1, (size_t)(end - spec - 1));
        host[end - spec - 1] = '\0';
        port = end + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        if (!colon || (size_t)(colon - spec) >= sizeof host)
            goto bad;
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        port = colon + 1;
    }
    uint64_t pnum;
    if (relay_parse_u64(port, &pnum) != CHUTE_OK || pnum > 65535)
        goto bad;
    struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
                              .ai_socktype = SOCK_STREAM };
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (gai != 0) {
        log_error("--listen %s: %s", spec, gai_strerror(gai));
        return CHUTE_ERR_ARG;
    }
    *loopback = is_loopback(ai->ai_addr);
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        log_error("cannot listen on %s: %s", spec, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return CHUTE_ERR_IO;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        log_error("getsockname: %s", strerror(errno));
        close(fd);
        return CHUTE_ERR_IO;
    }
    srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *out_fd = fd;
    return CHUTE_OK;
bad:
    log_error("--listen wants ADDR:PORT or [ADDR]:PORT, not '%s'", spec);
    return CHUTE_ERR_ARG;
}

static chute_status read_file(const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        log_error("cannot read %s: %s", path, strerror(errno));
        return CHUTE_ERR_IO;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    chute_status st = CHUTE_OK;
    for (;;) {
        if (len + 4097 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *b = realloc(buf, cap);
            if (!b) {
                st = CHUTE_ERR_NOMEM;
                break;
            }
            buf = b;
        }
        size_t n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n < 4096)
            break;
        if (len > (1u << 20)) {
            log_error("%s is too large for a PEM file", path);
            st = CHUTE_ERR_LIMIT;
            break;
        }
    }
    if (st == CHUTE_OK && ferror(f)) {
        log_error("reading %s: %s", path, strerror(errno));
        st = CHUTE_ERR_IO;
    }
    fclose(f);
    if (st != CHUTE_OK) {
        free(buf);
        return st;
    }
    buf[len] = '\0';
    *out = buf;
    return CHUTE_OK;
}

chute_status http_listen(server *srv)
{
    const relay_config *cfg = srv->cfg;
    bool loopback = false;
    srv->listen_fd = -1;
    chute_status st = open_listener(srv, &srv->listen_fd, &loopback);
    if (st != CHUTE_OK)
        return st;
    srv->tls = cfg->tls_cert != NULL;
    if (!srv->tls && !loopback && !cfg->insecure) {
        log_error("refusing plain HTTP on non-loopback %s: give --tls-cert and "
                  "--tls-key, or --insecure behind a TLS proxy", cfg->listen);
        st = CHUTE_ERR_ARG;
    } else if (srv->tls) {
        if ((st = read_file(cfg->tls_cert, &srv->tls_cert_pem)) == CHUTE_OK)
            st = read_file(cfg->tls_key, &srv->tls_key_pem);
    }
    if (st != CHUTE_OK) {
        close(srv->listen_fd);
        srv->listen_fd = -1;
    }
    return st;
}

chute_status http_start(server *srv)
{
    const relay_config *cfg = srv->cfg;
    int fd = srv->listen_fd;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
                     (srv->tls ? MHD_USE_TLS : 0);
    /* The pool must hold the request line, headers and a read buffer for
     * uploads; max_header itself is checked per request (reject_early).
     * 128 KiB of read buffer: a 1 GiB upload in ~35 KiB reads and writes
     * took the relay ~0.35 s more CPU (of ~1.8) than in bigger ones. But
     * busy connections keep their buffers resident even for small bodies
     * (measured: 64 clients of 4 KiB uploads peaked at 13.6 MiB with 64
     * KiB, 17.7 with 128, 25.7 with 256, which saved no more CPU). */
    size_t mem = (size_t)cfg->max_header + 128 * 1024;
    /* Leave room above max_conns so the excess gets a 503, not a reset. */
    unsigned conn_limit = (unsigned)(cfg->max_conns + 64);
    struct MHD_OptionItem tls_opts[] = {
        { MHD_OPTION_HTTPS_MEM_CERT, 0, srv->tls_cert_pem },
        { MHD_OPTION_HTTPS_MEM_KEY, 0, srv->tls_key_pem },
        { MHD_OPTION_END, 0, NULL },
    };
    srv->daemon_ever_started = true;     /* MHD owns the socket from here */
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,    /* first, to catch all */
        MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->threads,
        MHD_OPTION_CONNECTION_LIMIT, conn_limit,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->max_conns_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->idle_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        MHD_OPTION_ARRAY, srv->tls ? tls_opts : &tls_opts[2],
        MHD_OPTION_END);
    if (!srv->daemon) {
        log_error("cannot start the HTTP server on %s", cfg->listen);
        return CHUTE_ERR_IO;
    }
    return CHUTE_OK;
}

void http_stop(server *srv, unsigned grace_seconds)
{
    if (!srv->daemon)
        return;
    atomic_store(&srv->stopping, true);
    MHD_socket lfd = MHD_quiesce_daemon(srv->daemon);
    waiters_shutdown(srv->waiters);
    struct timespec start, now, nap = { 0, 20 * 1000 * 1000 };
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (atomic_load(&srv->in_flight) > 0) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= (time_t)grace_seconds) {
            log_warn("%d requests still running at shutdown",
                     atomic_load(&srv->in_flight));
            break;
        }
        nanosleep(&nap, NULL);
    }
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);
    srv->listen_fd = -1;
}

void http_close(server *srv)
{
    if (srv->listen_fd >= 0 && !srv->daemon_ever_started)
        close(srv->listen_fd);
    srv->listen_fd = -1;
}
