"""DESIGN §5: acknowledged means durable; a relay killed at any instant
restarts consistent; SIGTERM is a clean exit."""

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import Inbox, Sender, b64, new_item_id, wait_until

ROUNDS = 5
SEED = 20261122


def reattach(relay, inbox_id, owner_token, sender_id, send_token):
    """Inbox and Sender objects for the relay's current URL (it changes on restart)."""
    inbox = Inbox(relay.api(), inbox_id, owner_token)
    return inbox, Sender(inbox, sender_id, send_token)


class Uploader(threading.Thread):
    """Uploads items until the relay goes away (or a bound is hit), recording
    what was sent and which items were acknowledged by a final 204."""

    def __init__(self, sender, rng, contents, acked, max_items=300, max_seconds=10):
        super().__init__(daemon=True)
        self.sender, self.rng = sender, rng
        self.contents, self.acked = contents, acked
        self.max_items, self.max_seconds = max_items, max_seconds
        self.acked_this_round = 0
        self.error = None

    def run(self):
        deadline = time.monotonic() + self.max_seconds
        s = self.sender
        try:
            for _ in range(self.max_items):
                if time.monotonic() > deadline:
                    return
                item = new_item_id()
                data = self.rng.randbytes(self.rng.randint(1, 300 * 1024))
                self.contents[item] = data
                r = s.create(item, len(data))
                if r.status != 201:
                    self.error = f"create: {r}"
                    return
                pieces = self.rng.randint(1, 3)
                step = -(-len(data) // pieces)
                for off in range(0, len(data), step):
                    r = s.append(item, off, data[off:off + step])
                    if r.status != 204:
                        self.error = f"append: {r}"
                        return
                self.acked.add(item)
                self.acked_this_round += 1
        except OSError:
            return  # the relay was killed under us: expected


def digest(b):
    return hashlib.sha256(b).hexdigest()


def test_kill_9_during_uploads_keeps_every_acknowledged_item(relay_factory, tmp_path):
    rng = random.Random(SEED)
    relay = relay_factory()
    box = relay.api().create_inbox()
    snd = box.add_sender()
    ids = (box.id, box.owner_token, snd.id, snd.token)
    contents, acked = {}, set()
    for rnd in range(ROUNDS):
        inbox, sender = reattach(relay, *ids)
        sender.api.timeout = inbox.owner.timeout = 5
        up = Uploader(sender, random.Random(rng.random()), contents, acked)
        up.start()
        wait_until(lambda: up.acked_this_round >= 1 or not up.is_alive(), timeout=10,
                   what="a first acknowledged upload")
        assert up.error is None, up.error
        time.sleep(rng.uniform(0.0, 0.4))  # the random instant of the kill
        relay.kill(signal.SIGKILL)
        up.join(15)
        assert not up.is_alive()
        assert up.error is None, up.error

        check = relay.integrity_check(tmp_path / f"copy{rnd}")
        assert check == "ok", f"round {rnd}: integrity_check says {check}"

        relay.start()
        inbox, sender = reattach(relay, *ids)
        listed = inbox.all_listed()
        listed_ids = {i["item"] for i in listed}
        missing = acked - listed_ids
        assert not missing, f"round {rnd}: acknowledged items lost: {sorted(missing)[:5]}"
        for it in listed:
            data = contents[it["item"]]
            assert it["size"] == len(data), "an incomplete item is listed"
            got = inbox.download(it["item"]).body
            assert digest(got) == digest(data), f"round {rnd}: item {it['item']} corrupted"
        # the interrupted ones resume from their durable offset
        for item in set(contents) - listed_ids:
            data = contents[item]
            r = sender.create(item, len(data))
            assert r.status in (200, 201), r
            off = r.json["offset"]
            assert 0 <= off < len(data)
            assert sender.offset(item) == (off, len(data))
            assert inbox.download(item).body == data[:off], "durable prefix differs"
            if off < len(data):
                assert sender.append(item, off, data[off:]).status == 204
            acked.add(item)
        assert {i["item"] for i in inbox.all_listed()} == set(contents)
        # clear the inbox for the next round (quota stays low, checks stay fast)
        for item in list(contents):
            assert inbox.ack(item).status == 204
        contents.clear()
        acked.clear()
    assert relay.stop() == 0


def started_upload(relay, data, sent):
    """A new inbox, a sender, and an item of len(data) with `sent` bytes appended."""
    box = relay.api().create_inbox()
    snd = box.add_sender()
    item = new_item_id()
    snd.create(item, len(data))
    assert snd.append(item, 0, data[:sent]).status == 204
    return box, snd, item


def test_acknowledged_offset_survives_kill_9_exactly(relay_factory):
    relay = relay_factory()
    data = random.Random(3).randbytes(300000)
    box, snd, item = started_upload(relay, data, 100000)
    assert snd.append(item, 100000, data[100000:200000]).status == 204
    relay.kill(signal.SIGKILL)
    relay.start()
    inbox, sender = reattach(relay, box.id, box.owner_token, snd.id, snd.token)
    assert sender.offset(item) == (200000, 300000)
    assert sender.append(item, 200000, data[200000:]).status == 204
    assert inbox.download(item).body == data


def lose_body(relay, item, lost):
    """What a disk crash takes from item's body on a stopped relay: "the
    whole body" or "its tail" (all but 1000 bytes); the bytes left."""
    [part] = [p for p in (relay.data_dir / "items").iterdir() if item in p.name]
    if lost == "the whole body":
        part.unlink()
        return 0
    os.truncate(part, 1000)
    return 1000


@pytest.mark.parametrize("lost", ["the whole body", "its tail"])
def test_a_commit_cut_short_with_its_body_lost_is_uploaded_again(relay_factory, lost):
    """At start the relay finishes the items whose last append was durable
    but whose commit was cut short. One whose body did not survive (the
    disk lost it) used to become a pending item with an empty body, which
    its receiver could only reject: its offset goes back to what is there
    instead, and its sender uploads the rest."""
    relay = relay_factory()
    data = random.Random(5).randbytes(5000)
    box, snd, item = started_upload(relay, data, 3000)
    relay.stop()
    con = sqlite3.connect(relay.data_dir / "chuted.db")
    con.execute("UPDATE items SET off = size WHERE id = ?", (item,))   # as if all were durable
    con.commit()
    con.close()
    have = lose_body(relay, item, lost)
    relay.start()
    inbox, sender = reattach(relay, box.id, box.owner_token, snd.id, snd.token)
    assert sender.status(item).json["state"] == "uploading"
    assert sender.offset(item) == (have, len(data))
    assert inbox.listed() == []
    assert sender.append(item, have, data[have:]).status == 204
    assert inbox.download(item).body == data


@pytest.mark.parametrize("deferred", [False, True])
@pytest.mark.parametrize("lost", ["the whole body", "its tail"])
def test_a_body_shorter_than_its_offset_mid_upload_is_resumed_from_what_is_there(
        relay_factory, lost, deferred):
    """A body that lost the end of its committed offset mid-upload (a crash
    of the disk's) could never be resumed: every PATCH at the offset got
    500 (and made an empty file where there was none). At start the offset
    goes back to what the body holds, and its sender sends the rest."""
    relay = relay_factory()
    data = random.Random(8).randbytes(5000)
    box = relay.api().create_inbox()
    snd = box.add_sender()
    item = new_item_id()
    if deferred:
        assert snd.api.put(box.item_path(item), {"deferred": True}).status == 201
    else:
        assert snd.create(item, len(data)).status == 201
    assert snd.append(item, 0, data[:3000]).status == 204
    relay.stop()
    have = lose_body(relay, item, lost)
    relay.start()
    inbox, sender = reattach(relay, box.id, box.owner_token, snd.id, snd.token)
    r = sender.api.head(inbox.item_path(item))
    assert (r.status, int(r.header("Upload-Offset"))) == (200, have)
    assert sender.append(item, have, data[have:]).status == 204
    if deferred:
        r = sender.api.put(inbox.item_path(item), {"size": len(data), "meta": b64(b"m")})
        assert r.status == 200 and r.json["state"] == "pending", r
    assert inbox.download(item).body == data


def test_state_survives_a_restart(relay_factory):
    relay = relay_factory()
    box = relay.api().create_inbox()
    snd = box.add_sender()
    a = snd.upload(b"kept", meta=b"m1")
    b = snd.upload(b"acked")
    box.ack(b)
    c = new_item_id()
    snd.create(c, 10)
    seq = box.listed()[0]["seq"]
    relay.restart()
    inbox, sender = reattach(relay, box.id, box.owner_token, snd.id, snd.token)
    items = inbox.listed()
    assert [(i["item"], i["seq"]) for i in items] == [(a, seq)]
    assert inbox.download(a).body == b"kept"
    assert sender.status(b).json["state"] == "delivered"
    assert sender.status(c).json["state"] == "uploading"
    # sequence numbers keep growing across restarts
    d = sender.upload(b"new")
    assert [i["seq"] for i in inbox.listed() if i["item"] == d][0] > seq


def test_sigterm_exits_zero_cleanly(relay_factory):
    relay = relay_factory()
    box = relay.api().create_inbox()
    box.add_sender().upload(b"x")
    assert relay.stop() == 0
    assert "runtime error" not in relay.stderr()


def test_sigterm_with_clients_waiting_exits_zero_promptly(relay_factory):
    relay = relay_factory()
    api = relay.api()
    boxes = [api.create_inbox() for _ in range(4)]
    results = []

    def poll(b):
        try:
            results.append(b.list(wait=60, timeout=30).status)
        except OSError:
            results.append("closed")
    threads = [threading.Thread(target=poll, args=(b,), daemon=True) for b in boxes]
    for t in threads:
        t.start()
    wait_until(lambda: api.metrics()[("chute_longpolls_waiting", frozenset())] >= 4,
               timeout=5, what="four waiting listers")
    t0 = time.monotonic()
    assert relay.stop(timeout=10) == 0
    assert time.monotonic() - t0 < 5, "SIGTERM waited for the long-polls to time out"
    for t in threads:
        t.join(10)
    assert all(r in (200, 503, "closed") for r in results), results


def test_sigterm_during_an_upload_keeps_a_resumable_prefix(relay_factory):
    relay = relay_factory()
    box = relay.api().create_inbox()
    snd = box.add_sender()
    data = random.Random(5).randbytes(4 * 1024 * 1024)
    item = new_item_id()
    snd.create(item, len(data))
    s = relay.api().raw_socket()
    s.sendall((f"PATCH {box.item_path(item)} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {snd.token}\r\nUpload-Offset: 0\r\n"
               "Content-Type: application/offset+octet-stream\r\n"
               f"Content-Length: {len(data)}\r\n\r\n").encode() + data[:1024 * 1024])
    wait_until(lambda: relay.api().metrics()[("chute_uploads_in_flight", frozenset())] >= 1,
               timeout=5, what="the upload in flight")
    assert relay.stop() == 0
    s.close()
    relay.start()
    inbox, sender = reattach(relay, box.id, box.owner_token, snd.id, snd.token)
    off, size = sender.offset(item)
    assert size == len(data) and off <= 1024 * 1024
    assert inbox.download(item).body == data[:off]
    assert sender.append(item, off, data[off:]).status == 204
    assert hashlib.sha256(inbox.download(item).body).digest() == hashlib.sha256(data).digest()


def test_metrics_count_stored_items_after_a_restart(relay_factory):
    from conftest import metric
    relay = relay_factory()
    box = relay.api().create_inbox()
    snd = box.add_sender()
    for n in (10, 20, 30):
        snd.upload(b"x" * n)
    before = relay.api().metrics()
    relay.restart()
    after = relay.api().metrics()
    assert metric(after, "chute_items_stored") == metric(before, "chute_items_stored") == 3
    assert metric(after, "chute_bytes_stored") == metric(before, "chute_bytes_stored") == 60


def test_long_poll_works_after_a_restart(relay_factory):
    relay = relay_factory()
    box = relay.api().create_inbox()
    snd = box.add_sender()
    relay.restart()
    inbox, sender = reattach(relay, box.id, box.owner_token, snd.id, snd.token)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", inbox.list(wait=30)), daemon=True)
    t.start()
    wait_until(lambda: relay.api().metrics()[("chute_longpolls_waiting", frozenset())] >= 1,
               timeout=5, what="the lister waiting")
    item = sender.upload(b"after restart")
    t.join(5)
    assert [i["item"] for i in out["r"].json["items"]] == [item]


def test_kill_9_in_a_long_append_keeps_a_durable_prefix(relay_factory):
    """A long PATCH makes its prefix durable as it goes (chuted: every
    16 MiB), so a killed relay keeps what HEAD reported and the bytes match."""
    relay = relay_factory()
    box = relay.api().create_inbox()
    snd = box.add_sender()
    size = 200 * 1024 * 1024
    chunk = random.Random(9).randbytes(1024 * 1024)  # the body is this chunk repeated
    item = new_item_id()
    snd.create(item, size)
    s = relay.api().raw_socket()
    s.sendall((f"PATCH {box.item_path(item)} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {snd.token}\r\nUpload-Offset: 0\r\n"
               "Content-Type: application/offset+octet-stream\r\n"
               f"Content-Length: {size}\r\n\r\n").encode())
    for _ in range(150):
        s.sendall(chunk)
    seen = wait_until(lambda: snd.offset(item)[0] or None, timeout=20, interval=0.05,
                      what="a durable prefix reported by HEAD during the upload")
    # while the upload runs, a download serves only the durable prefix
    got = box.download(item).body
    assert len(got) >= seen
    assert got == (chunk * (len(got) // len(chunk) + 1))[:len(got)]
    relay.kill(signal.SIGKILL)
    s.close()
    relay.start()
    inbox, sender = reattach(relay, box.id, box.owner_token, snd.id, snd.token)
    off, _ = sender.offset(item)
    assert off >= seen, f"HEAD said {seen} durable before the kill, {off} after"
    body = inbox.download(item).body
    assert len(body) == off and body == (chunk * (off // len(chunk) + 1))[:off]


def test_sigint_exits_zero_too(relay_factory):
    relay = relay_factory()
    relay.api().create_inbox()
    assert relay.kill(signal.SIGINT) == 0


def traced(pid):
    """Is every thread of pid under a tracer?"""
    tasks = os.listdir(f"/proc/{pid}/task")
    for t in tasks:
        with open(f"/proc/{pid}/task/{t}/status") as f:
            if "TracerPid:\t0\n" in f.read():
                return False
    return bool(tasks)


def test_a_new_bodys_name_is_durable_before_its_first_offset_is(relay_factory, tmp_path):
    """POSIX makes a new file's name durable with its folder, not with the
    file: the 204 of the first append must come after both are synced."""
    relay = relay_factory()
    box = relay.api().create_inbox()
    snd = box.add_sender()
    item = new_item_id()
    data = random.Random(5).randbytes(300000)
    snd.create(item, len(data))
    trace = tmp_path / "strace.log"
    tracer = subprocess.Popen(["strace", "-f", "-y", "-s", "4096", "-qq", "-e", "trace=fsync,fdatasync",
                               "-o", str(trace), "-p", str(relay.proc.pid)],
                              stderr=subprocess.PIPE)
    try:
        wait_until(lambda: traced(relay.proc.pid) or tracer.poll() is not None,
                   timeout=10, what="strace to attach to every thread")
        assert tracer.poll() is None, tracer.stderr.read()
        assert snd.append(item, 0, data[:100000]).status == 204
        assert snd.append(item, 100000, data[100000:200000]).status == 204
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=10)
    # "PID fdatasync(7</…/items/INBOX.ITEM.part>) = 0", "PID fsync(5</…/items>) = 0"
    calls = [ln.split(None, 1)[1] for ln in trace.read_text().splitlines() if "sync(" in ln]
    part = [i for i, ln in enumerate(calls) if f".{item}.part>) = 0" in ln]
    folder = [i for i, ln in enumerate(calls)
              if ln.startswith("fsync(") and ln.endswith("/items>) = 0")]
    assert part and folder, calls
    assert part[0] < folder[0], calls       # the name after the bytes, before the 204
    assert len(folder) == 1, calls          # once: the second append's file exists
