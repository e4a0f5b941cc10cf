/* fuzz_pairing_msg.c — the parsers of PROTOCOL §7 on arbitrary bytes.
 *
 * The first byte picks the sealed message type whose payload rules apply
 * (JOINER_INFO, INVITER_DECISION, JOINER_DECISION); the rest is the JSON
 * payload as it comes out of a sealed message. The same bytes also go
 * through the unsealed message checks (HELLO, ABORT) and, as CPACE1 and
 * CPACE2, through both CPace steps. Must never crash; an accepted payload
 * must re-encode and parse back to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pairing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t TYPES[] = { PMSG_JOINER_INFO, PMSG_INVITER_DECISION,
                                 PMSG_JOINER_DECISION };

static void check_payload(uint8_t type, const uint8_t *json, size_t len)
{
    pairing_payload pl, again;
    if (pairing_payload_parse(type, json, len, &pl) != CHUTE_OK)
        return;
    char out[PAIRING_PAYLOAD_MAX];
    size_t n;
    if (pairing_payload_encode(&pl, out, sizeof out, &n) != CHUTE_OK)
        abort();
    if (pairing_payload_parse(type, (const uint8_t *)out, n, &again) != CHUTE_OK ||
        again.decision != pl.decision || again.has_device != pl.has_device ||
        memcmp(&again.device, &pl.device, sizeof pl.device) != 0)
        abort();
    pairing_payload_wipe(&pl);
    pairing_payload_wipe(&again);
}

static void check_cpace_steps(const uint8_t *data, size_t size)
{
    pairing j, i;
    uint8_t out2[PAIRING_CPACE2_BYTES], out3[PAIRING_CONFIRM_BYTES], m1[PAIRING_CPACE1_BYTES];
    if (pairing_init(&j, PAIRING_JOINER, "k7qmx2dp", "http://127.0.0.1:1", "7") != CHUTE_OK)
        abort();
    (void)pairing_joiner_cpace2(&j, data, size, out2);
    pairing_wipe(&j);
    if (pairing_init(&i, PAIRING_INVITER, "k7qmx2dp", "http://127.0.0.1:1", "7") != CHUTE_OK ||
        pairing_inviter_cpace1(&i, m1) != CHUTE_OK)
        abort();
    /* Random bytes never confirm: only someone who knew the code could. */
    if (pairing_inviter_confirm(&i, data, size, out3) == CHUTE_OK)
        abort();
    pairing_wipe(&i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        ready = 1;
    }
    (void)pairing_check_hello(data, size);
    (void)pairing_abort_reason(data, size);
    (void)pairing_msg_type(data, size);
    if (size >= 1)
        check_payload(TYPES[data[0] % 3], data + 1, size - 1);
    check_cpace_steps(data, size);
    return 0;
}
