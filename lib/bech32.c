/* bech32.c — bech32 (BIP 173) without the 90-character limit. */
#include "bech32.h"

#include <string.h>

#include <sodium.h>

static const char charset[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

static uint32_t polymod_step(uint32_t chk, uint8_t v)
{
    static const uint32_t gen[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa,
                                    0x3d4233dd, 0x2a1462b3};
    uint8_t top = (uint8_t)(chk >> 25);
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (int i = 0; i < 5; i++)
        if ((top >> i) & 1)
            chk ^= gen[i];
    return chk;
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* The checksum covers the lower-case HRP expanded to high and low bits. */
static uint32_t hrp_polymod(const char *hrp, size_t n)
{
    uint32_t chk = 1;
    for (size_t i = 0; i < n; i++)
        chk = polymod_step(chk, (uint8_t)lower(hrp[i]) >> 5);
    chk = polymod_step(chk, 0);
    for (size_t i = 0; i < n; i++)
        chk = polymod_step(chk, (uint8_t)lower(hrp[i]) & 31);
    return chk;
}

static int charset_index(char c)
{
    const char *p = c ? strchr(charset, lower(c)) : NULL;
    return p ? (int)(p - charset) : -1;
}

chute_status bech32_encode_groups(char *out, size_t out_cap, const char *hrp,
                                  const uint8_t *groups, size_t n_groups)
{
    size_t hrp_len = hrp ? strlen(hrp) : 0;
    if (!out || hrp_len == 0 || hrp_len > BECH32_MAX_HRP_LEN ||
        (n_groups && !groups))
        return CHUTE_ERR_ARG;
    for (size_t i = 0; i < hrp_len; i++)
        if (hrp[i] < 33 || hrp[i] > 126 || (hrp[i] >= 'A' && hrp[i] <= 'Z'))
            return CHUTE_ERR_ARG;
    for (size_t i = 0; i < n_groups; i++)
        if (groups[i] > 31)
            return CHUTE_ERR_ARG;
    if (n_groups > BECH32_MAX_LEN)
        return CHUTE_ERR_LIMIT;
    size_t total = hrp_len + 1 + n_groups + 6;
    if (total > BECH32_MAX_LEN || total + 1 > out_cap)
        return CHUTE_ERR_LIMIT;

    memcpy(out, hrp, hrp_len);
    out[hrp_len] = '1';
    char *p = out + hrp_len + 1;
    uint32_t chk = hrp_polymod(hrp, hrp_len);
    for (size_t i = 0; i < n_groups; i++) {
        chk = polymod_step(chk, groups[i]);
        *p++ = charset[groups[i]];
    }
    for (int i = 0; i < 6; i++)
        chk = polymod_step(chk, 0);
    chk ^= 1;
    for (int i = 0; i < 6; i++)
        *p++ = charset[(chk >> (5 * (5 - i))) & 31];
    *p = '\0';
    return CHUTE_OK;
}

chute_status bech32_decode_groups(const char *s, char *hrp, size_t hrp_cap,
                                  uint8_t *groups, size_t groups_cap,
                                  size_t *n_groups)
{
    if (!s || !hrp || !n_groups || (groups_cap && !groups))
        return CHUTE_ERR_ARG;
    size_t len = strnlen(s, BECH32_MAX_LEN + 1);
    if (len > BECH32_MAX_LEN)
        return CHUTE_ERR_LIMIT;

    int has_lower = 0, has_upper = 0;
    const char *sep = NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 33 || s[i] > 126)
            return CHUTE_ERR_MALFORMED;
        has_lower |= s[i] >= 'a' && s[i] <= 'z';
        has_upper |= s[i] >= 'A' && s[i] <= 'Z';
        if (s[i] == '1')
            sep = s + i;
    }
    if ((has_lower && has_upper) || !sep)
        return CHUTE_ERR_MALFORMED;
    size_t hrp_len = (size_t)(sep - s);
    size_t n5 = len - hrp_len - 1;
    if (hrp_len < 1 || hrp_len > BECH32_MAX_HRP_LEN || n5 < 6)
        return CHUTE_ERR_MALFORMED;

    uint32_t chk = hrp_polymod(s, hrp_len);
    for (size_t i = 0; i < n5; i++) {
        int v = charset_index(sep[1 + i]);
        if (v < 0)
            return CHUTE_ERR_MALFORMED;
        chk = polymod_step(chk, (uint8_t)v);
    }
    if (chk != 1)
        return CHUTE_ERR_MALFORMED;
    if (hrp_len + 1 > hrp_cap || n5 - 6 > groups_cap)
        return CHUTE_ERR_LIMIT;
    for (size_t i = 0; i < n5 - 6; i++)
        groups[i] = (uint8_t)charset_index(sep[1 + i]);
    memcpy(hrp, s, hrp_len);
    hrp[hrp_len] = '\0';
    *n_groups = n5 - 6;
    return CHUTE_OK;
}

chute_status bech32_encode(char *out, size_t out_cap, const char *hrp,
                           const uint8_t *data, size_t data_len)
{
    if (data_len && !data)
        return CHUTE_ERR_ARG;
    if (data_len > BECH32_MAX_LEN * 5 / 8)
        return CHUTE_ERR_LIMIT;
    /* groups and acc hold the payload, for an age identity its secret key:
     * both are wiped before returning, as the callers wipe their bytes. */
    uint8_t groups[BECH32_MAX_LEN];
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < data_len; i++) {
        acc = ((acc << 8) | data[i]) & 0xfff;
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            groups[n++] = (acc >> bits) & 31;
        }
    }
    if (bits)
        groups[n++] = (acc << (5 - bits)) & 31;
    chute_status st = bech32_encode_groups(out, out_cap, hrp, groups, n);
    sodium_memzero(groups, sizeof groups);
    sodium_memzero(&acc, sizeof acc);
    return st;
}

chute_status bech32_decode(const char *s, char *hrp, size_t hrp_cap,
                           uint8_t *data, size_t data_cap, size_t *data_len)
{
    if (!data_len || (data_cap && !data))
        return CHUTE_ERR_ARG;
    /* groups and acc hold the payload, for an age identity its secret key:
     * both are wiped before returning, as the callers wipe their bytes. */
    uint8_t groups[BECH32_MAX_LEN];
    size_t n5 = 0, n = 0;
    uint32_t acc = 0;
    int bits = 0;
    chute_status st = bech32_decode_groups(s, hrp, hrp_cap, groups,
                                           sizeof groups, &n5);
    if (st != CHUTE_OK)
        goto out;

    for (size_t i = 0; i < n5; i++) {
        acc = ((acc << 5) | groups[i]) & 0xfff;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            if (n >= data_cap) {
                st = CHUTE_ERR_LIMIT;
                goto out;
            }
            data[n++] = (uint8_t)(acc >> bits);
        }
    }
    /* Canonical: fewer than 5 padding bits, all zero. */
    if (bits > 4 || (acc & ((1u << bits) - 1)) != 0) {
        st = CHUTE_ERR_MALFORMED;
        goto out;
    }
    *data_len = n;
out:
    sodium_memzero(groups, sizeof groups);
    sodium_memzero(&acc, sizeof acc);
    return st;
}
