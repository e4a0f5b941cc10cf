/* config.h — chuted's settings: command line, config file and the limits of
 * docs/PROTOCOL.md §6.8, with their defaults. */
#ifndef CHUTED_CONFIG_H
#define CHUTED_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    /* where and how to listen */
    char *listen;          /* ADDR:PORT */
    char *data_dir;
    char *tls_cert, *tls_key;
    char *access_token;    /* private relay; NULL when open */
    char *port_file;       /* write the bound port here once listening */
    bool insecure;         /* allow plain HTTP off loopback */
    int log_level;         /* log_level of log.h */
    uint64_t threads;      /* MHD thread pool size */

    /* limits (§6.8): durations in seconds, sizes in bytes */
    uint64_t item_ttl, tombstone_ttl, pair_ttl, max_pair_ttl;
    uint64_t max_item_size, max_meta, inbox_quota_items, inbox_quota_bytes;
    uint64_t max_body, max_header, max_conns_per_ip, max_conns;
    uint64_t pair_allocs_per_min, pair_claims_per_min, inbox_creates_per_min;
    uint64_t idle_timeout, max_wait;
    /* not in §6.8 but fixed by it: messages per pairing session and bytes
     * per message body */
    uint64_t pair_max_messages, pair_max_message;
} relay_config;

typedef enum { CONFIG_OK = 0, CONFIG_EXIT_OK, CONFIG_USAGE, CONFIG_FAIL } config_result;

void config_defaults(relay_config *c);
/* Parse argv (and the --config file it names; the command line wins).
 * CONFIG_EXIT_OK after --help/--version (already printed), CONFIG_USAGE on a
 * bad option or value (already reported on stderr). */
config_result config_from_args(relay_config *c, int argc, char **argv);
void config_free(relay_config *c);

#endif
