/* route.h — which part of the mount a path names. */
#ifndef CHUTEFS_ROUTE_H
#define CHUTEFS_ROUTE_H

#include "peername.h"

typedef enum {
    R_ROOT,      /* /            */
    R_STATUS,    /* /status      */
    R_OUTBOX,    /* /outbox      */
    R_INBOX,     /* /inbox       */
    R_OUT,       /* /outbox/<peer>[/rel] */
    R_IN,        /* /inbox/<peer>[/rel]  */
} route_area;

typedef struct {
    route_area area;
    char peer[PEERNAME_MAX + 1];
    const char *rel;   /* R_OUT/R_IN: inside the peer's folder, "" for it */
} route;

/* 0, or -ENOENT for a path that can name nothing (/x, an over-long peer). */
int route_parse(const char *path, route *r);

#endif
