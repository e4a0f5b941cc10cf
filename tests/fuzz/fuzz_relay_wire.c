/* fuzz_relay_wire.c — every parser of lib/relay_wire.h; the first input
 * byte picks the parser, the rest is its input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t which = data[0] % 8;
    data++;
    size--;
    /* The string parsers take NUL-terminated text. */
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    switch (which) {
    case 0: {
        relay_item_create c;
        if (relay_parse_item_create(data, size, 4096, &c) == CHUTE_OK) {
            /* a deferred create has no meta, any other one has */
            if (c.deferred != (c.meta == NULL) || (c.deferred && c.size != 0))
                abort();
            relay_item_create_free(&c);
        }
        break;
    }
    case 1: {
        bool has;
        uint64_t ttl;
        relay_parse_pair_alloc(data, size, &has, &ttl);
        break;
    }
    case 2: {
        uint8_t *b;
        size_t n;
        if (relay_parse_pair_message(data, size, 4096, &b, &n) == CHUTE_OK)
            free(b);
        break;
    }
    case 3:
        relay_parse_empty_object(data, size);
        break;
    case 4: {
        uint64_t a, b, len = size ? data[0] * 1000u : 0;
        if (relay_parse_range(s, len, &a, &b) == CHUTE_OK && (a > b || b >= len))
            abort();
        break;
    }
    case 5: {
        uint64_t v;
        relay_parse_duration(s, &v);
        relay_parse_size(s, &v);
        relay_parse_u64(s, &v);
        break;
    }
    case 6: {
        relay_route r;
        relay_match_route(s, &r);
        if (r.id == RELAY_R_NONE && (r.a[0] || r.b[0]))
            abort();
        relay_route_allows(r.id, "GET");
        break;
    }
    default:
        relay_bearer_token(s);
        break;
    }
    free(s);
    return 0;
}
