/* metrics.h — request counters and the Prometheus text of GET /metrics. */
#ifndef CHUTED_METRICS_H
#define CHUTED_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "store.h"
#include "waiters.h"

void metrics_count_response(unsigned code);
void metrics_upload_started(void);
void metrics_upload_ended(void);
/* The exposition text (malloc'd, caller frees) in *out. */
chute_status metrics_render(store *st, waiters *ws, char **out, size_t *len);

#endif
