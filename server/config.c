/* config.c — options table, config file and validation for chuted.
 *
 * One table drives getopt_long, the config file and --help, so an option
 * cannot exist in one place and not the others. Names are accepted with '-'
 * or '_' (the spec writes limits as item_ttl; the CLI convention is
 * --item-ttl). */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "relay_wire.h"

typedef enum { T_STRING, T_FLAG, T_DURATION, T_SIZE, T_COUNT, T_LEVEL } opt_type;

typedef struct {
    const char *name;      /* with hyphens */
    opt_type type;
    size_t off;
    const char *help;
} opt_def;

#define F(field) offsetof(relay_config, field)
static const opt_def opts[] = {
    { "listen", T_STRING, F(listen), "ADDR:PORT to listen on (port 0: any free port)" },
    { "data", T_STRING, F(data_dir), "data folder (SQLite database and item bodies)" },
    { "tls-cert", T_STRING, F(tls_cert), "PEM certificate (chain) file: serve HTTPS" },
    { "tls-key", T_STRING, F(tls_key), "PEM private key file" },
    { "access-token", T_STRING, F(access_token), "private relay: require Chute-Access-Token" },
    { "port-file", T_STRING, F(port_file), "write the bound port to this file when ready" },
    { "insecure", T_FLAG, F(insecure), "allow plain HTTP on a non-loopback address" },
    { "log-level", T_LEVEL, F(log_level), "debug, info, warn or error (default info)" },
    { "threads", T_COUNT, F(threads), "HTTP worker threads (default 4)" },
    { "item-ttl", T_DURATION, F(item_ttl), "undelivered item lifetime (60d)" },
    { "tombstone-ttl", T_DURATION, F(tombstone_ttl), "tombstone lifetime (30d)" },
    { "pair-ttl", T_DURATION, F(pair_ttl), "default pair code lifetime (1h)" },
    { "max-pair-ttl", T_DURATION, F(max_pair_ttl), "longest pair code lifetime; caps a claimed run's 30 min (24h)" },
    { "max-item-size", T_SIZE, F(max_item_size), "largest item (64G)" },
    { "max-meta", T_SIZE, F(max_meta), "largest sealed meta, decoded (4096)" },
    { "inbox-quota-items", T_COUNT, F(inbox_quota_items), "undelivered items per inbox (10000)" },
    { "inbox-quota-bytes", T_SIZE, F(inbox_quota_bytes), "undelivered bytes per inbox (100G)" },
    { "max-body", T_SIZE, F(max_body), "largest JSON request body (64K)" },
    { "max-header", T_SIZE, F(max_header), "largest request line + headers (8K)" },
    { "max-conns-per-ip", T_COUNT, F(max_conns_per_ip), "connections per client IP (64)" },
    { "max-conns", T_COUNT, F(max_conns), "connections in all (4096)" },
    { "pair-allocs-per-min", T_COUNT, F(pair_allocs_per_min), "nameplate allocations per IP per minute (10; 0: no limit)" },
    { "pair-claims-per-min", T_COUNT, F(pair_claims_per_min), "nameplate claims per IP per minute (10; 0: no limit)" },
    { "inbox-creates-per-min", T_COUNT, F(inbox_creates_per_min), "inboxes created per IP per minute (10; 0: no limit)" },
    { "idle-timeout", T_DURATION, F(idle_timeout), "close a connection silent this long (30s)" },
    { "max-wait", T_DURATION, F(max_wait), "longest long-poll (60s)" },
};
#undef F
#define NOPTS (sizeof opts / sizeof opts[0])
enum { OPT_CONFIG = 1000, OPT_HELP, OPT_VERSION };

void config_defaults(relay_config *c)
{
    memset(c, 0, sizeof *c);
    c->log_level = LOG_INFO;
    c->threads = 4;
    c->item_ttl = 60 * 86400ull;
    c->tombstone_ttl = 30 * 86400ull;
    c->pair_ttl = 3600;
    c->max_pair_ttl = 86400;
    c->max_item_size = 64ull << 30;
    c->max_meta = 4096;
    c->inbox_quota_items = 10000;
    c->inbox_quota_bytes = 100ull << 30;
    c->max_body = 64 << 10;
    c->max_header = 8 << 10;
    c->max_conns_per_ip = 64;
    c->max_conns = 4096;
    c->pair_allocs_per_min = 10;
    c->pair_claims_per_min = 10;
    c->inbox_creates_per_min = 10;
    c->idle_timeout = 30;
    c->max_wait = 60;
    c->pair_max_messages = 16;
    c->pair_max_message = 4096;
}

void config_free(relay_config *c)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].type == T_STRING) {
            char **p = (char **)((char *)c + opts[i].off);
            free(*p);
            *p = NULL;
        }
}

/* Find an option by name, '_' and '-' being the same. */
static const opt_def *find_opt(const char *name)
{
    for (size_t i = 0; i < NOPTS; i++) {
        const char *a = opts[i].name, *b = name;
        while (*a && (*a == *b || (*a == '-' && *b == '_')))
            a++, b++;
        if (!*a && !*b)
            return &opts[i];
    }
    return NULL;
}

/* Set one option from its text; false (and a message) if the value is bad. */
static bool apply(relay_config *c, const opt_def *o, const char *val,
                  const char *where)
{
    void *p = (char *)c + o->off;
    chute_status st = CHUTE_OK;
    switch (o->type) {
    case T_STRING: {
        char *dup = strdup(val);
        if (!dup) {
            fprintf(stderr, "chuted: out of memory\n");
            return false;
        }
        free(*(char **)p);
        *(char **)p = dup;
        return true;
    }
    case T_FLAG:
        if (!val || !*val || strcmp(val, "true") == 0 || strcmp(val, "yes") == 0 ||
            strcmp(val, "1") == 0)
            *(bool *)p = true;
        else if (strcmp(val, "false") == 0 || strcmp(val, "no") == 0 ||
                 strcmp(val, "0") == 0)
            *(bool *)p = false;
        else
            st = CHUTE_ERR_MALFORMED;
        break;
    case T_LEVEL: {
        int lv = log_level_parse(val);
        if (lv < 0)
            st = CHUTE_ERR_MALFORMED;
        else
            *(int *)p = lv;
        break;
    }
    case T_DURATION: st = relay_parse_duration(val, (uint64_t *)p); break;
    case T_SIZE:     st = relay_parse_size(val, (uint64_t *)p); break;
    case T_COUNT:    st = relay_parse_u64(val, (uint64_t *)p); break;
    }
    if (st != CHUTE_OK) {
        fprintf(stderr, "chuted: %s: bad value for %s: '%s'\n", where, o->name, val);
        return false;
    }
    return true;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

static config_result load_file(relay_config *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "chuted: cannot open config %s: %s\n", path, strerror(errno));
        return CONFIG_USAGE;
    }
    char line[4096], where[256];
    int n = 0;
    config_result r = CONFIG_OK;
    while (r == CONFIG_OK && fgets(line, sizeof line, f)) {
        n++;
        snprintf(where, sizeof where, "%s:%d", path, n);
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        char *key = s, *val = "";
        if (eq) {
            *eq = '\0';
            val = trim(eq + 1);
        }
        key = trim(key);
        const opt_def *o = find_opt(key);
        if (!o) {
            fprintf(stderr, "chuted: %s: unknown setting '%s'\n", where, key);
            r = CONFIG_USAGE;
        } else if (!eq && o->type != T_FLAG) {
            fprintf(stderr, "chuted: %s: '%s' needs '= value'\n", where, key);
            r = CONFIG_USAGE;
        } else if (!apply(c, o, val, where)) {
            r = CONFIG_USAGE;
        }
    }
    if (ferror(f)) {
        fprintf(stderr, "chuted: reading %s: %s\n", path, strerror(errno));
        r = CONFIG_USAGE;
    }
    fclose(f);
    return r;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: chuted --listen ADDR:PORT --data DIR [--tls-cert F --tls-key F]\n"
            "              [--access-token T] [--config FILE] [--insecure]\n"
            "              [--log-level L] [--port-file F] [--LIMIT VALUE ...]\n\n"
            "The Chute relay (docs/PROTOCOL.md §6).\n\n"
            "  --config FILE            'key = value' lines, keys as the long options\n");
    for (size_t i = 0; i < NOPTS; i++) {
        const char *arg = opts[i].type == T_FLAG ? "" :
                          opts[i].type == T_DURATION ? " DUR" :
                          opts[i].type == T_SIZE ? " SIZE" : " V";
        char left[64];
        snprintf(left, sizeof left, "--%s%s", opts[i].name, arg);
        fprintf(out, "  %-24s %s\n", left, opts[i].help);
    }
    fprintf(out, "  --help, --version\n\n"
                 "Durations: 90, 90s, 15m, 1h, 60d. Sizes: 4096, 64K, 10M, 64G.\n"
                 "Exit status: 0 clean stop, 1 failure, 2 usage.\n");
}

/* Both spellings of every option, plus --config/--help/--version. The
 * underscore spellings live in a static table: the options never change. */
static char under_names[NOPTS][32];
static struct option longopts[2 * NOPTS + 4];

static struct option *build_longopts(void)
{
    size_t k = 0;
    for (size_t i = 0; i < NOPTS; i++) {
        int has = opts[i].type == T_FLAG ? no_argument : required_argument;
        longopts[k++] = (struct option){ opts[i].name, has, NULL, (int)i };
        if (strchr(opts[i].name, '-')) {
            snprintf(under_names[i], sizeof under_names[i], "%s", opts[i].name);
            for (char *p = under_names[i]; *p; p++)
                if (*p == '-')
                    *p = '_';
            longopts[k++] = (struct option){ under_names[i], has, NULL, (int)i };
        }
    }
    longopts[k++] = (struct option){ "config", required_argument, NULL, OPT_CONFIG };
    longopts[k++] = (struct option){ "help", no_argument, NULL, OPT_HELP };
    longopts[k++] = (struct option){ "version", no_argument, NULL, OPT_VERSION };
    longopts[k] = (struct option){ NULL, 0, NULL, 0 };
    return longopts;
}

static config_result validate(relay_config *c)
{
    const char *bad = NULL;
    if (!c->listen)
        bad = "--listen ADDR:PORT is required";
    else if (!c->data_dir)
        bad = "--data DIR is required";
    else if (!c->tls_cert != !c->tls_key)
        bad = "--tls-cert and --tls-key go together";
    else if (c->threads < 1 || c->threads > 256)
        bad = "--threads must be 1..256";
    else if (c->pair_ttl < 1 || c->max_pair_ttl < c->pair_ttl)
        bad = "need 1 <= pair-ttl <= max-pair-ttl";
    else if (c->max_header < 1024 || c->max_header > (1u << 20))
        bad = "max-header must be 1K..1M";
    else if (c->max_body < 64 || c->max_body > (256u << 20))
        bad = "max-body must be 64..256M";
    else if (c->max_conns < 1 || c->max_conns > 1000000 || c->max_conns_per_ip < 1 ||
             c->max_conns_per_ip > 1000000)
        bad = "max-conns and max-conns-per-ip must be 1..1000000";
    else if (c->idle_timeout < 1 || c->idle_timeout > 86400)
        bad = "idle-timeout must be 1s..1d";
    else if (c->max_wait > 3600)
        bad = "max-wait must be at most 1h";
    else if (c->max_item_size > (1ull << 62))
        bad = "max-item-size is too large";
    else if (c->access_token && strlen(c->access_token) == 0)
        bad = "--access-token must not be empty";
    if (bad) {
        fprintf(stderr, "chuted: %s (see --help)\n", bad);
        return CONFIG_USAGE;
    }
    return CONFIG_OK;
}

config_result config_from_args(relay_config *c, int argc, char **argv)
{
    struct option *lo = build_longopts();
    /* The command line overrides the file: remember its settings, read the
     * file, then apply them. */
    int *which = calloc((size_t)argc + 1, sizeof *which);
    char **vals = calloc((size_t)argc + 1, sizeof *vals);
    const char *config_path = NULL;
    int n = 0, opt;
    config_result r = CONFIG_OK;
    if (!which || !vals) {
        fprintf(stderr, "chuted: out of memory\n");
        r = CONFIG_FAIL;
        goto out;
    }
    optind = 1;
    opterr = 1;
    while (r == CONFIG_OK && (opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (opt == OPT_HELP) {
            usage(stdout);
            r = CONFIG_EXIT_OK;
        } else if (opt == OPT_VERSION) {
            printf("chuted %s\n", CHUTE_VERSION);
            r = CONFIG_EXIT_OK;
        } else if (opt == OPT_CONFIG) {
            config_path = optarg;
        } else if (opt >= 0 && (size_t)opt < NOPTS) {
            which[n] = opt;
            vals[n] = optarg ? optarg : "";
            n++;
        } else {
            r = CONFIG_USAGE;       /* getopt already said what was wrong */
        }
    }
    if (r == CONFIG_OK && optind < argc) {
        fprintf(stderr, "chuted: unexpected argument '%s' (see --help)\n", argv[optind]);
        r = CONFIG_USAGE;
    }
    if (r == CONFIG_OK && config_path)
        r = load_file(c, config_path);
    for (int i = 0; r == CONFIG_OK && i < n; i++)
        if (!apply(c, &opts[which[i]], vals[i], "command line"))
            r = CONFIG_USAGE;
    if (r == CONFIG_OK)
        r = validate(c);
out:
    free(which);
    free(vals);
    return r;
}
