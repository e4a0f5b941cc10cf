"""PROTOCOL §6.5–6.6: items of deferred length. A sender creates an item
before it knows its size or meta, appends while the file grows, and
declares size and meta at the end."""

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import (NOT_FOUND, SLOW, Inbox, Sender, b64, downgrade_schema, faults_env,
                      metric, new_item_id, patch_head, read_until_close, status_line,
                      wait_until)
from test_relay_longpoll import Poller, waiting


def create_deferred(sender, item, **kw):
    return sender.api.put(sender.inbox.item_path(item), {"deferred": True}, **kw)


def declare(sender, item, size, meta=b"meta"):
    return sender.create(item, size, meta)


def head(api, inbox, item):
    r = api.head(inbox.item_path(item))
    assert r.status == 200, r
    return r


def deferred_item(sender, data=b""):
    """A deferred item with data appended; returns its id."""
    item = new_item_id()
    assert create_deferred(sender, item).status == 201
    if data:
        r = sender.append(item, 0, data)
        assert r.status == 204, r
    return item


def listed_by_id(inbox, **kw):
    return {i["item"]: i for i in inbox.listed(**kw)}


# --- create ----------------------------------------------------------------------

def test_deferred_create_starts_uploading_at_offset_zero(inbox, sender):
    item = new_item_id()
    r = inbox.owner.put(inbox.item_path(item), {"deferred": True})
    assert (r.status, r.json) == (404, NOT_FOUND)  # only a send token creates
    r = create_deferred(sender, item)
    assert r.status == 201, r
    assert r.json == {"item": item, "offset": 0, "state": "uploading", "deferred": True}


def test_repeating_a_deferred_create_reports_the_durable_offset(sender):
    item = deferred_item(sender, b"abc")
    r = create_deferred(sender, item)
    assert r.status == 200, r
    assert r.json == {"item": item, "offset": 3, "state": "uploading", "deferred": True}


def test_deferred_false_is_an_ordinary_create(sender):
    item = new_item_id()
    r = sender.api.put(sender.inbox.item_path(item),
                       {"deferred": False, "size": 5, "meta": b64(b"m")})
    assert r.status == 201, r
    assert r.json == {"item": item, "size": 5, "offset": 0, "state": "uploading"}
    r = create_deferred(sender, item)
    assert (r.status, r.json["state"]) == (409, "uploading"), r  # declared, not deferred


@pytest.mark.parametrize("body", [
    {"deferred": True, "size": 1},
    {"deferred": True, "meta": "bWV0YQ=="},
    {"deferred": True, "size": 1, "meta": "bWV0YQ=="},
    {"deferred": "yes"},
    {"deferred": 1},
    {"deferred": None},
    {"deferred": False},
])
def test_malformed_deferred_creates_are_refused(sender, body):
    item = new_item_id()
    r = sender.api.put(sender.inbox.item_path(item), body)
    assert r.status == 400, (body, r)
    assert "error" in r.json
    assert sender.status(item).status == 404
    assert create_deferred(sender, item).status == 201  # the id was left free


def test_deferred_create_over_a_declared_item_conflicts(sender):
    item = new_item_id()
    assert sender.create(item, 10).status == 201
    r = create_deferred(sender, item)
    assert r.status == 409, r
    assert r.json["state"] == "uploading" and "error" in r.json
    done = sender.upload(b"whole")
    r = create_deferred(sender, done)
    assert (r.status, r.json["state"]) == (409, "pending"), r


def test_deferred_create_over_another_senders_item_or_a_tombstone_conflicts(inbox):
    a, b = inbox.add_sender(), inbox.add_sender()
    item = deferred_item(a, b"ab")
    r = create_deferred(b, item)
    assert (r.status, r.json["state"]) == (409, "uploading"), r
    assert b.create(item, 2).status == 409  # nor may another sender declare it
    assert a.cancel(item).status == 204
    r = create_deferred(a, item)
    assert (r.status, r.json["state"]) == (409, "cancelled"), r
    acked = deferred_item(a)
    assert inbox.ack(acked).status == 204
    r = create_deferred(a, acked)
    assert (r.status, r.json["state"]) == (409, "delivered"), r


def test_item_quota_applies_to_a_deferred_create(relay_factory):
    inbox = relay_factory("--inbox-quota-items", "2").api().create_inbox()
    sender = inbox.add_sender()
    first = deferred_item(sender)
    sender.upload(b"x")
    r = create_deferred(sender, new_item_id())
    assert r.status == 507, r
    assert create_deferred(sender, first).status == 200  # a retry is not a new item


# --- append ----------------------------------------------------------------------

def test_appends_to_a_deferred_item_stop_only_at_max_item_size(relay_factory):
    inbox = relay_factory("--max-item-size", "1K").api().create_inbox()
    sender = inbox.add_sender()
    item = deferred_item(sender, b"a" * 600)
    r = sender.append(item, 600, b"b" * 425)
    assert r.status == 413, r
    assert "error" in r.json
    r = sender.append(item, 600, b"b" * 424)
    assert r.status == 204, r
    assert r.header("Upload-Offset") == "1024"
    r = sender.append(item, 1024, b"c")
    assert r.status == 413, r
    assert sender.status(item).json == {"item": item, "state": "uploading", "offset": 1024,
                                        "deferred": True}
    assert inbox.listed() == []


def test_append_at_a_wrong_offset_of_a_deferred_item_conflicts(sender):
    item = deferred_item(sender, b"abc")
    r = sender.append(item, 1, b"x")
    assert r.status == 409, r
    assert r.json["offset"] == 3 and r.json["state"] == "uploading"


def test_long_appends_to_a_deferred_item_commit_durable_steps(relay, inbox, sender):
    """The 16 MiB checkpoints of a long PATCH work on a deferred item too."""
    item = deferred_item(sender)
    size = 40 * 1024 * 1024
    chunk = os.urandom(1024 * 1024)
    s = relay.api().raw_socket()
    s.sendall(patch_head(inbox.item_path(item), sender.token, 0, size, "Connection: close\r\n"))
    for _ in range(20):
        s.sendall(chunk)
    seen = wait_until(lambda: int(head(sender.api, inbox, item).header("Upload-Offset")) or None,
                      timeout=20, interval=0.05, what="a checkpoint during the upload")
    assert seen >= 16 * 1024 * 1024
    for _ in range(20):
        s.sendall(chunk)
    reply = read_until_close(s, timeout=10)
    s.close()
    assert status_line(reply) == 204, reply[:300]
    assert sender.status(item).json["offset"] == size
    assert declare(sender, item, size).json["state"] == "pending"
    assert inbox.download(item).body == chunk * 40


def test_a_chunked_patch_is_refused_and_writes_nothing(relay_factory):
    """A chunked body is read past its Content-Length: past what the quota
    was checked against. It is refused, and not a byte of it is kept."""
    api = relay_factory("--inbox-quota-bytes", "1M").api()
    inbox = api.create_inbox()
    sender = inbox.add_sender()
    item = deferred_item(sender)
    piece = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(32)) + b"0\r\n\r\n"
    reply = api.raw(patch_head(inbox.item_path(item), sender.token, 0, 1,
                               "Transfer-Encoding: chunked\r\nConnection: close\r\n") + body,
                    timeout=10)
    assert status_line(reply) == 400, reply[:300]
    assert b"Transfer-Encoding" in reply
    assert head(sender.api, inbox, item).header("Upload-Offset") == "0"
    assert inbox.info()["bytes"] == 0


def written_bytes(pid):
    """What the process has passed to write(2) and its kin so far."""
    with open(f"/proc/{pid}/io") as f:
        return int(next(l for l in f if l.startswith("wchar:")).split()[1])


def test_a_patch_stops_writing_once_its_item_is_cancelled(relay, inbox, sender):
    """Cancelled mid-append, an item no longer counts against any quota: the
    rest of the append is read but no longer written (from its next
    checkpoint, 16 MiB, on) and is answered 409."""
    item = deferred_item(sender)
    mib = 1024 * 1024
    chunk = os.urandom(mib)
    s = relay.api().raw_socket(timeout=20)
    s.sendall(patch_head(inbox.item_path(item), sender.token, 0, 76 * mib,
                         "Connection: close\r\n"))
    for _ in range(20):
        s.sendall(chunk)
    wait_until(lambda: int(head(sender.api, inbox, item).header("Upload-Offset")) or None,
               timeout=20, interval=0.05, what="a checkpoint during the upload")
    assert sender.cancel(item).status == 204
    for _ in range(16):             # past the next checkpoint, which finds it cancelled
        s.sendall(chunk)
    seen = []

    def settled():
        seen.append(written_bytes(relay.pid))
        return len(seen) >= 6 and len(set(seen[-6:])) == 1
    wait_until(settled, timeout=20, interval=0.2, what="the relay to write what it was sent")
    for _ in range(40):
        s.sendall(chunk)
    reply = read_until_close(s, timeout=10)
    s.close()
    assert status_line(reply) == 409, reply[:300]
    assert sender.status(item).json["state"] == "cancelled"
    assert written_bytes(relay.pid) - seen[-1] < 4 * mib


# --- HEAD, status, listing, download ---------------------------------------------

def test_head_of_a_deferred_item_defers_the_length(inbox, sender):
    item = deferred_item(sender, b"abcd")
    for api in (sender.api, inbox.owner):
        r = head(api, inbox, item)
        assert r.header("Upload-Offset") == "4"
        assert r.header("Upload-Defer-Length") == "1"
        assert r.header("Upload-Length") is None


def test_status_of_a_deferred_item_has_no_size(inbox, sender):
    item = deferred_item(sender, b"abc")
    want = {"item": item, "state": "uploading", "offset": 3, "deferred": True}
    assert sender.status(item).json == want
    assert inbox.status(item).json == want


def test_partial_listing_shows_a_deferred_item_without_size_or_meta(inbox, sender):
    item = deferred_item(sender, b"abc")
    assert inbox.listed() == []
    [e] = inbox.listed(partial=True)
    assert set(e) == {"item", "seq", "created", "sender", "complete", "offset", "deferred"}, e
    assert (e["item"], e["complete"], e["offset"], e["deferred"], e["sender"]) == (
        item, False, 3, True, sender.id)


def test_partial_long_poll_wakes_on_a_deferred_create(api, inbox, sender):
    p = Poller(inbox, wait=30, partial=True)
    p.start()
    waiting(api, 1)
    t0 = time.monotonic()
    item = deferred_item(sender)
    res = p.result()
    assert res.status == 200
    assert [(i["item"], i["deferred"]) for i in res.json["items"]] == [(item, True)]
    assert p.done_at - t0 < 2


def test_owner_downloads_the_durable_prefix_of_a_growing_deferred_item(inbox, sender):
    item = deferred_item(sender)
    r = inbox.download(item)
    assert (r.status, r.body) == (200, b"")
    assert sender.append(item, 0, b"hello ").status == 204
    assert inbox.download(item).body == b"hello "
    assert sender.append(item, 6, b"world").status == 204
    r = inbox.download(item, "bytes=6-")
    assert (r.status, r.body) == (206, b"world")
    assert r.header("Content-Range") == "bytes 6-10/11"
    r = inbox.download(item, "bytes=11-")
    assert r.status == 416, r
    assert r.header("Content-Range") == "bytes */11"
    assert inbox.download(item, api=sender.api).status == 404


# --- declare ---------------------------------------------------------------------

def test_declare_at_the_durable_offset_commits_at_once(api, inbox, sender):
    data = os.urandom(100 * 1024)
    item = deferred_item(sender, data[:60 * 1024])
    assert sender.append(item, 60 * 1024, data[60 * 1024:]).status == 204
    p = Poller(inbox, wait=30)
    p.start()
    waiting(api, 1)
    r = declare(sender, item, len(data), b"sealed meta")
    assert r.status == 200, r
    assert r.json == {"item": item, "size": len(data), "offset": len(data), "state": "pending"}
    [e] = p.result().json["items"]
    assert (e["item"], e["size"], e["meta"]) == (item, len(data), b64(b"sealed meta"))
    assert inbox.download(item).body == data
    assert sender.status(item).json == {"item": item, "state": "pending", "size": len(data),
                                        "offset": len(data)}
    r = head(sender.api, inbox, item)
    assert (r.header("Upload-Length"), r.header("Upload-Defer-Length")) == (str(len(data)), None)


def test_declare_of_an_empty_deferred_item_commits_an_empty_body(inbox, sender):
    item = deferred_item(sender)
    r = declare(sender, item, 0, b"m")
    assert (r.status, r.json["state"]) == (200, "pending"), r
    assert inbox.listed_ids() == [item]
    assert (inbox.download(item).status, inbox.download(item).body) == (200, b"")


def test_declare_before_the_end_then_appends_commit_at_the_size(inbox, sender):
    item = deferred_item(sender, b"abc")
    r = declare(sender, item, 10, b"m")
    assert r.status == 200, r
    assert r.json == {"item": item, "size": 10, "offset": 3, "state": "uploading"}
    assert inbox.listed() == []
    assert sender.offset(item) == (3, 10)
    assert head(sender.api, inbox, item).header("Upload-Defer-Length") is None
    assert sender.append(item, 3, b"defghijk").status == 413  # past the declared size now
    assert sender.append(item, 3, b"defghij").status == 204
    [e] = inbox.listed()
    assert (e["item"], e["size"], e["meta"]) == (item, 10, b64(b"m"))
    assert inbox.download(item).body == b"abcdefghij"


def test_declare_below_the_durable_offset_conflicts_and_tells_it(inbox, sender):
    item = deferred_item(sender, b"abcde")
    r = declare(sender, item, 4)
    assert r.status == 409, r
    assert r.json["state"] == "uploading" and r.json["offset"] == 5 and "error" in r.json
    assert sender.status(item).json["deferred"] is True
    assert declare(sender, item, 5).status == 200


def test_a_declared_item_is_an_ordinary_item(sender):
    item = deferred_item(sender, b"ab")
    assert declare(sender, item, 4, b"m").status == 200
    r = declare(sender, item, 4, b"m")
    assert r.status == 200, r  # the retried declare is a no-op
    assert r.json == {"item": item, "size": 4, "offset": 2, "state": "uploading"}
    for size, meta in ((5, b"m"), (4, b"other")):
        r = declare(sender, item, size, meta)
        assert (r.status, r.json["state"]) == (409, "uploading"), r
    r = create_deferred(sender, item)
    assert (r.status, r.json["state"]) == (409, "uploading"), r
    assert sender.status(item).json == {"item": item, "state": "uploading", "size": 4,
                                        "offset": 2}


def test_declare_of_a_committed_item_with_another_size_conflicts(sender):
    item = deferred_item(sender, b"abc")
    assert declare(sender, item, 3).json["state"] == "pending"
    r = declare(sender, item, 4)
    assert (r.status, r.json["state"]) == (409, "pending"), r
    assert declare(sender, item, 3).status == 200


def test_declare_of_a_tombstone_conflicts(relay_factory):
    inbox = relay_factory("--item-ttl", "1s").api().create_inbox()
    sender = inbox.add_sender()
    cancelled = deferred_item(sender, b"ab")
    assert sender.cancel(cancelled).status == 204
    r = declare(sender, cancelled, 2)
    assert (r.status, r.json["state"]) == (409, "cancelled"), r
    expired = deferred_item(sender, b"ab")
    wait_until(lambda: sender.status(expired).json["state"] == "expired", timeout=10,
               interval=0.1, what="the deferred item to expire")
    r = declare(sender, expired, 2)
    assert (r.status, r.json["state"]) == (409, "expired"), r


def test_declare_limits_are_those_of_a_create(relay_factory):
    inbox = relay_factory("--max-item-size", "1K", "--max-meta", "8").api().create_inbox()
    sender = inbox.add_sender()
    item = deferred_item(sender, b"abc")
    assert declare(sender, item, 1025).status == 413
    assert declare(sender, item, 3, b"m" * 9).status == 413
    assert sender.status(item).json["deferred"] is True
    assert declare(sender, item, 1024, b"m" * 8).status == 200


def test_declare_during_an_append_conflicts(api, inbox, sender):
    item = deferred_item(sender, b"ab")
    s = api.raw_socket()
    s.sendall((f"PATCH {inbox.item_path(item)} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {sender.token}\r\nUpload-Offset: 2\r\n"
               "Content-Type: application/offset+octet-stream\r\n"
               "Content-Length: 4\r\nConnection: close\r\n\r\n").encode() + b"cd")
    wait_until(lambda: metric(api.metrics(), "chute_uploads_in_flight") == 1, timeout=5,
               what="the upload in flight")
    r = declare(sender, item, 6)
    assert r.status == 409, r
    assert r.json["state"] == "uploading" and "offset" in r.json
    s.sendall(b"ef")
    reply = read_until_close(s, timeout=5)
    s.close()
    assert status_line(reply) == 204, reply[:300]
    r = declare(sender, item, 6)
    assert (r.status, r.json["state"]) == (200, "pending"), r
    assert inbox.download(item).body == b"abcdef"


# --- quota -------------------------------------------------------------------------

def test_byte_quota_counts_a_deferred_items_offset_then_its_size(relay_factory):
    relay = relay_factory("--inbox-quota-bytes", "1000")
    inbox = relay.api().create_inbox()
    sender = inbox.add_sender()
    item = deferred_item(sender, b"a" * 300)
    assert sender.create(new_item_id(), 500).status == 201  # 800 counted
    assert inbox.info()["bytes"] == 800
    r = sender.append(item, 300, b"b" * 201)
    assert r.status == 507, r
    assert "error" in r.json
    # refused on its headers: a big declared body is answered before it is sent
    raw = relay.api().raw((f"PATCH {inbox.item_path(item)} HTTP/1.1\r\nHost: x\r\n"
                           f"Authorization: Bearer {sender.token}\r\nUpload-Offset: 300\r\n"
                           "Content-Type: application/offset+octet-stream\r\n"
                           f"Content-Length: {100 * 2**20}\r\n\r\n").encode(), timeout=5)
    assert status_line(raw) == 507, raw[:300]
    assert sender.append(item, 300, b"b" * 200).status == 204
    assert inbox.info()["bytes"] == 1000
    assert sender.create(new_item_id(), 1).status == 507
    r = declare(sender, item, 501)  # 500 + 501 > 1000
    assert r.status == 507, r
    assert sender.status(item).json["deferred"] is True
    r = declare(sender, item, 500)
    assert (r.status, r.json["state"]) == (200, "pending"), r
    assert inbox.info()["bytes"] == 1000


def test_deferred_appends_in_progress_hold_their_share_of_the_byte_quota(relay_factory):
    # Each checked alone against the durable bytes, two appends in flight
    # together could take the inbox past its quota.
    relay = relay_factory("--inbox-quota-bytes", "1000000")
    inbox = relay.api().create_inbox()
    sender = inbox.add_sender()
    a, b = deferred_item(sender), deferred_item(sender)
    body = os.urandom(700_000)
    s = relay.api().raw_socket()
    s.sendall((f"PATCH {inbox.item_path(a)} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {sender.token}\r\nUpload-Offset: 0\r\n"
               "Content-Type: application/offset+octet-stream\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode())
    s.sendall(body[:100_000])
    api = relay.api()
    wait_until(lambda: metric(api.metrics(), "chute_uploads_in_flight") == 1, timeout=5,
               what="the first append in progress")
    # a's 700,000 bytes are spoken for while it runs
    r = sender.append(b, 0, b"x" * 700_000)
    assert r.status == 507, r
    assert sender.create(new_item_id(), 400_000).status == 507
    s.sendall(body[100_000:])
    reply = read_until_close(s, timeout=10)
    s.close()
    assert status_line(reply) == 204, reply[:300]
    assert inbox.info()["bytes"] == 700_000
    assert sender.append(b, 0, b"x" * 300_000).status == 204      # exactly what is left
    assert sender.append(b, 300_000, b"x").status == 507
    assert inbox.info()["bytes"] == 1_000_000


# The statements after which the fault shim holds a request (tests/shim/
# faults.c, CHUTE_FAULT_HOLD_AFTER_SQL; server/store_items.c): the inbox's
# usage as an append's quota check reads it, and a send token's lookup.
INBOX_USAGE_SQL = "(SELECT count(*) FROM senders WHERE inbox = ?1)"
SENDER_AUTH_SQL = "FROM senders WHERE inbox = ?1 AND token_hash = ?2"


def held_after_sql(gate, sql, skip=0):
    return faults_env(hold_after_sql=sql, hold_after_sql_gate=str(gate),
                      hold_after_sql_skip=skip)


@pytest.mark.parametrize("second", ["an append", "a create"])
def test_an_append_that_read_the_usage_before_another_ended_counts_it(
        relay_factory, tmp_path, second):
    """An append's quota check read the inbox's usage from the store, then
    the reservations in progress: one that ended in between (its bytes
    committed, its reservation gone) was counted by neither, and the two
    together went past the quota. The first append is held after its read
    while the second append (or a create) runs."""
    gate = tmp_path / "gate"
    relay = relay_factory("--inbox-quota-bytes", "1000000",
                          env=held_after_sql(gate, INBOX_USAGE_SQL))
    inbox = relay.api().create_inbox()
    sender = inbox.add_sender()
    a, b = deferred_item(sender), deferred_item(sender)
    with ThreadPoolExecutor(1) as ex:
        first = ex.submit(sender.append, a, 0, b"a" * 600_000, timeout=30)
        wait_until(lambda: Path(f"{gate}.held").exists() or first.done(),
                   what="the first append after its read of the usage")
        assert not first.done(), first.result()
        if second == "an append":
            r = sender.append(b, 0, b"b" * 600_000, timeout=30)
        else:
            r = sender.create(new_item_id(), 600_000, timeout=30)
        gate.touch()
        first = first.result(timeout=30)
    assert first.status == 204, first
    assert r.status == 507, r
    assert inbox.info()["bytes"] == 600_000


@pytest.mark.parametrize("first", ["a create", "a declare"])
def test_a_create_that_read_the_reservations_before_an_append_made_one_counts_it(
        relay_factory, tmp_path, first):
    """A create (or a declare: the same PUT on a deferred item) read the
    reservations of the appends in progress, then the store's usage: an
    append that checked and reserved in between counted the usage without
    the new size, the create counted neither, and the two together went
    past the quota. The PUT is held between its two reads (after its
    token's lookup, at the second lock it takes) while the append begins."""
    gate = tmp_path / "gate"
    relay = relay_factory("--inbox-quota-bytes", "1000000")
    box = relay.api().create_inbox()
    snd = box.add_sender()
    b = deferred_item(snd)
    item = deferred_item(snd) if first == "a declare" else new_item_id()
    relay.stop()
    # after the restart the PUT is the first request with a send token
    relay.env.update(held_after_sql(gate, SENDER_AUTH_SQL, skip=1))
    relay.start()
    api = relay.api()
    inbox = Inbox(api, box.id, box.owner_token)
    sender = Sender(inbox, snd.id, snd.token)
    body = b"b" * 600_000
    with ThreadPoolExecutor(1) as ex:
        put = ex.submit(sender.create, item, 600_000, timeout=30)
        wait_until(lambda: Path(f"{gate}.held").exists() or put.done(),
                   what="the PUT between its two reads")
        assert not put.done(), put.result()
        s = api.raw_socket(timeout=30)
        s.sendall(patch_head(inbox.item_path(b), sender.token, 0, len(body),
                             "Connection: close\r\n") + body[:100_000])
        # The append reserves and makes its body, unless the PUT's check
        # holds it off (then it waits for the PUT, and this wait ends at
        # its bound). Not asked over HTTP: a worker thread waiting with
        # the append could be the one to take the question.
        part = relay.data_dir / "items" / f"{box.id}.{b}.part"
        deadline = time.monotonic() + 1.0 * SLOW
        while time.monotonic() < deadline and not part.exists():
            time.sleep(0.02)
        gate.touch()
        put = put.result(timeout=30)
        s.sendall(body[100_000:])
        reply = read_until_close(s, timeout=10)
        s.close()
    appended = status_line(reply)
    ok = 200 if first == "a declare" else 201
    assert (put.status, appended) in ((ok, 507), (507, 204)), (put, reply[:300])
    assert inbox.info()["bytes"] == 600_000


# --- retiring --------------------------------------------------------------------

def test_cancel_of_a_deferred_item_deletes_its_body(relay, inbox, sender):
    marker = b"deferred-cancel-" + new_item_id().encode()
    item = deferred_item(sender, marker * 50)
    assert sender.cancel(item).status == 204
    assert sender.status(item).json["state"] == "cancelled"
    assert inbox.download(item).status == 404
    assert inbox.listed(partial=True) == []
    assert sender.append(item, len(marker) * 50, b"x").status == 409
    assert not [p for p in relay.data_files() if marker in p.read_bytes()]


@pytest.mark.parametrize("query,state", [("", "delivered"), ("?reject=1", "rejected")])
def test_owner_acks_or_rejects_a_deferred_item(relay, inbox, sender, query, state):
    marker = b"deferred-ack-" + new_item_id().encode()
    item = deferred_item(sender, marker * 50)
    assert inbox.owner.delete(inbox.item_path(item) + query).status == 204
    assert sender.status(item).json["state"] == state
    assert declare(sender, item, len(marker) * 50).status == 409
    assert not [p for p in relay.data_files() if marker in p.read_bytes()]


def test_metrics_count_a_deferred_item_as_uploading(api, inbox, sender):
    item = deferred_item(sender, b"x" * 7)
    m = api.metrics()
    assert (metric(m, "chute_items_stored"), metric(m, "chute_bytes_stored")) == (1, 7)
    assert inbox.info()["items"] == 1
    inbox.ack(item)
    assert metric(api.metrics(), "chute_items_stored") == 0


# --- restarts --------------------------------------------------------------------

def test_a_killed_relay_keeps_deferred_items_and_their_offsets(relay_factory):
    relay = relay_factory()
    box = relay.api().create_inbox()
    snd = box.add_sender()
    empty = deferred_item(snd)
    item = deferred_item(snd, b"first part ")
    relay.kill(signal.SIGKILL)
    relay.start()
    inbox = Inbox(relay.api(), box.id, box.owner_token)
    sender = Sender(inbox, snd.id, snd.token)
    assert sender.status(item).json == {"item": item, "state": "uploading", "offset": 11,
                                        "deferred": True}
    # an empty deferred item is not mistaken for a whole empty one
    assert sender.status(empty).json == {"item": empty, "state": "uploading", "offset": 0,
                                         "deferred": True}
    assert inbox.listed() == []
    r = create_deferred(sender, item)
    assert (r.status, r.json["offset"]) == (200, 11), r
    assert sender.append(item, 11, b"second part").status == 204
    assert declare(sender, item, 22, b"m").json["state"] == "pending"
    assert inbox.download(item).body == b"first part second part"


def test_a_relay_database_from_before_deferred_items_opens_and_works(relay_factory):
    relay = relay_factory()
    box = relay.api().create_inbox()
    snd = box.add_sender()
    kept = snd.upload(b"kept", meta=b"m1")
    half = new_item_id()
    snd.create(half, 10)
    snd.append(half, 0, b"half")
    assert relay.stop() == 0
    downgrade_schema(relay, 1)   # the schema as it was: no deferred column
    relay.start()
    inbox = Inbox(relay.api(), box.id, box.owner_token)
    sender = Sender(inbox, snd.id, snd.token)
    assert inbox.listed_ids() == [kept]
    assert inbox.download(kept).body == b"kept"
    assert sender.offset(half) == (4, 10)
    assert sender.append(half, 4, b"-done!!").status == 413
    assert sender.append(half, 4, b"-done!").status == 204
    item = deferred_item(sender, b"new")
    assert declare(sender, item, 3).json["state"] == "pending"
    assert set(inbox.listed_ids()) == {kept, half, item}
