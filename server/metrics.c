/* metrics.c — counters kept as atomics; gauges read at scrape time. */
#include "metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static atomic_ulong responses[600];
static atomic_long uploads_in_flight;

void metrics_count_response(unsigned code)
{
    if (code < 600)
        atomic_fetch_add(&responses[code], 1);
}

void metrics_upload_started(void) { atomic_fetch_add(&uploads_in_flight, 1); }
void metrics_upload_ended(void) { atomic_fetch_sub(&uploads_in_flight, 1); }

chute_status metrics_render(store *st, waiters *ws, char **out, size_t *len)
{
    store_stats s;
    chute_status rc = store_stats_get(st, (int64_t)time(NULL), &s);
    if (rc)
        return rc;
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f)
        return CHUTE_ERR_NOMEM;
    fprintf(f,
            "# HELP chute_items_stored Items on the relay (uploading or pending).\n"
            "# TYPE chute_items_stored gauge\n"
            "chute_items_stored %llu\n"
            "# HELP chute_bytes_stored Durable body bytes of those items.\n"
            "# TYPE chute_bytes_stored gauge\n"
            "chute_bytes_stored %llu\n"
            "# HELP chute_uploads_in_flight PATCH requests receiving bytes now.\n"
            "# TYPE chute_uploads_in_flight gauge\n"
            "chute_uploads_in_flight %ld\n"
            "# HELP chute_longpolls_waiting Suspended long-poll requests.\n"
            "# TYPE chute_longpolls_waiting gauge\n"
            "chute_longpolls_waiting %zu\n"
            "# HELP chute_pairings_active Pairing sessions neither closed nor expired.\n"
            "# TYPE chute_pairings_active gauge\n"
            "chute_pairings_active %llu\n"
            "# HELP chute_http_requests_total Responses by status code.\n"
            "# TYPE chute_http_requests_total counter\n",
            (unsigned long long)s.items, (unsigned long long)s.bytes,
            atomic_load(&uploads_in_flight), waiters_count(ws),
            (unsigned long long)s.pairings);
    for (unsigned c = 100; c < 600; c++) {
        unsigned long n = atomic_load(&responses[c]);
        if (n)
            fprintf(f, "chute_http_requests_total{code=\"%u\"} %lu\n", c, n);
    }
    if (fclose(f) != 0) {
        free(buf);
        return CHUTE_ERR_NOMEM;
    }
    *out = buf;
    *len = size;
    return CHUTE_OK;
}
