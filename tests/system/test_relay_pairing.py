"""PROTOCOL §6.7: the pairing rendezvous."""

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import B64URL_ID, B64URL_TOKEN, NOT_FOUND, b64, wait_until


class Side:
    def __init__(self, api, session, token):
        self.api = api.with_token(token)
        self.session = session
        self.token = token
        self.path = f"/v1/pair/{session}"

    def send(self, body):
        return self.api.post(self.path + "/messages", {"body": b64(body)})

    def receive(self, after=0, wait=0, timeout=None):
        return self.api.get(f"{self.path}/messages?after={after}&wait={wait}",
                            timeout=timeout if timeout is not None else 10 + wait)

    def state(self):
        return self.api.get(self.path)

    def close(self):
        return self.api.delete(self.path)


def allocate(api, **body):
    r = api.post("/v1/pair", body)
    assert r.status == 201, r
    return r.json


def claim(api, nameplate):
    return api.post(f"/v1/pair/{nameplate}/claim", {})


def paired(api):
    a = allocate(api)
    r = claim(api, a["nameplate"])
    assert r.status == 200, r
    return Side(api, a["session"], a["token"]), Side(api, r.json["session"], r.json["token"])


def test_allocate_gives_nameplate_session_token_and_expiry(api):
    now = time.time()
    r = api.post("/v1/pair", {})
    assert r.status == 201, r
    j = r.json
    assert set(j) == {"nameplate", "session", "token", "expires", "ttl"}
    assert re.fullmatch(r"[0-9]{1,6}", j["nameplate"])
    assert B64URL_ID.match(j["session"]) and B64URL_TOKEN.match(j["token"])
    assert now + 3600 - 5 <= j["expires"] <= now + 3600 + 5
    assert j["ttl"] == 3600        # what a client with another clock times the code by


def test_allocate_with_empty_body_uses_defaults(api):
    r = api.post("/v1/pair", b"")
    assert r.status == 201, r


def test_live_nameplates_are_unique(api):
    plates = [allocate(api)["nameplate"] for _ in range(8)]
    assert len(set(plates)) == 8


def test_allocate_honours_a_shorter_ttl(api):
    now = time.time()
    j = allocate(api, ttl=600)
    assert now + 600 - 5 <= j["expires"] <= now + 600 + 5


def test_allocate_caps_the_ttl_at_max_pair_ttl(relay_factory):
    api = relay_factory("--pair-ttl", "30s", "--max-pair-ttl", "60s").api()
    now = time.time()
    j = allocate(api, ttl=100000)
    assert j["expires"] <= now + 60 + 5


@pytest.mark.parametrize("body", [{"ttl": "600"}, {"ttl": -5}, [1], b"{not json"])
def test_allocate_with_a_malformed_body_is_refused(api, body):
    r = api.post("/v1/pair", body, content_type="application/json")
    assert r.status == 400, (body, r)
    assert "error" in r.json


def test_claim_joins_the_inviters_session(api):
    a = allocate(api)
    r = claim(api, a["nameplate"])
    assert r.status == 200, r
    j = r.json
    assert set(j) == {"session", "token", "expires", "ttl"}
    assert j["session"] == a["session"]
    assert B64URL_TOKEN.match(j["token"]) and j["token"] != a["token"]
    assert j["expires"] == a["expires"]          # more than a run's time: kept
    assert 3600 - 5 <= j["ttl"] <= 3600


def test_a_claim_gives_the_session_half_an_hour_past_the_codes_ttl(relay_factory):
    """The code's ttl bounds the time to claim it; a claimed session lasts
    for the run (whose people take up to 600 s each), however little of
    the ttl was left."""
    api = relay_factory("--pair-ttl", "2s").api()
    a = allocate(api)
    assert a["ttl"] == 2
    now = time.time()
    r = claim(api, a["nameplate"])
    assert r.status == 200, r
    assert 1800 - 5 <= r.json["ttl"] <= 1800
    assert now + 1800 - 5 <= r.json["expires"] <= now + 1800 + 5
    inviter = Side(api, a["session"], a["token"])
    joiner = Side(api, r.json["session"], r.json["token"])
    assert inviter.state().json == {"state": "claimed", "expires": r.json["expires"]}
    wait_until(lambda: time.time() > a["expires"] + 0.2, timeout=5, what="the code's ttl")
    assert joiner.send(b"after the code's ttl").status == 201
    got = inviter.receive()
    assert got.status == 200 and got.json["state"] == "claimed", got
    assert [m["body"] for m in got.json["messages"]] == [b64(b"after the code's ttl")]


def test_the_time_a_claim_gives_is_at_most_max_pair_ttl(relay_factory):
    api = relay_factory("--pair-ttl", "2s", "--max-pair-ttl", "60s").api()
    a = allocate(api)
    r = claim(api, a["nameplate"])
    assert r.status == 200, r
    assert 60 - 5 <= r.json["ttl"] <= 60


def test_second_claim_is_gone_with_reason_claimed(api):
    a = allocate(api)
    assert claim(api, a["nameplate"]).status == 200
    r = claim(api, a["nameplate"])
    assert r.status == 410, r
    assert r.json["reason"] == "claimed" and "error" in r.json


def test_claim_of_a_code_its_inviter_closed_is_gone_with_reason_closed(api):
    a = allocate(api)
    assert Side(api, a["session"], a["token"]).close().status == 204
    r = claim(api, a["nameplate"])
    assert r.status == 410, r
    assert r.json["reason"] == "closed" and "cancelled" in r.json["error"]


def test_a_used_code_reads_claimed_after_its_session_closed(api):
    a = allocate(api)
    assert claim(api, a["nameplate"]).status == 200
    assert Side(api, a["session"], a["token"]).close().status == 204
    r = claim(api, a["nameplate"])
    assert r.status == 410 and r.json["reason"] == "claimed", r


def test_claim_of_unknown_nameplate_is_not_found(api):
    used = {allocate(api)["nameplate"]}
    unknown = next(str(n) for n in range(999999, 0, -1) if str(n) not in used)
    r = claim(api, unknown)
    assert r.status == 404, r


@pytest.mark.parametrize("nameplate", ["abc", "1234567", "-1", "1%2F2"])
def test_claim_of_a_malformed_nameplate_is_refused(api, nameplate):
    r = claim(api, nameplate)
    assert r.status in (400, 404), r


def test_expired_nameplate_is_gone_with_reason_expired(relay_factory):
    api = relay_factory("--pair-ttl", "1s").api()
    a = allocate(api)
    assert a["expires"] <= time.time() + 2
    wait_until(lambda: time.time() > a["expires"] + 0.2, timeout=5, what="expiry")
    r = claim(api, a["nameplate"])
    assert r.status == 410, r
    assert r.json["reason"] == "expired"


def test_expired_session_refuses_messages_saying_expired(relay_factory):
    api = relay_factory("--pair-ttl", "2s", "--max-pair-ttl", "2s").api()
    inviter, joiner = paired(api)
    assert inviter.send(b"in time").status == 201
    exp = inviter.state().json["expires"]
    wait_until(lambda: time.time() > exp + 0.2, timeout=6, what="expiry")
    for side in (inviter, joiner):
        r = side.send(b"late")
        assert r.status == 410 and r.json["reason"] == "expired", r


def test_state_goes_waiting_claimed_closed(api):
    a = allocate(api)
    inviter = Side(api, a["session"], a["token"])
    r = inviter.state()
    assert r.status == 200 and r.json == {"state": "waiting", "expires": a["expires"]}
    j = claim(api, a["nameplate"]).json
    joiner = Side(api, j["session"], j["token"])
    assert inviter.state().json["state"] == "claimed"
    assert joiner.state().json["state"] == "claimed"
    assert joiner.close().status == 204
    r = inviter.state()
    assert r.status == 410 or (r.status == 200 and r.json["state"] == "closed"), r


def test_wrong_side_token_is_not_found(api):
    inviter, _ = paired(api)
    other, _ = paired(api)
    for token in (None, other.token, "x" * 43):
        s = Side(api, inviter.session, token or "")
        for r in (s.state(), s.send(b"x"), s.receive(), s.close()):
            assert (r.status, r.json) == (404, NOT_FOUND), (token, r)
    assert inviter.state().json["state"] == "claimed"


def test_sending_before_a_claim_is_gone(api):
    a = allocate(api)
    r = Side(api, a["session"], a["token"]).send(b"too early")
    assert r.status == 410, r


def test_messages_flow_both_ways(api):
    inviter, joiner = paired(api)
    r = inviter.send(b"msg A1")
    assert r.status == 201 and isinstance(r.json["seq"], int)
    inviter.send(b"msg A2")
    r = joiner.receive()
    assert r.status == 200
    j = r.json
    assert [m["body"] for m in j["messages"]] == [b64(b"msg A1"), b64(b"msg A2")]
    seqs = [m["seq"] for m in j["messages"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 2
    assert j["state"] == "claimed"
    # the sender does not get its own messages back
    assert inviter.receive().json["messages"] == []
    joiner.send(b"msg B1")
    got = inviter.receive().json["messages"]
    assert [m["body"] for m in got] == [b64(b"msg B1")]
    # after= skips what was read
    assert joiner.receive(after=seqs[0]).json["messages"] == [j["messages"][1]]
    assert joiner.receive(after=seqs[1]).json["messages"] == []


def test_a_message_wakes_the_waiting_side(api):
    inviter, joiner = paired(api)
    out = {}

    def poll():
        out["r"] = joiner.receive(wait=30)
        out["t"] = time.monotonic()
    t = threading.Thread(target=poll, daemon=True)
    t.start()
    wait_until(lambda: api.metrics()[("chute_longpolls_waiting", frozenset())] >= 1,
               timeout=5, what="the receiver waiting")
    assert inviter.send(b"hello joiner").status == 201
    sent = time.monotonic()
    t.join(10)
    assert not t.is_alive()
    assert [m["body"] for m in out["r"].json["messages"]] == [b64(b"hello joiner")]
    assert out["t"] - sent < 0.5


def test_receive_times_out_with_no_messages(api):
    inviter, joiner = paired(api)
    t0 = time.monotonic()
    r = joiner.receive(wait=1)
    assert r.status == 200 and r.json["messages"] == []
    assert 0.9 <= time.monotonic() - t0 < 5


def test_close_ends_the_session_for_both_sides(api):
    inviter, joiner = paired(api)
    inviter.send(b"unread")
    assert inviter.close().status == 204
    for side in (inviter, joiner):
        r = side.send(b"after close")
        assert r.status == 410 and r.json["reason"] == "closed", r
        assert side.receive().status == 410


def test_close_wakes_a_waiting_receiver_with_gone(api):
    inviter, joiner = paired(api)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", joiner.receive(wait=30)), daemon=True)
    t.start()
    wait_until(lambda: api.metrics()[("chute_longpolls_waiting", frozenset())] >= 1,
               timeout=5, what="the receiver waiting")
    closed = time.monotonic()
    assert inviter.close().status == 204
    t.join(10)
    assert not t.is_alive()
    assert out["r"].status == 410
    assert time.monotonic() - closed < 2


def test_a_session_carries_at_most_16_messages(api):
    inviter, joiner = paired(api)
    for i in range(10):
        assert inviter.send(b"i%d" % i).status == 201
    for i in range(6):
        assert joiner.send(b"j%d" % i).status == 201
    r = inviter.send(b"one too many")
    assert r.status == 413, r
    assert joiner.send(b"one too many").status == 413


def test_a_message_body_is_at_most_4096_bytes(api):
    inviter, joiner = paired(api)
    assert inviter.send(b"\xff" * 4096).status == 201
    r = inviter.send(b"\xff" * 4097)
    assert r.status == 413, r
    assert "error" in r.json
    assert [m["body"] for m in joiner.receive().json["messages"]] == [b64(b"\xff" * 4096)]


@pytest.mark.parametrize("body", [{"body": "not base64!"}, {"body": 5}, {}, b"{"])
def test_a_malformed_message_is_refused(api, body):
    inviter, _ = paired(api)
    r = inviter.api.post(inviter.path + "/messages", body, content_type="application/json")
    assert r.status == 400, (body, r)


def test_twenty_concurrent_claims_of_one_nameplate_succeed_once(relay_factory):
    api = relay_factory("--pair-claims-per-min", "100").api()
    a = allocate(api)
    barrier = threading.Barrier(20)

    def go(_):
        barrier.wait(5)
        return claim(api, a["nameplate"])
    with ThreadPoolExecutor(20) as ex:
        results = list(ex.map(go, range(20)))
    statuses = sorted(r.status for r in results)
    assert statuses == [200] + [410] * 19, statuses
    assert all(r.json["reason"] == "claimed" for r in results if r.status == 410)


def test_private_relay_needs_access_token_to_allocate(relay_factory):
    relay = relay_factory(access_token="tok-pair")
    bare = relay.api(access_token=None)
    r = bare.post("/v1/pair", {})
    assert r.status == 401, r
    assert "error" in r.json
    a = allocate(relay.api())
    # claiming is authorised by the nameplate alone
    assert claim(bare, a["nameplate"]).status == 200


def test_metrics_count_active_pairings(api):
    def active():
        return api.metrics()[("chute_pairings_active", frozenset())]
    before = active()
    inviter, _ = paired(api)
    assert active() == before + 1
    inviter.close()
    assert active() == before


def test_an_expired_session_cannot_be_read(relay_factory):
    api = relay_factory("--pair-ttl", "1s", "--max-pair-ttl", "1s").api()
    inviter, joiner = paired(api)
    exp = inviter.state().json["expires"]
    wait_until(lambda: time.time() > exp + 0.2, timeout=5, what="expiry")
    assert joiner.receive().status == 410
    assert inviter.receive().status == 410


def test_concurrent_allocations_get_distinct_nameplates(relay_factory):
    api = relay_factory("--pair-allocs-per-min", "100").api()
    with ThreadPoolExecutor(16) as ex:
        plates = list(ex.map(lambda _: allocate(api)["nameplate"], range(32)))
    assert len(set(plates)) == 32


def test_expired_pairings_leave_the_active_gauge(relay_factory):
    api = relay_factory("--pair-ttl", "1s", "--max-pair-ttl", "1s").api()
    paired(api)
    allocate(api)
    assert api.metrics()[("chute_pairings_active", frozenset())] == 2
    wait_until(lambda: api.metrics()[("chute_pairings_active", frozenset())] == 0,
               timeout=10, interval=0.2, what="the sweeper")


@pytest.mark.parametrize("ttl", [0, 1.5, True])
def test_allocate_needs_a_positive_integer_ttl(api, ttl):
    r = api.post("/v1/pair", {"ttl": ttl})
    assert r.status == 400, (ttl, r)


def test_429_says_when_to_retry(relay_factory):
    api = relay_factory("--pair-allocs-per-min", "1").api()
    allocate(api)
    r = api.post("/v1/pair", {})
    assert r.status == 429
    assert r.json["retry_after"] == int(r.header("Retry-After")) >= 1


def test_a_claim_wakes_the_waiting_inviter(api):
    a = allocate(api)
    inviter = Side(api, a["session"], a["token"])
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", inviter.receive(wait=30)), daemon=True)
    t.start()
    wait_until(lambda: api.metrics()[("chute_longpolls_waiting", frozenset())] >= 1,
               timeout=5, what="the inviter waiting")
    t0 = time.monotonic()
    assert claim(api, a["nameplate"]).status == 200
    t.join(10)
    assert out["r"].status == 200
    assert out["r"].json == {"messages": [], "state": "claimed"}
    assert time.monotonic() - t0 < 1


def test_expired_session_state_is_gone_with_reason_expired(relay_factory):
    api = relay_factory("--pair-ttl", "1s", "--max-pair-ttl", "1s").api()
    inviter, joiner = paired(api)
    exp = inviter.state().json["expires"]
    wait_until(lambda: time.time() > exp + 0.2, timeout=5, what="expiry")
    r = inviter.state()
    assert r.status == 410 and r.json["reason"] == "expired", r
    r = joiner.receive()
    assert r.status == 410 and r.json["reason"] == "expired", r


def test_a_session_closed_after_its_time_ran_out_reads_expired(relay_factory):
    """A run that fails on the expiry closes the session; the other side,
    reading after that, learns why it ended: its time ran out."""
    api = relay_factory("--pair-ttl", "1s", "--max-pair-ttl", "1s").api()
    inviter, joiner = paired(api)
    exp = inviter.state().json["expires"]
    wait_until(lambda: time.time() > exp + 0.2, timeout=5, what="expiry")
    assert inviter.close().status == 204
    r = joiner.receive()
    assert r.status == 410 and r.json["reason"] == "expired", r


def test_messages_of_both_sides_share_one_counter_from_1(api):
    inviter, joiner = paired(api)
    seqs = [inviter.send(b"a").json["seq"], joiner.send(b"b").json["seq"],
            inviter.send(b"c").json["seq"]]
    assert seqs[0] == 1 and seqs == sorted(seqs) and len(set(seqs)) == 3


def test_closed_session_receive_says_closed_and_close_repeats(api):
    inviter, joiner = paired(api)
    assert inviter.close().status == 204
    assert inviter.close().status == 204
    r = joiner.receive()
    assert r.status == 410 and r.json["reason"] == "closed", r


def test_nameplates_have_two_to_six_digits(relay_factory):
    """§6.7: 2 digits while those are free, then longer. 60 allocations
    catch a 1-digit nameplate drawn 1 time in 11 with near certainty."""
    api = relay_factory("--pair-allocs-per-min", "100").api()
    plates = [allocate(api)["nameplate"] for _ in range(60)]
    bad = [p for p in plates if not re.fullmatch(r"[1-9][0-9]{1,5}", p)]
    assert not bad, f"nameplates outside 2-6 digits: {bad}"


def test_a_sides_own_message_does_not_end_its_wait(api):
    inviter, joiner = paired(api)
    out = {}

    def poll():
        out["r"] = inviter.receive(wait=30)
    t = threading.Thread(target=poll, daemon=True)
    t.start()
    wait_until(lambda: api.metrics()[("chute_longpolls_waiting", frozenset())] >= 1,
               timeout=5, what="the inviter waiting")
    assert inviter.send(b"my own").status == 201
    t.join(0.3)  # a window for a wrong wake-up to show
    assert t.is_alive(), f"woken by its own message: {out.get('r')}"
    assert joiner.send(b"from joiner").status == 201
    t.join(10)
    assert [m["body"] for m in out["r"].json["messages"]] == [b64(b"from joiner")]
