/* pairing_run.c — drive PROTOCOL §7 through the relay, for both sides. */
#include "pairing_run.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "paircode.h"
#include "relay_url.h"

/* The longest single long-poll; deadlines are checked between polls. */
#define POLL_WAIT_MAX_S 25
/* How long a side that sent a terminal message gives the other side to
 * read it before it stops caring. */
#define LINGER_S 5

/* One side's view of the rendezvous. */
typedef struct {
    relay_client *c;
    relay_pair_side side;
    uint64_t after;            /* highest seq read from the other side */
    int last_type;             /* type of the last message read, -1 none */
    int network_grace_s;
    long client_timeout_ms;    /* the client's own request timeout, put back after */
    long base_timeout_ms;      /* the longest a request may take now */
    int step_timeout_s;
    pairing_result *out;
    const pairing_ui *ui;
    const atomic_int *stop;    /* pairing_options.stop; NULL once cleaning up */
    bool ended;                /* a terminal message (ABORT, a refusal) was sent or read */
    bool closed;               /* we closed the session */
    bool claim_seen;           /* inviter: the relay said the code was claimed */
    bool send_unanswered;      /* a try of the last send got no answer (or a 5xx) */
} channel;

static bool stopped(const channel *ch)
{
    return ch->stop && atomic_load(ch->stop) != 0;
}

static void say_why(channel *ch, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say_why(channel *ch, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ch->out->why, sizeof ch->out->why, fmt, ap);
    va_end(ap);
}

static void note(channel *ch, const char *text)
{
    if (ch->ui && ch->ui->note)
        ch->ui->note(ch->ui->ctx, text);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The next request may go unanswered for at most `seconds` (beyond the
 * wait a long-poll asks for), and never longer than the client's own
 * timeout: a relay that stalls (stopped, wedged) counts against the
 * network grace like one that refuses, instead of costing a whole
 * request timeout per try. */
static void limit_next_request(channel *ch, double seconds)
{
    long ms = (long)(seconds * 1000);
    if (ms < 1000)
        ms = 1000;
    if (ms > ch->base_timeout_ms)
        ms = ch->base_timeout_ms;
    relay_client_set_timeout(ch->c, ms);
}

static void unlimit(channel *ch)
{
    relay_client_set_timeout(ch->c, ch->base_timeout_ms);
}

/* Wait for the other side's next message until `deadline` (monotonic
 * seconds). CHUTE_OK with the message in buf; CHUTE_ERR_EXPIRED when the
 * deadline passes (*timed_out = 1) or the session is gone (410);
 * CHUTE_ERR_NETWORK when the relay stayed unreachable for the grace time;
 * CHUTE_ERR_MALFORMED when the other side sent more than `cap` bytes (a
 * message of the wrong length, §7.3: wait_failed answers ABORT 02).
 * `before_claim`: a 410 while the session still says "waiting" is not the
 * end (a relay may refuse reads before the claim), so keep waiting. */
static chute_status await_msg(channel *ch, double deadline, int before_claim,
                              uint8_t *buf, size_t cap, size_t *len,
                              int *timed_out)
{
    double net_down_since = 0;
    *timed_out = 0;
    /* Each round either long-polls (>= 1 s) or naps, so the count is
     * bounded by the deadline; the cap is a second fence. */
    for (unsigned round = 0; round < 100000; round++) {
        if (stopped(ch))
            return CHUTE_ERR_REFUSED;   /* wait_failed says why */
        double now = now_s();
        if (now >= deadline) {
            *timed_out = 1;
            return CHUTE_ERR_EXPIRED;
        }
        int wait = (int)(deadline - now);
        if (wait > POLL_WAIT_MAX_S)
            wait = POLL_WAIT_MAX_S;
        if (wait < 1 || net_down_since != 0)
            wait = 1;   /* while the relay is failing: probe, do not park */
        relay_pair_inbox in;
        double started = now_s();
        /* No answer by the end of the wait plus what is left of the grace
         * is a relay that is not answering (§7.7). */
        limit_next_request(ch, ch->network_grace_s -
                               (net_down_since != 0 ? started - net_down_since : 0));
        chute_status st = relay_pair_receive(ch->c, &ch->side, ch->after, wait, &in);
        unlimit(ch);
        if (st == CHUTE_ERR_NETWORK) {
            if (stopped(ch))
                return CHUTE_ERR_REFUSED;
            /* Down since the answer was due, or since it failed if sooner. */
            if (net_down_since == 0)
                net_down_since = now_s() < started + wait ? now_s() : started + wait;
            if (now_s() - net_down_since >= ch->network_grace_s)
                return CHUTE_ERR_NETWORK;
            nap_ms(250);
            continue;
        }
        net_down_since = 0;
        if (st == CHUTE_ERR_EXPIRED && before_claim) {
            char state[RELAY_STATE_MAX];
            if (relay_pair_state(ch->c, &ch->side, state, NULL) == CHUTE_OK &&
                strcmp(state, "waiting") == 0) {
                nap_ms(500);
                continue;
            }
        }
        if (st != CHUTE_OK)
            return st;
        if (in.count > 0) {
            relay_pair_message *m = &in.messages[0];
            if (m->seq <= ch->after) {   /* the relay's numbering went back */
                relay_pair_inbox_free(&in);
                return CHUTE_ERR_PROTOCOL;
            }
            if (m->len > cap) {          /* the other side's, as the relay took it */
                ch->after = m->seq;
                relay_pair_inbox_free(&in);
                return CHUTE_ERR_MALFORMED;
            }
            ch->after = m->seq;
            /* No side sends two messages of one type in a row, so such a
             * pair is a send the other side retried after losing the
             * relay's answer (§7.3): skip the repeat. */
            int type = pairing_msg_type(m->body, m->len);
            if (type == ch->last_type) {
                relay_pair_inbox_free(&in);
                continue;
            }
            ch->last_type = type;
            memcpy(buf, m->body, m->len);
            *len = m->len;
            relay_pair_inbox_free(&in);
            return CHUTE_OK;
        }
        relay_pair_inbox_free(&in);
        /* Claimed, and no HELLO: a guess, or a joiner that stopped. The
         * code is used up; the other side gets a step, not the code's
         * whole lifetime (§4.3: a wrong guess shows). */
        if (before_claim && !ch->claim_seen) {
            char state[RELAY_STATE_MAX];
            if (relay_pair_state(ch->c, &ch->side, state, NULL) == CHUTE_OK &&
                strcmp(state, "claimed") == 0) {
                ch->claim_seen = true;
                if (deadline > now_s() + ch->step_timeout_s)
                    deadline = now_s() + ch->step_timeout_s;
            }
        }
        /* An empty answer that came back early (a relay that does not
         * hold the request) must not turn into a busy loop. */
        if (now_s() - started < 0.5)
            nap_ms(300);
    }
    *timed_out = 1;
    return CHUTE_ERR_EXPIRED;
}

/* Send one message. A relay that cannot be reached (or answers 5xx) is
 * retried for the grace time: the request may have been stored before its
 * answer was lost, and the receiver drops such a repeat (§7.3). Such a
 * try sets ch->send_unanswered: the message may be on the relay, and read,
 * whatever a later try gets. */
static chute_status send_msg(channel *ch, const uint8_t *msg, size_t len)
{
    double give_up = now_s() + ch->network_grace_s;
    ch->send_unanswered = false;
    for (unsigned attempt = 0; attempt < 1000; attempt++) {
        limit_next_request(ch, give_up - now_s());
        chute_status st = relay_pair_send(ch->c, &ch->side, msg, len, NULL);
        unlimit(ch);
        if (st != CHUTE_ERR_NETWORK || now_s() >= give_up || stopped(ch))
            return st;
        ch->send_unanswered = true;
        nap_ms(250);
    }
    return CHUTE_ERR_NETWORK;
}

/* The relay ended the session because its time ran out (§6.7: a 410
 * whose reason is "expired"), as the last answer says. */
static bool session_expired(const channel *ch)
{
    return relay_client_http_status(ch->c) == 410 &&
           strcmp(relay_client_reason(ch->c), "expired") == 0;
}

/* Explain a send that failed. */
static void send_failed(channel *ch, chute_status st)
{
    if (st == CHUTE_ERR_EXPIRED && session_expired(ch))
        say_why(ch, "The code's time ran out during the pairing: the relay ended the "
                "session. Nothing was stored; pair again with a longer `pairtool invite "
                "--ttl`.");
    else if (st == CHUTE_ERR_EXPIRED && strcmp(relay_client_reason(ch->c), "closed") == 0)
        say_why(ch, "The other device ended the pairing session on the relay (it gave up "
                "or was stopped). Nothing was stored.");
    else
        say_why(ch, "Could not send to the relay (%s).", relay_client_error(ch->c));
}

/* Best effort: tell the other side why we stop. */
static void send_abort(channel *ch, uint8_t reason)
{
    uint8_t m[PAIRING_ABORT_BYTES];
    pairing_abort_msg(reason, m);
    (void)send_msg(ch, m, sizeof m);
    ch->ended = true;
}

/* Best effort: undo a send token handed out during a run that failed. */
static void revoke_quietly(relay_client *c, const devstate_device *me,
                           relay_sender *granted)
{
    if (granted->sender[0])
        (void)relay_sender_revoke(c, me->inbox, me->owner_token, granted->sender);
    sodium_memzero(granted, sizeof *granted);
}

/* Explain a failed wait for the other side's message; returns the run's
 * status. */
static chute_status wait_failed(channel *ch, chute_status st, int timed_out,
                                const char *waiting_for)
{
    if (stopped(ch)) {
        say_why(ch, "Stopped while waiting for %s. Nothing was stored.", waiting_for);
        return CHUTE_ERR_REFUSED;
    }
    if (st == CHUTE_ERR_MALFORMED) {   /* longer than any pairing message */
        say_why(ch, "The other device sent a malformed pairing message (too long) while "
                "we waited for %s.", waiting_for);
        send_abort(ch, PABORT_PROTOCOL);
        return CHUTE_ERR_PROTOCOL;
    }
    if (timed_out)
        say_why(ch, "Timed out waiting for %s.", waiting_for);
    else if (st == CHUTE_ERR_NETWORK)
        say_why(ch, "The relay became unreachable while waiting for %s (%s).",
                waiting_for, relay_client_error(ch->c));
    else if (st == CHUTE_ERR_EXPIRED && session_expired(ch))
        say_why(ch, "The code's time ran out while waiting for %s: the relay ended the "
                "session. Nothing was stored; pair again with a longer `pairtool invite "
                "--ttl`.", waiting_for);
    else if (st == CHUTE_ERR_EXPIRED && strcmp(relay_client_reason(ch->c), "closed") == 0)
        say_why(ch, "The other device ended the pairing session on the relay while we "
                "waited for %s (it gave up or was stopped).", waiting_for);
    else if (st == CHUTE_ERR_EXPIRED)
        say_why(ch, "The pairing session ended on the relay while waiting for %s "
                "(the other side gave up, or the code expired).", waiting_for);
    else
        say_why(ch, "The relay failed while waiting for %s (%s).", waiting_for,
                relay_client_error(ch->c));
    return st;
}

/* After reading a terminal message from the other side, end the session
 * for both (the relay deletes its messages). */
static void close_session(channel *ch)
{
    (void)relay_pair_close(ch->c, &ch->side);
    ch->closed = ch->ended = true;
}

/* The other side sent ABORT (or something we did not expect): explain.
 * An ABORT is a terminal message we read, so we close the session. */
static chute_status unexpected(channel *ch, const uint8_t *msg, size_t len,
                               pairing_role me, const char *waiting_for)
{
    int reason = pairing_abort_reason(msg, len);
    if (reason)
        close_session(ch);
    if (reason == PABORT_CONFIRMATION) {
        if (me == PAIRING_JOINER)
            say_why(ch, "The code is wrong (or someone tampered with the exchange, or the "
                    "two devices use different relays). That code is used up now: ask "
                    "for a new one.");
        else
            say_why(ch, "The joining device could not confirm the key: someone tampered "
                    "with the exchange. Nothing was stored; run `pairtool invite` again.");
        return CHUTE_ERR_AUTH;
    }
    if (reason == PABORT_PROTOCOL) {
        say_why(ch, "The other device reported a protocol error while we waited for %s.",
                waiting_for);
        return CHUTE_ERR_PROTOCOL;
    }
    if (reason) {
        say_why(ch, "The other device cancelled the pairing.");
        return CHUTE_ERR_EXPIRED;
    }
    say_why(ch, "Unexpected message from the other device while waiting for %s.",
            waiting_for);
    send_abort(ch, PABORT_PROTOCOL);
    return CHUTE_ERR_PROTOCOL;
}

/* The other side is this device: its own key or its own inbox came back
 * (invite and join from one state folder). */
static bool is_me(const devstate_device *me, const pairing_device *d)
{
    return strcmp(d->recipient, me->recipient) == 0 || strcmp(d->inbox, me->inbox) == 0;
}

/* Refuse a pairing with ourselves; warn, naming the folder, when this
 * device is paired with the other one already. false: the run must end. */
static bool check_not_paired_already(channel *ch, devstate *ds, const devstate_device *me,
                                     const pairing_device *d)
{
    if (is_me(me, d)) {
        say_why(ch, "The other side of this pairing is this very device (its own key and "
                "inbox came back): a device cannot pair with itself. Run `pairtool join` "
                "on the other device. Nothing was stored.");
        return false;
    }
    char folder[PEERNAME_MAX + 1], quoted_folder[PEERNAME_QUOTED_MAX], line[320];
    if (devstate_find_peer_by_recipient(ds, d->recipient, folder) == CHUTE_OK) {
        peername_quote(folder, quoted_folder, sizeof quoted_folder);
        snprintf(line, sizeof line, "Warning: this device is already paired with that device "
                 "(the same key), in the folder %s. Pairing again gives it a second folder; "
                 "`pairtool unpair` the one you no longer want.", quoted_folder);
        note(ch, line);
    }
    return true;
}

/* The peer's chosen name, quoted and escaped for a message (peername.h). */
static const char *quote(const pairing_device *d, char out[PEERNAME_QUOTED_MAX])
{
    peername_quote(d->name, out, PEERNAME_QUOTED_MAX);
    return out;
}

/* This device as its new peer will know it. */
static chute_status describe_me(const devstate_device *me, const relay_sender *granted,
                                pairing_device *d)
{
    memset(d, 0, sizeof *d);
    if (snprintf(d->name, sizeof d->name, "%s", me->name) >= (int)sizeof d->name ||
        snprintf(d->recipient, sizeof d->recipient, "%s", me->recipient) >= (int)sizeof d->recipient ||
        snprintf(d->relay, sizeof d->relay, "%s", me->relay_url) >= (int)sizeof d->relay ||
        snprintf(d->inbox, sizeof d->inbox, "%s", me->inbox) >= (int)sizeof d->inbox ||
        snprintf(d->send_token, sizeof d->send_token, "%s", granted->send_token) >= (int)sizeof d->send_token)
        return CHUTE_ERR_ARG;
    return CHUTE_OK;
}

/* Seal a payload as a message of `type` and send it. */
static chute_status send_payload(channel *ch, const pairing *p, uint8_t type,
                                 const pairing_payload *pl)
{
    char json[PAIRING_PAYLOAD_MAX];
    size_t json_len = 0, msg_len = 0;
    uint8_t msg[PAIRING_MSG_MAX];
    chute_status st = pairing_payload_encode(pl, json, sizeof json, &json_len);
    if (st == CHUTE_OK)
        st = pairing_seal(p, type, (const uint8_t *)json, json_len, msg, sizeof msg, &msg_len);
    sodium_memzero(json, sizeof json);
    if (st != CHUTE_OK) {
        say_why(ch, "Could not build the pairing message (%s).", chute_strstatus(st));
        send_abort(ch, PABORT_CANCELLED);   /* so the other side need not time out */
        return st;
    }
    st = send_msg(ch, msg, msg_len);
    sodium_memzero(msg, sizeof msg);
    if (st != CHUTE_OK)
        send_failed(ch, st);
    return st;
}

/* Wait for a sealed message of `type` and parse its payload. */
static chute_status receive_payload(channel *ch, const pairing *p, pairing_role me,
                                    uint8_t type, double deadline,
                                    const char *waiting_for, pairing_payload *pl)
{
    uint8_t msg[PAIRING_MSG_MAX], json[PAIRING_PAYLOAD_MAX];
    size_t len = 0, json_len = 0;
    int timed_out;
    chute_status st = await_msg(ch, deadline, 0, msg, sizeof msg, &len, &timed_out);
    if (st != CHUTE_OK)
        return wait_failed(ch, st, timed_out, waiting_for);
    if (pairing_msg_type(msg, len) != type)
        return unexpected(ch, msg, len, me, waiting_for);
    st = pairing_open(p, type, msg, len, json, sizeof json, &json_len);
    if (st == CHUTE_OK)
        st = pairing_payload_parse(type, json, json_len, pl);
    sodium_memzero(json, sizeof json);
    sodium_memzero(msg, sizeof msg);
    if (st == CHUTE_ERR_AUTH) {
        say_why(ch, "A pairing message did not authenticate: someone tampered with the "
                "exchange. Nothing was stored.");
        send_abort(ch, PABORT_CONFIRMATION);
        return CHUTE_ERR_AUTH;
    }
    if (st != CHUTE_OK) {
        say_why(ch, "The other device sent a malformed pairing message while we waited "
                "for %s.", waiting_for);
        send_abort(ch, PABORT_PROTOCOL);
        return CHUTE_ERR_PROTOCOL;
    }
    return CHUTE_OK;
}

static chute_status store_peer(channel *ch, devstate *ds, const pairing *p,
                               const pairing_device *their, const relay_sender *granted)
{
    devstate_peer peer;
    memset(&peer, 0, sizeof peer);
    snprintf(peer.device_name, sizeof peer.device_name, "%s", their->name);
    snprintf(peer.recipient, sizeof peer.recipient, "%s", their->recipient);
    snprintf(peer.relay_url, sizeof peer.relay_url, "%s", their->relay);
    snprintf(peer.inbox, sizeof peer.inbox, "%s", their->inbox);
    snprintf(peer.send_token, sizeof peer.send_token, "%s", their->send_token);
    snprintf(peer.granted_sender, sizeof peer.granted_sender, "%s", granted->sender);
    chute_status st = pairing_link_key(p, peer.link_key);
    if (st == CHUTE_OK)
        st = devstate_add_peer(ds, &peer);
    if (st == CHUTE_OK) {
        snprintf(ch->out->peer_name, sizeof ch->out->peer_name, "%s", peer.name);
    } else {
        say_why(ch, "Could not store the new peer in the device state (%s).",
                chute_strstatus(st));
    }
    devstate_peer_wipe(&peer);
    return st;
}

static void options_fill(const pairing_options *in, pairing_options *o)
{
    memset(o, 0, sizeof *o);
    if (in)
        *o = *in;
    if (o->step_timeout_s <= 0)
        o->step_timeout_s = 60;
    if (o->human_timeout_s <= 0)
        o->human_timeout_s = 600;
    if (o->network_grace_s <= 0)
        o->network_grace_s = 5;
}

/* Tell the other side we refused and wait (briefly) for it to read it. */
static void linger(channel *ch)
{
    double until = now_s() + LINGER_S;
    while (now_s() < until) {
        char state[RELAY_STATE_MAX];
        chute_status st = relay_pair_state(ch->c, &ch->side, state, NULL);
        if (st != CHUTE_OK || strcmp(state, "closed") == 0)
            return;
        nap_ms(200);
    }
}

/* The client as the caller gave it to us. */
static void restore_client(channel *ch)
{
    relay_client_set_timeout(ch->c, ch->client_timeout_ms);
}

/* A run that fails: a signal no longer cuts the requests that clean up;
 * the other side is told (ABORT 03, §7.7) unless a terminal message went
 * either way already; the inviter, who owns the session, lets the other
 * side read what it sent, then closes it — a joiner's accept after that
 * finds no session and stores nothing. */
static void end_failed(channel *ch, pairing_role me)
{
    relay_client_set_stop(ch->c, NULL);
    ch->stop = NULL;
    /* Cleaning up is best effort: a relay that stalls gets the grace per
     * request, not the client's whole timeout (restore_client puts it back). */
    if (ch->base_timeout_ms > ch->network_grace_s * 1000L)
        ch->base_timeout_ms = ch->network_grace_s * 1000L;
    unlimit(ch);
    if (!ch->ended)
        send_abort(ch, PABORT_CANCELLED);
    if (me != PAIRING_INVITER || ch->closed)
        return;
    if (ch->after > 0)
        linger(ch);   /* a joiner is there: let it read why */
    close_session(ch);
}

/* The person's answer to "pair with ...?": 1 yes, 0 no; no answer in
 * time, or a stop, is a failure of its own (why set). */
static int ask(channel *ch, const pairing_ui *ui, const char *role_text, const char *name,
               const char *sas, int within_s)
{
    int yes = ui && ui->approve ? ui->approve(ui->ctx, role_text, name, sas, within_s) : 0;
    if (yes >= 0 && !stopped(ch))
        return yes;
    if (stopped(ch))
        say_why(ch, "Stopped before an answer. Nothing was stored.");
    else
        say_why(ch, "No answer within %d s. Nothing was stored.", within_s);
    return -1;
}

/* ---- the inviting side -------------------------------------------------- */

chute_status pairing_invite(devstate *ds, const devstate_device *me,
                            relay_client *c, const pairing_options *opt_in,
                            const pairing_ui *ui, pairing_result *out)
{
    memset(out, 0, sizeof *out);
    pairing_options opt;
    options_fill(opt_in, &opt);
    channel ch = { .c = c, .network_grace_s = opt.network_grace_s,
                   .step_timeout_s = opt.step_timeout_s, .out = out, .ui = ui,
                   .last_type = -1, .stop = opt.stop };
    char quoted[PEERNAME_QUOTED_MAX];   /* the peer's name in a message */
    ch.client_timeout_ms = ch.base_timeout_ms = relay_client_set_timeout(c, 0);
    relay_client_set_timeout(c, ch.client_timeout_ms);   /* that was only a read */
    char origin[RELAY_URL_MAX];
    const char *why;
    if (relay_url_check(me->relay_url, origin, sizeof origin, &why) != CHUTE_OK) {
        say_why(&ch, "This device's relay URL is not usable: %s.", why);
        return CHUTE_ERR_ARG;
    }
    relay_client_set_stop(c, opt.stop);

    chute_status st = relay_pair_allocate(c, opt.ttl_s, &ch.side);
    if (st == CHUTE_ERR_REFUSED) {
        say_why(&ch, "The relay is private and refused %s access token; store the right one "
                "with `pairtool init --relay URL --access-token-file FILE`.",
                me->access_token[0] ? "this device's" : "to start a pairing without an");
        return st;
    }
    if (st != CHUTE_OK) {
        say_why(&ch, "Could not start a pairing on the relay: %s.", relay_client_error(c));
        return st;
    }
    char secret[PAIRCODE_SECRET_CHARS + 1];
    char code[PAIRCODE_MAX_LEN + 1];
    pairing p;
    relay_sender granted;
    pairing_payload theirs;
    memset(&granted, 0, sizeof granted);
    memset(&theirs, 0, sizeof theirs);
    memset(&p, 0, sizeof p);
    paircode_secret_make(secret);
    st = paircode_format(ch.side.nameplate, secret, code, sizeof code);
    if (st == CHUTE_OK)
        st = pairing_init(&p, PAIRING_INVITER, secret, origin, ch.side.nameplate);
    sodium_memzero(secret, sizeof secret);
    if (st != CHUTE_OK) {
        say_why(&ch, "The relay allocated a nameplate this client cannot use (%s).",
                ch.side.nameplate);
        close_session(&ch);
        return CHUTE_ERR_PROTOCOL;
    }
    /* The code's deadline in our monotonic clock: the seconds the relay
     * says it has left (our wall clock may not be the relay's); from its
     * absolute expiry only for a relay that does not say. */
    long long left = ch.side.ttl >= 0 ? ch.side.ttl
                                      : ch.side.expires - (long long)time(NULL);
    if (left < 1)
        left = 1;
    double code_deadline = now_s() + (double)left;
    if (ui && ui->show_code)
        ui->show_code(ui->ctx, code, left);
    sodium_memzero(code, sizeof code);

    uint8_t msg[PAIRING_MSG_MAX];
    size_t len = 0;
    int timed_out;

    /* 1. the joiner's HELLO: someone claimed the code */
    st = await_msg(&ch, code_deadline, 1, msg, sizeof msg, &len, &timed_out);
    if (st != CHUTE_OK) {
        char state[RELAY_STATE_MAX];
        if (timed_out && !ch.claim_seen &&
            relay_pair_state(c, &ch.side, state, NULL) == CHUTE_OK &&
            strcmp(state, "claimed") == 0)
            ch.claim_seen = true;
        if (ch.claim_seen && !stopped(&ch) && (timed_out || st == CHUTE_ERR_EXPIRED)) {
            say_why(&ch, "Someone used the code but went no further (a device that "
                    "stopped, or a guess). That code is used up now; run `pairtool "
                    "invite` again for a new one.");
            st = CHUTE_ERR_EXPIRED;
        } else if (!stopped(&ch) &&
                   (timed_out || (st == CHUTE_ERR_EXPIRED && now_s() >= code_deadline - 1))) {
            say_why(&ch, "The code expired before anyone used it. Run `pairtool invite` "
                    "again for a new code.");
            st = CHUTE_ERR_EXPIRED;
        } else {
            st = wait_failed(&ch, st, timed_out, "the other device to use the code");
        }
        goto fail;
    }
    if (pairing_msg_type(msg, len) != PMSG_HELLO) {
        st = unexpected(&ch, msg, len, PAIRING_INVITER, "the other device's hello");
        goto fail;
    }
    if ((st = pairing_check_hello(msg, len)) != CHUTE_OK) {
        if (st == CHUTE_ERR_UNSUPPORTED)
            say_why(&ch, "The joining device speaks another version of the pairing protocol.");
        else
            say_why(&ch, "The joining device sent a malformed hello.");
        send_abort(&ch, PABORT_PROTOCOL);
        st = CHUTE_ERR_PROTOCOL;
        goto fail;
    }
    note(&ch, "The code was claimed; checking it...");

    /* 2. CPACE1 out, CPACE2 in, confirm */
    st = pairing_inviter_cpace1(&p, msg);
    if (st == CHUTE_OK && (st = send_msg(&ch, msg, PAIRING_CPACE1_BYTES)) != CHUTE_OK)
        send_failed(&ch, st);
    if (st != CHUTE_OK)
        goto fail;
    st = await_msg(&ch, now_s() + opt.step_timeout_s, 0, msg, sizeof msg, &len, &timed_out);
    if (st != CHUTE_OK) {
        st = wait_failed(&ch, st, timed_out, "the joining device's key");
        goto fail;
    }
    if (pairing_msg_type(msg, len) != PMSG_CPACE2) {
        st = unexpected(&ch, msg, len, PAIRING_INVITER, "the joining device's key");
        goto fail;
    }
    uint8_t confirm[PAIRING_CONFIRM_BYTES];
    st = pairing_inviter_confirm(&p, msg, len, confirm);
    if (st == CHUTE_ERR_AUTH) {
        say_why(&ch, "Someone tried a wrong code (or tampered with the exchange). This code "
                "is used up now; run `pairtool invite` again for a new code.");
        send_abort(&ch, PABORT_CONFIRMATION);
        goto fail;
    }
    if (st != CHUTE_OK) {
        say_why(&ch, "The joining device sent a malformed key message.");
        send_abort(&ch, PABORT_PROTOCOL);
        st = CHUTE_ERR_PROTOCOL;
        goto fail;
    }
    if ((st = send_msg(&ch, confirm, sizeof confirm)) != CHUTE_OK) {
        send_failed(&ch, st);
        goto fail;
    }
    snprintf(out->sas, sizeof out->sas, "%s", pairing_sas(&p));

    /* 3. the joiner's device, sealed */
    st = receive_payload(&ch, &p, PAIRING_INVITER, PMSG_JOINER_INFO,
                         now_s() + opt.step_timeout_s, "the joining device's details",
                         &theirs);
    if (st != CHUTE_OK)
        goto fail;
    snprintf(out->peer_device, sizeof out->peer_device, "%s", theirs.device.name);
    if (!check_not_paired_already(&ch, ds, me, &theirs.device)) {
        st = CHUTE_ERR_REFUSED;
        goto fail;   /* ABORT 03: the joiner stops and revokes its grant */
    }

    /* 4. a person decides */
    pairing_payload mine;
    memset(&mine, 0, sizeof mine);
    int yes = ask(&ch, ui, "the device joining you", theirs.device.name, out->sas,
                  opt.human_timeout_s);
    if (yes < 0) {
        st = CHUTE_ERR_REFUSED;
        goto fail;
    }
    if (!yes) {
        mine.decision = PAIRING_REFUSE;
        (void)send_payload(&ch, &p, PMSG_INVITER_DECISION, &mine);
        ch.ended = true;
        say_why(&ch, "You refused %s. Nothing was stored.", quote(&theirs.device, quoted));
        st = CHUTE_ERR_REFUSED;
        linger(&ch);
        close_session(&ch);   /* lingered once: end_failed need not again */
        goto fail;
    }
    st = relay_sender_add(c, me->inbox, me->owner_token, &granted);
    if (st != CHUTE_OK) {
        say_why(&ch, "Could not register a send token on this device's inbox at the relay (%s).",
                relay_client_error(c));
        send_abort(&ch, PABORT_CANCELLED);
        goto fail;
    }
    mine.decision = PAIRING_ACCEPT;
    mine.has_device = 1;
    st = describe_me(me, &granted, &mine.device);
    if (st == CHUTE_OK)
        st = send_payload(&ch, &p, PMSG_INVITER_DECISION, &mine);
    pairing_payload_wipe(&mine);
    if (st != CHUTE_OK)
        goto fail;
    note(&ch, "Approved; waiting for the joining device to confirm...");

    /* 5. the joiner's decision, then store */
    pairing_payload decision;
    st = receive_payload(&ch, &p, PAIRING_INVITER, PMSG_JOINER_DECISION,
                         now_s() + opt.human_timeout_s,
                         "the joining device to confirm", &decision);
    if (st != CHUTE_OK)
        goto fail;
    if (decision.decision != PAIRING_ACCEPT) {
        say_why(&ch, "The joining device %s declined the pairing. Nothing was stored.",
                quote(&theirs.device, quoted));
        st = CHUTE_ERR_REFUSED;
        close_session(&ch);
        goto fail;
    }
    st = store_peer(&ch, ds, &p, &theirs.device, &granted);
    close_session(&ch);
    if (st != CHUTE_OK)
        goto fail;
    pairing_payload_wipe(&theirs);
    pairing_wipe(&p);
    sodium_memzero(&granted, sizeof granted);
    sodium_memzero(&ch.side, sizeof ch.side);
    return CHUTE_OK;

fail:
    end_failed(&ch, PAIRING_INVITER);
    revoke_quietly(c, me, &granted);
    restore_client(&ch);
    pairing_payload_wipe(&theirs);
    pairing_wipe(&p);
    sodium_memzero(&ch.side, sizeof ch.side);
    return st;
}

/* ---- the joining side ----------------------------------------------------- */

chute_status pairing_join(devstate *ds, const devstate_device *me,
                          relay_client *c, const char *code_text,
                          const pairing_options *opt_in, const pairing_ui *ui,
                          pairing_result *out)
{
    memset(out, 0, sizeof *out);
    pairing_options opt;
    options_fill(opt_in, &opt);
    channel ch = { .c = c, .network_grace_s = opt.network_grace_s,
                   .step_timeout_s = opt.step_timeout_s, .out = out, .ui = ui,
                   .last_type = -1, .stop = opt.stop };
    char quoted[PEERNAME_QUOTED_MAX];   /* the peer's name in a message */
    ch.client_timeout_ms = ch.base_timeout_ms = relay_client_set_timeout(c, 0);
    relay_client_set_timeout(c, ch.client_timeout_ms);   /* that was only a read */
    char origin[RELAY_URL_MAX];
    const char *why;
    if (relay_url_check(me->relay_url, origin, sizeof origin, &why) != CHUTE_OK) {
        say_why(&ch, "This device's relay URL is not usable: %s.", why);
        return CHUTE_ERR_ARG;
    }
    relay_client_set_stop(c, opt.stop);
    paircode code;
    if (!code_text || paircode_parse(code_text, strlen(code_text), &code, &why) != CHUTE_OK) {
        say_why(&ch, "That is not a pair code: %s", why ? why : "empty");
        return CHUTE_ERR_MALFORMED;
    }

    chute_status st = relay_pair_claim(c, code.nameplate, &ch.side);
    if (st != CHUTE_OK) {
        const char *reason = relay_client_reason(c);
        if (st == CHUTE_ERR_EXPIRED && strcmp(reason, "claimed") == 0)
            say_why(&ch, "This code has already been used. Codes work once: ask for a new one.");
        else if (st == CHUTE_ERR_EXPIRED && strcmp(reason, "closed") == 0)
            say_why(&ch, "The inviting device cancelled this code before it was used (it "
                    "gave up or was stopped). Ask for a new one.");
        else if (st == CHUTE_ERR_EXPIRED)
            say_why(&ch, "This code has expired. Ask for a new one.");
        else if (st == CHUTE_ERR_NOT_FOUND)
            say_why(&ch, "The relay knows no such code (mistyped, expired long ago, or "
                    "made on another relay).");
        else
            say_why(&ch, "Could not use the code on the relay: %s.", relay_client_error(c));
        paircode_wipe(&code);
        return st;
    }
    pairing p;
    relay_sender granted;
    pairing_payload theirs;
    memset(&granted, 0, sizeof granted);
    memset(&theirs, 0, sizeof theirs);
    st = pairing_init(&p, PAIRING_JOINER, code.secret, origin, code.nameplate);
    paircode_wipe(&code);
    if (st != CHUTE_OK) {
        say_why(&ch, "Could not start the exchange (%s).", chute_strstatus(st));
        goto fail;
    }

    uint8_t msg[PAIRING_MSG_MAX];
    size_t len = 0;
    int timed_out;

    /* 1. HELLO out, CPACE1 in, CPACE2 out */
    pairing_hello(msg);
    if ((st = send_msg(&ch, msg, PAIRING_HELLO_BYTES)) != CHUTE_OK) {
        send_failed(&ch, st);
        goto fail;
    }
    st = await_msg(&ch, now_s() + opt.step_timeout_s, 0, msg, sizeof msg, &len, &timed_out);
    if (st != CHUTE_OK) {
        st = wait_failed(&ch, st, timed_out, "the inviting device's key");
        goto fail;
    }
    if (pairing_msg_type(msg, len) != PMSG_CPACE1) {
        st = unexpected(&ch, msg, len, PAIRING_JOINER, "the inviting device's key");
        goto fail;
    }
    uint8_t reply[PAIRING_CPACE2_BYTES];
    if (len != PAIRING_CPACE1_BYTES) {   /* a wrong length is ABORT 02 (§7.3) */
        say_why(&ch, "The inviting device sent a malformed key message.");
        send_abort(&ch, PABORT_PROTOCOL);
        st = CHUTE_ERR_PROTOCOL;
        goto fail;
    }
    st = pairing_joiner_cpace2(&p, msg, len, reply);
    if (st != CHUTE_OK) {
        say_why(&ch, "The inviting device's key message is malformed (or was tampered with).");
        send_abort(&ch, PABORT_CONFIRMATION);
        st = CHUTE_ERR_AUTH;
        goto fail;
    }
    if ((st = send_msg(&ch, reply, sizeof reply)) != CHUTE_OK) {
        send_failed(&ch, st);
        goto fail;
    }

    /* 2. CONFIRM in (or ABORT: wrong code) */
    st = await_msg(&ch, now_s() + opt.step_timeout_s, 0, msg, sizeof msg, &len, &timed_out);
    if (st != CHUTE_OK) {
        st = wait_failed(&ch, st, timed_out, "the inviting device to confirm the code");
        goto fail;
    }
    if (pairing_msg_type(msg, len) != PMSG_CONFIRM) {
        st = unexpected(&ch, msg, len, PAIRING_JOINER, "the inviting device to confirm the code");
        goto fail;
    }
    if (len != PAIRING_CONFIRM_BYTES) {
        say_why(&ch, "The inviting device sent a malformed confirmation.");
        send_abort(&ch, PABORT_PROTOCOL);
        st = CHUTE_ERR_PROTOCOL;
        goto fail;
    }
    st = pairing_joiner_finish(&p, msg, len);
    if (st != CHUTE_OK) {
        say_why(&ch, "The inviting device's confirmation does not verify: someone tampered "
                "with the exchange. Nothing was stored; ask for a new code.");
        send_abort(&ch, PABORT_CONFIRMATION);
        st = CHUTE_ERR_AUTH;
        goto fail;
    }
    snprintf(out->sas, sizeof out->sas, "%s", pairing_sas(&p));

    /* 3. our device, sealed, with a fresh send token for them */
    st = relay_sender_add(c, me->inbox, me->owner_token, &granted);
    if (st != CHUTE_OK) {
        say_why(&ch, "Could not register a send token on this device's inbox at the relay (%s).",
                relay_client_error(c));
        send_abort(&ch, PABORT_CANCELLED);
        goto fail;
    }
    pairing_payload mine;
    memset(&mine, 0, sizeof mine);
    mine.has_device = 1;
    st = describe_me(me, &granted, &mine.device);
    if (st == CHUTE_OK)
        st = send_payload(&ch, &p, PMSG_JOINER_INFO, &mine);
    pairing_payload_wipe(&mine);
    if (st != CHUTE_OK)
        goto fail;
    char line[160];
    snprintf(line, sizeof line, "Code accepted. Both screens should show %s. Waiting for "
             "the inviting device to approve...", out->sas);
    note(&ch, line);

    /* 4. the inviter's decision */
    st = receive_payload(&ch, &p, PAIRING_JOINER, PMSG_INVITER_DECISION,
                         now_s() + opt.human_timeout_s,
                         "the inviting device to approve", &theirs);
    if (st != CHUTE_OK)
        goto fail;
    if (theirs.decision != PAIRING_ACCEPT) {
        say_why(&ch, "The inviting device refused this pairing. Nothing was stored.");
        st = CHUTE_ERR_REFUSED;
        close_session(&ch);
        goto fail;
    }
    snprintf(out->peer_device, sizeof out->peer_device, "%s", theirs.device.name);
    if (!check_not_paired_already(&ch, ds, me, &theirs.device)) {
        st = CHUTE_ERR_REFUSED;
        goto fail;   /* ABORT 03: the inviter stops and revokes its grant */
    }

    /* 5. our person decides; store only after our accept is on the relay */
    pairing_payload decision;
    memset(&decision, 0, sizeof decision);
    int yes = ask(&ch, ui, "the device that invited you", theirs.device.name, out->sas,
                  opt.human_timeout_s);
    if (yes < 0) {
        st = CHUTE_ERR_REFUSED;
        goto fail;
    }
    if (!yes) {
        decision.decision = PAIRING_REFUSE;
        (void)send_payload(&ch, &p, PMSG_JOINER_DECISION, &decision);
        ch.ended = true;
        say_why(&ch, "You declined %s. Nothing was stored.", quote(&theirs.device, quoted));
        st = CHUTE_ERR_REFUSED;
        goto fail;
    }
    decision.decision = PAIRING_ACCEPT;
    st = send_payload(&ch, &p, PMSG_JOINER_DECISION, &decision);
    /* A try whose answer was lost may have stored the accept, and the
     * inviter read it, stored the peer and closed the session before the
     * retry, which then finds it gone (410). The accept may be on the
     * relay, so store it as §7.5 says, keep the grant, and tell the person
     * what to check: failing here would leave the inviter paired with a
     * device that revoked its token. */
    bool accept_unconfirmed = st == CHUTE_ERR_EXPIRED && ch.send_unanswered;
    if (accept_unconfirmed) {
        st = CHUTE_OK;
        out->why[0] = '\0';
    }
    if (st != CHUTE_OK)
        goto fail;
    st = store_peer(&ch, ds, &p, &theirs.device, &granted);
    if (st != CHUTE_OK)
        goto fail;
    if (accept_unconfirmed) {
        char folder[PEERNAME_QUOTED_MAX], warn[360 + PEERNAME_QUOTED_MAX];
        peername_quote(out->peer_name, folder, sizeof folder);
        snprintf(warn, sizeof warn, "Warning: the relay's answer to our accept was lost, "
                 "and when we sent it again the inviting device had closed the pairing: "
                 "it most likely read the accept and paired. Check `pairtool peers` "
                 "there; if this device is not listed, run `pairtool unpair %s` here and "
                 "pair again.", folder);
        note(&ch, warn);
    }
    pairing_payload_wipe(&theirs);
    pairing_wipe(&p);
    sodium_memzero(&granted, sizeof granted);
    sodium_memzero(&ch.side, sizeof ch.side);
    return CHUTE_OK;

fail:
    end_failed(&ch, PAIRING_JOINER);
    revoke_quietly(c, me, &granted);
    restore_client(&ch);
    pairing_payload_wipe(&theirs);
    pairing_wipe(&p);
    sodium_memzero(&ch.side, sizeof ch.side);
    return st;
}
