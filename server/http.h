/* http.h — the HTTP side of chuted: the libmicrohttpd daemon, one request's
 * state, and the helpers route handlers answer with.
 *
 * Data flows one way: http.c parses and routes a request, a routes_*.c
 * handler checks capabilities and calls store/blobs, then answers through
 * the reply helpers here. */
#ifndef CHUTED_HTTP_H
#define CHUTED_HTTP_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "blobs.h"
#include "config.h"
#include "ratelimit.h"
#include "relay_wire.h"
#include "store.h"
#include "waiters.h"

struct json_t;
struct upload;

/* Everything a handler may use; one per process. */
typedef struct server {
    const relay_config *cfg;
    store *store;
    blobs *blobs;
    waiters *waiters;
    ratelimit *ratelimit;
    struct MHD_Daemon *daemon;
    uint16_t port;
    int listen_fd;              /* bound by http_listen, then MHD's */
    bool daemon_ever_started;
    bool tls;
    atomic_bool stopping;       /* refuse new requests with 503 */
    atomic_int connections;     /* open TCP connections */
    atomic_int in_flight;       /* requests begun and not completed */
    char *tls_cert_pem, *tls_key_pem;
} server;

/* One request, from its headers to its completion. */
typedef struct request {
    server *srv;
    struct MHD_Connection *conn;
    relay_route route;
    const char *method;
    unsigned status;            /* of the reply queued, 0 before */
    char *body;                 /* a JSON request body, NUL-terminated */
    size_t body_len;
    bool body_too_big;
    struct upload *upload;      /* PATCH in progress (routes_item.c) */
    /* An error decided on a PATCH's headers is sent after its body has been
     * read and dropped, so a client that sends the body before reading the
     * answer gets the answer rather than a reset connection. */
    bool defer;                 /* reply_json keeps its answer for later */
    char *deferred;             /* that answer's JSON text */
    unsigned deferred_status;
    waiter wait;                /* long-poll (waiters.h) */
} request;

/* Bind the listening socket per cfg (fills srv->port) and load the TLS
 * files; CHUTE_ERR_ARG for a usage error (bad address, plain HTTP off
 * loopback). Nothing is served yet. */
chute_status http_listen(server *srv);
/* Serve on the socket of http_listen; fills srv->daemon. */
chute_status http_start(server *srv);
/* Release a socket that http_start never took over. */
void http_close(server *srv);
/* Stop accepting; wake long-polls; wait (bounded) for requests in flight;
 * stop the daemon. */
void http_stop(server *srv, unsigned grace_seconds);

/* --- answering (each returns what the MHD handler should return) -------- */
enum MHD_Result reply_json(request *r, unsigned status, struct json_t *body);
enum MHD_Result reply_error(request *r, unsigned status, const char *msg);
/* An error with extra fields: `extra` is a JSON object, consumed. */
enum MHD_Result reply_error_with(request *r, unsigned status, const char *msg,
                                 struct json_t *extra);
enum MHD_Result reply_empty(request *r, unsigned status);
/* 429 with Retry-After and {"error": "too many <what>; retry later",
 * "retry_after": S}. */
enum MHD_Result reply_too_many(request *r, const char *what, uint64_t retry_after);
/* Queue a prepared response (destroyed here). */
enum MHD_Result reply_response(request *r, unsigned status, struct MHD_Response *resp);

/* --- reading the request -------------------------------------------------- */
const char *request_header(request *r, const char *name);
const char *request_arg(request *r, const char *name);
/* SHA-256 of the bearer token; false if there is none well-formed. */
bool request_token_hash(request *r, uint8_t hash[32]);
/* For private relays: true if the request may create (or none is set). */
bool request_has_access(request *r);
const struct sockaddr *request_client_addr(request *r);

/* --- capabilities ----------------------------------------------------------- */
/* A fresh 16-byte id (22 chars) and 32-byte token (43 chars) with its hash. */
void make_id(char out[RELAY_ID_CHARS + 1]);
void make_token(char out[RELAY_TOKEN_CHARS + 1], uint8_t hash[32]);
/* Standard padded base64 of bytes (malloc'd) or NULL. */
char *base64_encode(const uint8_t *bin, size_t len);

#endif
