/* route.c — see route.h. */
#include "route.h"

#include <errno.h>
#include <string.h>

int route_parse(const char *path, route *r)
{
    memset(r, 0, sizeof *r);
    r->rel = "";
    if (!path) return -ENOENT;   /* a removed file's handle: see ops.c */
    if (strcmp(path, "/") == 0) { r->area = R_ROOT; return 0; }
    if (strcmp(path, "/status") == 0) { r->area = R_STATUS; return 0; }
    const char *rest;
    if (strncmp(path, "/outbox", 7) == 0 && (path[7] == '/' || !path[7])) {
        r->area = R_OUTBOX; rest = path + 7;
    } else if (strncmp(path, "/inbox", 6) == 0 && (path[6] == '/' || !path[6])) {
        r->area = R_INBOX; rest = path + 6;
    } else {
        return -ENOENT;
    }
    if (!*rest || strcmp(rest, "/") == 0) return 0;
    rest++;                                    /* past the '/' */
    const char *slash = strchr(rest, '/');
    size_t pl = slash ? (size_t)(slash - rest) : strlen(rest);
    if (pl == 0 || pl > PEERNAME_MAX) return -ENOENT;
    memcpy(r->peer, rest, pl);
    r->peer[pl] = '\0';
    r->area = r->area == R_OUTBOX ? R_OUT : R_IN;
    r->rel = slash ? slash + 1 : "";
    return 0;
}
