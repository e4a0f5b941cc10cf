/* fuzz_paircode.c — paircode_parse on arbitrary bytes.
 *
 * Must never crash; a success must give a canonical code that formats and
 * parses back to itself; a failure must say why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "paircode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char ALPHABET[] = "0123456789abcdefghjkmnpqrstvwxyz";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    paircode pc, again;
    const char *why = NULL;
    chute_status st = paircode_parse((const char *)data, size, &pc, &why);
    if (st != CHUTE_OK) {
        if (st != CHUTE_ERR_MALFORMED || why == NULL || *why == '\0')
            abort();
        return 0;
    }
    if (why != NULL || paircode_check_nameplate(pc.nameplate) != CHUTE_OK ||
        strlen(pc.secret) != PAIRCODE_SECRET_CHARS)
        abort();
    for (int i = 0; i < PAIRCODE_SECRET_CHARS; i++)
        if (!strchr(ALPHABET, pc.secret[i]))
            abort();

    char code[PAIRCODE_MAX_LEN + 1];
    if (paircode_format(pc.nameplate, pc.secret, code, sizeof code) != CHUTE_OK)
        abort();
    if (paircode_parse(code, strlen(code), &again, &why) != CHUTE_OK ||
        strcmp(again.nameplate, pc.nameplate) != 0 ||
        strcmp(again.secret, pc.secret) != 0)
        abort();
    paircode_wipe(&pc);
    paircode_wipe(&again);
    return 0;
}
