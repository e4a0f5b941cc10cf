"""PROTOCOL §6.6: the item list long-polls; a commit wakes waiters at once."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import metric, new_item_id, wait_until

WAKE_BOUND = 0.050  # seconds from a commit to the waiting lister's answer


class Poller(threading.Thread):
    """One long-poll in a thread; records when its answer arrived."""

    def __init__(self, inbox, **kw):
        super().__init__(daemon=True)
        self.inbox, self.kw = inbox, kw
        self.response = self.done_at = self.error = None

    def run(self):
        try:
            self.response = self.inbox.list(**self.kw)
        except Exception as e:  # surfaced by the test
            self.error = e
        self.done_at = time.monotonic()

    def result(self, timeout=10):
        self.join(timeout)
        assert not self.is_alive(), "long-poll did not answer"
        assert self.error is None, self.error
        return self.response


def waiting(api, n):
    """Wait until the relay reports n long-polls parked."""
    wait_until(lambda: (metric(api.metrics(), "chute_longpolls_waiting") or 0) >= n,
               timeout=5, what=f"{n} long-poll(s) waiting")


def test_commit_wakes_long_poll_within_50ms(api, inbox, sender):
    item = new_item_id()
    sender.create(item, 4)
    sender.append(item, 0, b"abc")
    p = Poller(inbox, wait=30)
    p.start()
    waiting(api, 1)
    r = sender.append(item, 3, b"d")  # the commit
    committed_at = time.monotonic()
    assert r.status == 204
    res = p.result()
    assert res.status == 200
    assert [i["item"] for i in res.json["items"]] == [item]
    latency = max(0.0, p.done_at - committed_at)
    assert latency < WAKE_BOUND, f"long-poll woke {latency * 1000:.1f} ms after the commit"


def test_zero_size_create_wakes_long_poll_within_50ms(api, inbox, sender):
    p = Poller(inbox, wait=30)
    p.start()
    waiting(api, 1)
    item = new_item_id()
    assert sender.create(item, 0).status == 201
    committed_at = time.monotonic()
    res = p.result()
    assert [i["item"] for i in res.json["items"]] == [item]
    latency = max(0.0, p.done_at - committed_at)
    assert latency < WAKE_BOUND, f"long-poll woke {latency * 1000:.1f} ms after the commit"


def test_long_poll_times_out_with_an_empty_list(inbox, sender):
    item = new_item_id()
    sender.create(item, 5)  # uploading items do not wake a plain lister
    t0 = time.monotonic()
    r = inbox.list(after=0, wait=1)
    elapsed = time.monotonic() - t0
    assert r.status == 200
    assert r.json == {"items": [], "cursor": 0}
    assert 0.9 <= elapsed < 5, elapsed


def test_long_poll_keeps_the_cursor_on_timeout(inbox, sender):
    sender.upload(b"x")
    cursor = inbox.list().json["cursor"]
    r = inbox.list(after=cursor, wait=1)
    assert r.json == {"items": [], "cursor": cursor}


def test_long_poll_with_items_waiting_answers_at_once(inbox, sender):
    item = sender.upload(b"ready")
    t0 = time.monotonic()
    r = inbox.list(wait=30)
    assert time.monotonic() - t0 < 2
    assert [i["item"] for i in r.json["items"]] == [item]


def test_wait_is_capped_at_max_wait(relay_factory):
    relay = relay_factory("--max-wait", "1")
    inbox = relay.api().create_inbox()
    t0 = time.monotonic()
    r = inbox.list(wait=30)
    elapsed = time.monotonic() - t0
    assert r.status == 200 and r.json["items"] == []
    assert elapsed < 4, f"wait=30 was not capped at --max-wait 1 ({elapsed:.1f}s)"


def test_every_waiting_lister_wakes(api, inbox, sender):
    pollers = [Poller(inbox, wait=30) for _ in range(8)]
    for p in pollers:
        p.start()
    waiting(api, 8)
    item = sender.upload(b"for all")
    for p in pollers:
        assert [i["item"] for i in p.result().json["items"]] == [item]


def test_a_commit_wakes_only_its_own_inbox(api, inbox, sender):
    other = api.create_inbox()
    p = Poller(other, wait=2)
    p.start()
    waiting(api, 1)
    sender.upload(b"not for other")
    assert p.result().json["items"] == []


def test_waiting_listers_do_not_hold_up_other_requests(api, inbox, sender):
    boxes = [api.create_inbox() for _ in range(16)]
    pollers = [Poller(b, wait=30) for b in boxes]
    for p in pollers:
        p.start()
    waiting(api, 16)
    t0 = time.monotonic()
    for _ in range(10):
        assert api.health().status == 200
    item = sender.upload(b"still served")
    assert inbox.listed_ids() == [item]
    assert time.monotonic() - t0 < 2
    # release the pollers
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda b: b.add_sender().upload(b"bye"), boxes))
    for p in pollers:
        assert len(p.result().json["items"]) == 1


def test_partial_lists_uploading_items_with_their_durable_offset(inbox, sender):
    up = new_item_id()
    sender.create(up, 10, b"m")
    sender.append(up, 0, b"abcd")
    done = sender.upload(b"xyz")
    items = {i["item"]: i for i in inbox.listed(partial=True)}
    assert items[up]["complete"] is False and items[up]["offset"] == 4
    assert items[up]["size"] == 10
    assert items[done]["complete"] is True
    assert [i["item"] for i in inbox.listed()] == [done]


def test_partial_long_poll_wakes_on_creation(api, inbox, sender):
    p = Poller(inbox, wait=30, partial=True)
    p.start()
    waiting(api, 1)
    item = new_item_id()
    assert sender.create(item, 100).status == 201
    created_at = time.monotonic()
    items = p.result().json["items"]
    assert [(i["item"], i["complete"]) for i in items] == [(item, False)]
    latency = max(0.0, p.done_at - created_at)
    assert latency < WAKE_BOUND, f"partial long-poll woke {latency * 1000:.1f} ms after the create"


def test_acked_items_drop_out_of_the_list(inbox, sender):
    a, b = sender.upload(b"a"), sender.upload(b"b")
    inbox.ack(a)
    assert inbox.listed_ids() == [b]
