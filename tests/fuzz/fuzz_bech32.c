/* fuzz_bech32 — arbitrary strings through bech32_decode and the age key
 * parsers. Property: whatever decodes re-encodes to the same string (in
 * lower case), and the decoded bytes survive the round trip. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "age.h"
#include "bech32.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char s[BECH32_MAX_LEN + 2], lower[BECH32_MAX_LEN + 2];
    static char again[BECH32_MAX_LEN + 2];
    static uint8_t bytes[BECH32_MAX_LEN], back[BECH32_MAX_LEN];
    if (size > BECH32_MAX_LEN + 1)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    char hrp[BECH32_MAX_HRP_LEN + 1], hrp2[BECH32_MAX_HRP_LEN + 1];
    size_t n = 0, n2 = 0;
    if (bech32_decode(s, hrp, sizeof hrp, bytes, sizeof bytes, &n) ==
        CHUTE_OK) {
        for (size_t i = 0; i <= size; i++)
            lower[i] = (char)tolower((unsigned char)s[i]);
        for (char *p = hrp; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        if (bech32_encode(again, sizeof again, hrp, bytes, n) != CHUTE_OK ||
            strcmp(again, lower) != 0)
            abort();
        if (bech32_decode(again, hrp2, sizeof hrp2, back, sizeof back,
                          &n2) != CHUTE_OK ||
            n2 != n || memcmp(back, bytes, n) != 0)
            abort();
    }

    age_identity id;
    age_recipient r;
    char rs[AGE_RECIPIENT_STR_BYTES];
    if (age_recipient_parse(&r, s) == CHUTE_OK &&
        (age_recipient_encode(&r, rs) != CHUTE_OK || strcmp(rs, s) != 0))
        abort();
    char is[AGE_IDENTITY_STR_BYTES];
    if (age_identity_parse(&id, s) == CHUTE_OK &&
        (age_identity_encode(&id, is) != CHUTE_OK || strcmp(is, s) != 0))
        abort();
    age_identity_wipe(&id);
    return 0;
}
