/* relay_url.h — what counts as a relay address.
 *
 * A relay base URL is `https://host[:port]` (an optional trailing `/`),
 * or `http://` when the host is loopback: 127.0.0.0/8, ::1 or localhost.
 * Plain HTTP anywhere else would hand capabilities to the network, so it
 * is refused. The origin is the URL in one canonical spelling (RFC 6454
 * §6.2): `scheme://host[:port]`, scheme and host in lower case, the port
 * only when it is not the scheme's default; pairing binds it into CPace
 * (PROTOCOL §5.2). */
#ifndef CHUTE_RELAY_URL_H
#define CHUTE_RELAY_URL_H

#include <stddef.h>

#include "status.h"

/* CHUTE_OK and the origin in origin[cap]; otherwise CHUTE_ERR_ARG (not a
 * usable URL) or CHUTE_ERR_UNSUPPORTED (http:// to a non-loopback host),
 * with a sentence for people in *why (static storage). */
chute_status relay_url_check(const char *url, char *origin, size_t cap,
                             const char **why);

#endif
