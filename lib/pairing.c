/* pairing.c — PROTOCOL §7 messages, CPace steps and sealed payloads. */
#include "pairing.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "age_keys.h"
#include "relay_url.h"

/* Stages of a run, so a step out of order is refused instead of using
 * stale or zero keys. */
enum {
    STAGE_WIPED = 0,
    STAGE_INIT,          /* both: code bound, nothing sent */
    STAGE_SENT_CPACE1,   /* inviter: waiting for CPACE2 */
    STAGE_SENT_CPACE2,   /* joiner: waiting for CONFIRM */
    STAGE_CONFIRMED      /* both: keys and SAS ready */
};

/* AEAD associated data prefix; the message type follows it. */
static const char SEAL_LABEL[] = "chute-pair-v1 sealed";

chute_status pairing_init(pairing *p, pairing_role role, const char *secret,
                          const char *origin, const char *nameplate)
{
    if (!p)
        return CHUTE_ERR_ARG;
    memset(p, 0, sizeof *p);
    if ((role != PAIRING_INVITER && role != PAIRING_JOINER) || !secret ||
        !origin || !nameplate)
        return CHUTE_ERR_ARG;
    size_t n = strlen(secret);
    if (n == 0 || n > sizeof p->prs)
        return CHUTE_ERR_ARG;
    chute_status st = cpace_pair_ci(origin, nameplate, p->ci, sizeof p->ci, &p->ci_len);
    if (st != CHUTE_OK) {
        sodium_memzero(p, sizeof *p);
        return st == CHUTE_ERR_LIMIT ? CHUTE_ERR_ARG : st;
    }
    memcpy(p->prs, secret, n);
    p->prs_len = n;
    p->role = role;
    p->stage = STAGE_INIT;
    return CHUTE_OK;
}

void pairing_wipe(pairing *p)
{
    if (!p)
        return;
    cpace_abort(&p->cpace);
    cpace_confirm_wipe(&p->confirm);
    sodium_memzero(p, sizeof *p);
}

int pairing_msg_type(const uint8_t *msg, size_t len)
{
    return (msg && len > 0) ? msg[0] : -1;
}

void pairing_hello(uint8_t out[PAIRING_HELLO_BYTES])
{
    out[0] = PMSG_HELLO;
    out[1] = PAIRING_VERSION;
}

chute_status pairing_check_hello(const uint8_t *msg, size_t len)
{
    if (!msg || len < PAIRING_HELLO_BYTES || msg[0] != PMSG_HELLO)
        return CHUTE_ERR_MALFORMED;
    /* A later version may add bytes; this one needs exactly its own. */
    if (msg[1] != PAIRING_VERSION)
        return CHUTE_ERR_UNSUPPORTED;
    return len == PAIRING_HELLO_BYTES ? CHUTE_OK : CHUTE_ERR_MALFORMED;
}

void pairing_abort_msg(uint8_t reason, uint8_t out[PAIRING_ABORT_BYTES])
{
    out[0] = PMSG_ABORT;
    out[1] = reason;
}

int pairing_abort_reason(const uint8_t *msg, size_t len)
{
    if (!msg || len != PAIRING_ABORT_BYTES || msg[0] != PMSG_ABORT)
        return 0;
    return msg[1] ? msg[1] : PABORT_CANCELLED;
}

/* After the peer's tag verified: SAS and keys. */
static chute_status derive_outputs(pairing *p)
{
    chute_status st = cpace_confirm_sas(&p->confirm, p->nonce, p->commit, p->sas);
    if (st == CHUTE_OK)
        st = cpace_confirm_channel_key(&p->confirm, p->channel_key);
    if (st == CHUTE_OK)
        st = cpace_confirm_link_key(&p->confirm, p->link_key);
    /* The ISK is not needed any more: only the derived keys stay. */
    cpace_confirm_wipe(&p->confirm);
    sodium_memzero(p->prs, sizeof p->prs);
    if (st != CHUTE_OK) {
        sodium_memzero(p->channel_key, sizeof p->channel_key);
        sodium_memzero(p->link_key, sizeof p->link_key);
        p->stage = STAGE_WIPED;
        return st;
    }
    p->stage = STAGE_CONFIRMED;
    return CHUTE_OK;
}

chute_status pairing_inviter_cpace1(pairing *p, uint8_t out[PAIRING_CPACE1_BYTES])
{
    if (!p || p->role != PAIRING_INVITER || p->stage != STAGE_INIT)
        return CHUTE_ERR_ARG;
    randombytes_buf(p->sid, sizeof p->sid);
    cpace_sas_commit_make(p->nonce, p->commit);
    uint8_t ya[CPACE_MSG_BYTES];
    chute_status st = cpace_start(&p->cpace, CPACE_INITIATOR, p->prs, p->prs_len,
                                  p->ci, p->ci_len, p->sid, sizeof p->sid,
                                  p->commit, sizeof p->commit, ya);
    if (st != CHUTE_OK)
        return st;
    out[0] = PMSG_CPACE1;
    memcpy(out + 1, p->sid, sizeof p->sid);
    memcpy(out + 1 + sizeof p->sid, ya, sizeof ya);
    memcpy(out + 1 + sizeof p->sid + sizeof ya, p->commit, sizeof p->commit);
    p->stage = STAGE_SENT_CPACE1;
    return CHUTE_OK;
}

chute_status pairing_joiner_cpace2(pairing *p, const uint8_t *msg, size_t len,
                                   uint8_t out[PAIRING_CPACE2_BYTES])
{
    if (!p || p->role != PAIRING_JOINER || p->stage != STAGE_INIT)
        return CHUTE_ERR_ARG;
    if (!msg || len != PAIRING_CPACE1_BYTES || msg[0] != PMSG_CPACE1)
        return CHUTE_ERR_MALFORMED;
    const uint8_t *sid = msg + 1;
    const uint8_t *ya = sid + CPACE_PAIR_SID_BYTES;
    const uint8_t *commit = ya + CPACE_MSG_BYTES;
    memcpy(p->sid, sid, sizeof p->sid);
    memcpy(p->commit, commit, sizeof p->commit);

    uint8_t yb[CPACE_MSG_BYTES];
    cpace_keys keys;
    chute_status st = cpace_start(&p->cpace, CPACE_RESPONDER, p->prs, p->prs_len,
                                  p->ci, p->ci_len, p->sid, sizeof p->sid,
                                  NULL, 0, yb);
    if (st == CHUTE_OK)
        st = cpace_finish(&p->cpace, ya, p->commit, sizeof p->commit, &keys);
    if (st == CHUTE_OK)
        st = cpace_confirm_init(&p->confirm, CPACE_RESPONDER, &keys);
    sodium_memzero(&keys, sizeof keys);
    uint8_t tb[CPACE_CONFIRM_TAG_BYTES];
    if (st == CHUTE_OK)
        st = cpace_confirm_tag(&p->confirm, tb);
    if (st != CHUTE_OK) {
        pairing_wipe(p);
        return st == CHUTE_ERR_CRYPTO ? CHUTE_ERR_MALFORMED : st;
    }
    out[0] = PMSG_CPACE2;
    memcpy(out + 1, yb, sizeof yb);
    memcpy(out + 1 + sizeof yb, tb, sizeof tb);
    p->stage = STAGE_SENT_CPACE2;
    return CHUTE_OK;
}

chute_status pairing_inviter_confirm(pairing *p, const uint8_t *msg, size_t len,
                                     uint8_t out[PAIRING_CONFIRM_BYTES])
{
    if (!p || p->role != PAIRING_INVITER || p->stage != STAGE_SENT_CPACE1)
        return CHUTE_ERR_ARG;
    if (!msg || len != PAIRING_CPACE2_BYTES || msg[0] != PMSG_CPACE2) {
        pairing_wipe(p);
        return CHUTE_ERR_MALFORMED;
    }
    const uint8_t *yb = msg + 1;
    const uint8_t *tb = yb + CPACE_MSG_BYTES;
    cpace_keys keys;
    chute_status st = cpace_finish(&p->cpace, yb, NULL, 0, &keys);
    if (st == CHUTE_OK)
        st = cpace_confirm_init(&p->confirm, CPACE_INITIATOR, &keys);
    sodium_memzero(&keys, sizeof keys);
    if (st == CHUTE_OK)
        st = cpace_confirm_verify(&p->confirm, tb);
    uint8_t ta[CPACE_CONFIRM_TAG_BYTES];
    if (st == CHUTE_OK)
        st = cpace_confirm_tag(&p->confirm, ta);
    if (st != CHUTE_OK) {
        pairing_wipe(p);
        /* A Yb that is not a valid element is as much a failed
         * confirmation as a wrong tag: someone did not know the code. */
        return (st == CHUTE_ERR_MALFORMED || st == CHUTE_ERR_CRYPTO) ? CHUTE_ERR_AUTH : st;
    }
    out[0] = PMSG_CONFIRM;
    memcpy(out + 1, ta, sizeof ta);
    memcpy(out + 1 + sizeof ta, p->nonce, sizeof p->nonce);
    return derive_outputs(p);
}

chute_status pairing_joiner_finish(pairing *p, const uint8_t *msg, size_t len)
{
    if (!p || p->role != PAIRING_JOINER || p->stage != STAGE_SENT_CPACE2)
        return CHUTE_ERR_ARG;
    if (!msg || len != PAIRING_CONFIRM_BYTES || msg[0] != PMSG_CONFIRM) {
        pairing_wipe(p);
        return CHUTE_ERR_MALFORMED;
    }
    const uint8_t *ta = msg + 1;
    memcpy(p->nonce, ta + CPACE_CONFIRM_TAG_BYTES, sizeof p->nonce);
    chute_status st = cpace_confirm_verify(&p->confirm, ta);
    if (st != CHUTE_OK) {
        pairing_wipe(p);
        return CHUTE_ERR_AUTH;
    }
    return derive_outputs(p);
}

const char *pairing_sas(const pairing *p)
{
    return (p && p->stage == STAGE_CONFIRMED) ? p->sas : NULL;
}

chute_status pairing_link_key(const pairing *p, uint8_t out[PAIRING_KEY_BYTES])
{
    if (!p || p->stage != STAGE_CONFIRMED)
        return CHUTE_ERR_ARG;
    memcpy(out, p->link_key, PAIRING_KEY_BYTES);
    return CHUTE_OK;
}

static int sealed_type(uint8_t type)
{
    return type == PMSG_JOINER_INFO || type == PMSG_INVITER_DECISION ||
           type == PMSG_JOINER_DECISION;
}

/* Each sealed type is sent at most once per run and only one way, so the
 * type alone makes the nonce unique under a channel key that never
 * outlives the run. */
static void seal_nonce_ad(uint8_t type,
                          uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES],
                          uint8_t ad[sizeof SEAL_LABEL])
{
    memset(nonce, 0, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    nonce[0] = type;
    memcpy(ad, SEAL_LABEL, sizeof SEAL_LABEL - 1);
    ad[sizeof SEAL_LABEL - 1] = type;
}

chute_status pairing_seal(const pairing *p, uint8_t type, const uint8_t *pt,
                          size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    if (!p || p->stage != STAGE_CONFIRMED || !sealed_type(type) || !pt || !out ||
        len > PAIRING_PAYLOAD_MAX)
        return CHUTE_ERR_ARG;
    if (cap < len + PAIRING_SEAL_OVERHEAD)
        return CHUTE_ERR_LIMIT;
    uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    uint8_t ad[sizeof SEAL_LABEL];
    seal_nonce_ad(type, nonce, ad);
    out[0] = type;
    unsigned long long clen;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + 1, &clen, pt, len, ad, sizeof ad,
                                               NULL, nonce, p->channel_key);
    *out_len = 1 + (size_t)clen;
    return CHUTE_OK;
}

chute_status pairing_open(const pairing *p, uint8_t type, const uint8_t *msg,
                          size_t len, uint8_t *pt, size_t cap, size_t *pt_len)
{
    if (!p || p->stage != STAGE_CONFIRMED || !sealed_type(type) || !pt)
        return CHUTE_ERR_ARG;
    if (!msg || len < PAIRING_SEAL_OVERHEAD || msg[0] != type)
        return CHUTE_ERR_PROTOCOL;
    if (len > PAIRING_MSG_MAX || cap < len - PAIRING_SEAL_OVERHEAD)
        return CHUTE_ERR_LIMIT;
    uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    uint8_t ad[sizeof SEAL_LABEL];
    seal_nonce_ad(type, nonce, ad);
    unsigned long long plen;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &plen, NULL, msg + 1, len - 1,
                                                   ad, sizeof ad, nonce,
                                                   p->channel_key) != 0)
        return CHUTE_ERR_AUTH;
    *pt_len = (size_t)plen;
    return CHUTE_OK;
}

/* ---- payload JSON ------------------------------------------------------ */

static int b64url_ok(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

static chute_status device_check(const pairing_device *d)
{
    age_recipient r;
    if (!peername_ok(d->name) ||
        age_recipient_parse(&r, d->recipient) != CHUTE_OK ||
        relay_url_check(d->relay, NULL, 0, NULL) != CHUTE_OK ||
        !b64url_ok(d->inbox, 16, RELAY_ID_MAX - 1) ||
        !b64url_ok(d->send_token, 32, RELAY_TOKEN_MAX - 1))
        return CHUTE_ERR_MALFORMED;
    return CHUTE_OK;
}

chute_status pairing_payload_encode(const pairing_payload *pl, char *out,
                                    size_t cap, size_t *out_len)
{
    if (!pl || !out)
        return CHUTE_ERR_ARG;
    if (pl->has_device && device_check(&pl->device) != CHUTE_OK)
        return CHUTE_ERR_ARG;
    json_t *o = json_pack("{s:i}", "v", PAIRING_VERSION);
    if (!o)
        return CHUTE_ERR_NOMEM;
    int bad = 0;
    if (pl->decision != PAIRING_NO_DECISION)
        bad |= json_object_set_new(o, "decision",
                   json_string(pl->decision == PAIRING_ACCEPT ? "accept" : "refuse"));
    if (pl->has_device) {
        const pairing_device *d = &pl->device;
        json_t *dev = json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", d->name,
                                "recipient", d->recipient, "relay", d->relay,
                                "inbox", d->inbox, "send_token", d->send_token);
        bad |= !dev || json_object_set_new(o, "device", dev);
    }
    size_t need = bad ? 0 : json_dumpb(o, NULL, 0, JSON_COMPACT);
    chute_status st = CHUTE_OK;
    if (bad || need == 0)
        st = CHUTE_ERR_NOMEM;
    else if (need > cap || need > PAIRING_PAYLOAD_MAX)
        st = CHUTE_ERR_LIMIT;
    else
        *out_len = json_dumpb(o, out, cap, JSON_COMPACT);
    json_decref(o);
    return st;
}

/* Copy a required string member; refuses NUL inside and over-long values. */
static int take_string(json_t *o, const char *key, char *dst, size_t cap)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return 0;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n >= cap || strlen(s) != n)
        return 0;
    memcpy(dst, s, n + 1);
    return 1;
}

chute_status pairing_payload_parse(uint8_t type, const uint8_t *json, size_t len,
                                   pairing_payload *out)
{
    if (!out)
        return CHUTE_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (!json || len == 0 || len > PAIRING_PAYLOAD_MAX || !sealed_type(type))
        return CHUTE_ERR_MALFORMED;
    json_t *o = json_loadb((const char *)json, len, JSON_REJECT_DUPLICATES, NULL);
    chute_status st = CHUTE_ERR_MALFORMED;
    if (!json_is_object(o))
        goto out;
    json_t *v = json_object_get(o, "v");
    if (!json_is_integer(v) || json_integer_value(v) != PAIRING_VERSION)
        goto out;
    /* Unknown members are refused too: a payload is small and exact. */
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val) {
        if (strcmp(key, "v") && strcmp(key, "decision") && strcmp(key, "device"))
            goto out;
    }
    json_t *dec = json_object_get(o, "decision");
    if (dec) {
        const char *d = json_string_value(dec);
        if (d && strcmp(d, "accept") == 0)
            out->decision = PAIRING_ACCEPT;
        else if (d && strcmp(d, "refuse") == 0)
            out->decision = PAIRING_REFUSE;
        else
            goto out;
    }
    json_t *dev = json_object_get(o, "device");
    if (dev) {
        if (!json_is_object(dev) || json_object_size(dev) != 5)
            goto out;
        pairing_device *d = &out->device;
        if (!take_string(dev, "name", d->name, sizeof d->name) ||
            !take_string(dev, "recipient", d->recipient, sizeof d->recipient) ||
            !take_string(dev, "relay", d->relay, sizeof d->relay) ||
            !take_string(dev, "inbox", d->inbox, sizeof d->inbox) ||
            !take_string(dev, "send_token", d->send_token, sizeof d->send_token) ||
            device_check(d) != CHUTE_OK)
            goto out;
        out->has_device = 1;
    }
    switch (type) {
    case PMSG_JOINER_INFO:
        if (out->decision == PAIRING_NO_DECISION && out->has_device)
            st = CHUTE_OK;
        break;
    case PMSG_INVITER_DECISION:
        if ((out->decision == PAIRING_ACCEPT && out->has_device) ||
            (out->decision == PAIRING_REFUSE && !out->has_device))
            st = CHUTE_OK;
        break;
    case PMSG_JOINER_DECISION:
        if (out->decision != PAIRING_NO_DECISION && !out->has_device)
            st = CHUTE_OK;
        break;
    default:
        break;
    }
out:
    json_decref(o);
    if (st != CHUTE_OK)
        pairing_payload_wipe(out);
    return st;
}

void pairing_payload_wipe(pairing_payload *pl)
{
    if (pl)
        sodium_memzero(pl, sizeof *pl);
}
