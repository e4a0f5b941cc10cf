/* routes.h — the route handlers, one file per resource family. Each is
 * called for the final call of a request (headers and body complete) and
 * answers through the reply helpers of http.h. */
#ifndef CHUTED_ROUTES_H
#define CHUTED_ROUTES_H

#include "http.h"

/* routes_inbox.c: /v1/inboxes, /v1/inboxes/{inbox}, senders */
enum MHD_Result routes_inbox(request *r);

/* routes_item.c: items, their data, status, list */
enum MHD_Result routes_item(request *r);
/* PATCH: headers arrived (may answer at once), body bytes, and the end of
 * the request however it ended (flushes what was written). */
enum MHD_Result routes_item_patch_begin(request *r);
void routes_item_patch_data(request *r, const char *data, size_t len);
void routes_item_patch_end(request *r);

/* routes_pair.c: /v1/pair... */
enum MHD_Result routes_pair(request *r);

#endif
