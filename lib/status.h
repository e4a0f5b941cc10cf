/* status.h — the one error type of libchute.
 *
 * Every fallible function in lib/ returns a chute_status; CHUTE_OK is 0 so
 * `if (st != CHUTE_OK)` and `if (st)` both read naturally. Callers decide
 * what a failure means; lib/ never exits or prints. */
#ifndef CHUTE_STATUS_H
#define CHUTE_STATUS_H

typedef enum {
    CHUTE_OK = 0,
    CHUTE_ERR_NOMEM,        /* an allocation failed */
    CHUTE_ERR_IO,           /* a read, write or fsync failed (see errno) */
    CHUTE_ERR_ARG,          /* the caller passed something invalid */
    CHUTE_ERR_MALFORMED,    /* untrusted input does not parse */
    CHUTE_ERR_UNSUPPORTED,  /* well-formed, but a feature we refuse */
    CHUTE_ERR_NO_MATCH,     /* age: no stanza opens with our identity */
    CHUTE_ERR_HMAC,         /* age: the header MAC does not verify */
    CHUTE_ERR_AUTH,         /* an AEAD tag, confirmation or MAC failed */
    CHUTE_ERR_TRUNCATED,    /* input ended before it should have */
    CHUTE_ERR_CRYPTO,       /* a primitive refused (e.g. identity point) */
    CHUTE_ERR_NOT_FOUND,    /* the thing asked for does not exist */
    CHUTE_ERR_EXISTS,       /* the thing to create already exists */
    CHUTE_ERR_EXPIRED,      /* too late: a code or item has expired */
    CHUTE_ERR_NETWORK,      /* the relay could not be reached */
    CHUTE_ERR_PROTOCOL,     /* the peer or relay broke the protocol */
    CHUTE_ERR_REFUSED,      /* the other side said no */
    CHUTE_ERR_DB,           /* SQLite reported an error */
    CHUTE_ERR_LIMIT,        /* a size or count limit was hit */
    CHUTE_ERR_FULL,         /* the disk (or a database on it) is full */
    CHUTE_STATUS_COUNT
} chute_status;

/* A short, stable, human-readable description; never NULL. */
const char *chute_strstatus(chute_status st);

#endif
