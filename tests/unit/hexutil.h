/* hexutil.h — hex to bytes for test vectors (tests only). */
#ifndef CHUTE_TEST_HEXUTIL_H
#define CHUTE_TEST_HEXUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Decodes hex into out; returns the byte count, or (size_t)-1 if bad. */
static inline size_t unhex(uint8_t *out, size_t cap, const char *hex)
{
    size_t n = strlen(hex);
    if (n % 2 || n / 2 > cap)
        return (size_t)-1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + k];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
            else return (size_t)-1;
        }
        out[i] = (uint8_t)v;
    }
    return n / 2;
}

#endif
