/* relay_url.c — parse relay URLs with curl's URL API, never by hand. */
#include "relay_url.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

static int is_loopback(const char *host)
{
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    /* curl keeps the brackets around an IPv6 literal. */
    size_t n = strlen(host);
    if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
        char inner[64];
        if (n - 2 >= sizeof inner)
            return 0;
        memcpy(inner, host + 1, n - 2);
        inner[n - 2] = '\0';
        struct in6_addr a6;
        return inet_pton(AF_INET6, inner, &a6) == 1 &&
               memcmp(&a6, &in6addr_loopback, sizeof a6) == 0;
    }
    return 0;
}

chute_status relay_url_check(const char *url, char *origin, size_t cap,
                             const char **why)
{
    static const char *why_none = "";
    const char *dummy;
    if (!why)
        why = &dummy;
    *why = why_none;
    if (!url || !*url || strlen(url) > 400) {
        *why = "the relay URL is empty or too long";
        return CHUTE_ERR_ARG;
    }
    CURLU *u = curl_url();
    if (!u)
        return CHUTE_ERR_NOMEM;
    chute_status st = CHUTE_OK;
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL,
         *query = NULL, *frag = NULL, *user = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        *why = "the relay URL does not parse (expected https://host[:port])";
        st = CHUTE_ERR_ARG;
        goto out;
    }
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    curl_url_get(u, CURLUPART_QUERY, &query, 0);
    curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0);
    curl_url_get(u, CURLUPART_USER, &user, 0);
    if ((path && strcmp(path, "/") != 0 && *path) || query || frag || user) {
        *why = "the relay URL must be just scheme://host[:port], without a path, query or user";
        st = CHUTE_ERR_ARG;
        goto out;
    }
    for (char *p = scheme; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    for (char *p = host; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    if (strcmp(scheme, "https") != 0) {
        if (strcmp(scheme, "http") != 0) {
            *why = "the relay URL must start with https://";
            st = CHUTE_ERR_ARG;
            goto out;
        }
        if (!is_loopback(host)) {
            *why = "plain http:// is allowed only to a loopback relay "
                   "(127.0.0.0/8, ::1, localhost); use https://";
            st = CHUTE_ERR_UNSUPPORTED;
            goto out;
        }
    }
    if (origin) {
        /* RFC 6454 §6.2, as PROTOCOL §5.2 binds it into CPace: the port
         * only when it is not the scheme's default. */
        int dflt = (strcmp(scheme, "https") == 0 && strcmp(port, "443") == 0) ||
                   (strcmp(scheme, "http") == 0 && strcmp(port, "80") == 0);
        int n = dflt ? snprintf(origin, cap, "%s://%s", scheme, host)
                     : snprintf(origin, cap, "%s://%s:%s", scheme, host, port);
        if (n < 0 || (size_t)n >= cap) {
            *why = "the relay URL is too long";
            st = CHUTE_ERR_ARG;
        }
    }
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(frag);
    curl_free(user);
    curl_url_cleanup(u);
    return st;
}
