"""Hostile or broken clients: the relay answers 4xx or closes, never crashes,
and keeps serving everyone else. (The fixture fails any test after which
chuted died or printed a sanitizer report.)"""

import contextlib
import os
import random
import socket
import subprocess
import time

import pytest

from conftest import (SLOW, Inbox, Sender, failing_disk, new_item_id, patch_head,
                      read_until_close, small_tmpfs, status_line, wait_until)


@pytest.mark.parametrize("body", [b"{", b"{\"size\": 1,}", b"\xff\xfe\x00", b"null",
                                  b"{\"size\": 1, \"meta\": \"bWV0YQ==\"} trailing",
                                  b"{\"size\": 1e400, \"meta\": \"\"}",
                                  b"[" * 10000 + b"]" * 10000])
def test_malformed_json_is_400_with_an_error(api, sender, body):
    r = sender.api.put(sender.inbox.item_path(new_item_id()), body,
                       content_type="application/json")
    assert r.status in (400, 413), r
    assert isinstance(r.json["error"], str)
    r = api.post("/v1/pair", body, content_type="application/json")
    assert r.status in (400, 413), r
    assert api.health().status == 200


def test_duplicate_json_keys_do_not_confuse_the_size(sender, inbox):
    item = new_item_id()
    r = sender.api.put(inbox.item_path(item), b'{"size": 1, "meta": "bWV0YQ==", "size": 5}',
                       content_type="application/json")
    assert r.status in (201, 400), r
    if r.status == 201:
        assert sender.offset(item)[1] == r.json["size"]


def test_short_body_for_its_content_length_does_not_hurt(api, sender, inbox):
    item = new_item_id()
    sender.create(item, 100)
    s = api.raw_socket()
    s.sendall((f"PATCH {inbox.item_path(item)} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {sender.token}\r\nUpload-Offset: 0\r\n"
               "Content-Type: application/offset+octet-stream\r\n"
               "Content-Length: 100\r\n\r\n").encode() + b"0123456789")
    s.shutdown(socket.SHUT_WR)
    reply = read_until_close(s, timeout=2)
    s.close()
    assert status_line(reply) in (None, 400), reply[:200]
    off = wait_until(lambda: sender.offset(item), timeout=5, what="HEAD")[0]
    assert off <= 10
    assert inbox.listed() == []
    assert api.health().status == 200


def test_extra_bytes_beyond_content_length_are_a_separate_request(api):
    req = (b"POST /v1/pair HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: 2\r\n\r\n{}GARBAGE / HTTP/1.1\r\n\r\n")
    raw = api.raw(req, timeout=3)
    assert status_line(raw) == 201, raw[:200]
    assert api.health().status == 200


def test_json_content_length_larger_than_sent_then_close(api):
    raw = api.raw(b"POST /v1/inboxes HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{}",
                  shutdown=True, timeout=2)
    assert status_line(raw) in (None, 400), raw[:200]
    assert api.health().status == 200


@pytest.mark.parametrize("seed", range(8))
def test_garbage_bytes_get_400_or_a_close(api, seed):
    junk = random.Random(seed).randbytes(random.Random(seed).randint(1, 20000))
    raw = api.raw(junk, timeout=3, shutdown=True)
    assert status_line(raw) in (None, 400, 405, 414, 431, 505) or raw == b"", raw[:200]
    assert api.health().status == 200


@pytest.mark.parametrize("req", [
    b"GET /v1/health HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /v1/health\r\n\r\n",
    b"\r\n\r\n\r\n",
    b"GET /v1/he\x00alth HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"POST /v1/inboxes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nBad Header No Colon\r\n\r\n",
    b"GET /" + b"../" * 50 + b"etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/inboxes/%00%00/items HTTP/1.1\r\nHost: x\r\n\r\n",
])
def test_malformed_requests_get_4xx_or_a_close(api, req):
    raw = api.raw(req, timeout=2, shutdown=True)
    code = status_line(raw)
    assert code is None or 400 <= code < 500 or code == 505, raw[:200]
    assert api.health().status == 200


def test_a_half_request_left_idle_is_timed_out_while_others_are_served(relay_factory):
    api = relay_factory("--idle-timeout", "2").api()
    lorises = []
    for _ in range(10):
        s = api.raw_socket()
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        lorises.append(s)
    t0 = time.monotonic()
    for _ in range(5):
        r = api.health()
        assert r.status == 200
    assert time.monotonic() - t0 < 2 * SLOW, "other clients were held up"
    for s in lorises:
        data = read_until_close(s, timeout=8)
        assert status_line(data) in (None, 408), data[:100]
        s.close()
    assert time.monotonic() - t0 < 8 * SLOW


def test_a_stalled_upload_body_is_timed_out(relay_factory):
    relay = relay_factory("--idle-timeout", "1")
    api = relay.api()
    inbox = api.create_inbox()
    sender = inbox.add_sender()
    item = new_item_id()
    sender.create(item, 1000)
    s = api.raw_socket()
    s.sendall((f"PATCH {inbox.item_path(item)} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {sender.token}\r\nUpload-Offset: 0\r\n"
               "Content-Type: application/offset+octet-stream\r\n"
               "Content-Length: 1000\r\n\r\n").encode() + b"a" * 100)
    t0 = time.monotonic()
    read_until_close(s, timeout=8)
    s.close()
    assert time.monotonic() - t0 < 6 * SLOW
    off = wait_until(lambda: sender.offset(item), timeout=5, what="HEAD")[0]
    assert off <= 100
    assert inbox.listed() == []


@pytest.mark.parametrize("path", ["/", "/v1", "/v2/health", "/v1/health/x", "/v1/nothing",
                                  "/metrics/x", "/v1/inboxes/AAAAAAAAAAAAAAAAAAAAAA/x",
                                  "/v1/inboxes/AAAAAAAAAAAAAAAAAAAAAA/items/"
                                  + "a" * 20 + "/data/x",
                                  "/v1/pair/1/claim/x", "/favicon.ico"])
def test_unknown_paths_are_404_with_an_error(api, path):
    r = api.get(path)
    assert r.status == 404, (path, r)
    assert isinstance(r.json["error"], str)


@pytest.mark.parametrize("method,path", [
    ("POST", "/v1/health"), ("DELETE", "/v1/health"), ("PUT", "/metrics"),
    ("GET", "/v1/inboxes"), ("PUT", "/v1/inboxes"), ("DELETE", "/v1/inboxes"),
    ("GET", "/v1/pair"), ("PATCH", "/v1/pair"), ("GET", "/v1/pair/123/claim"),
    ("PUT", "/v1/pair/123/claim"),
])
def test_wrong_methods_are_405(api, method, path):
    r = api.request(method, path, b"" if method in ("POST", "PUT", "PATCH") else None)
    assert r.status == 405, (method, path, r)
    if method != "HEAD":
        assert isinstance(r.json["error"], str)


def test_head_is_answered_wherever_get_is(api, inbox, sender):
    """PROTOCOL §6.1: HEAD is answered wherever GET is, as GET's status and
    headers without its body; on an inbox it did not fall through to the
    inbox's other method, DELETE."""
    item = sender.upload(b"some bytes")
    a = api.post("/v1/pair", {}).json
    side = api.with_token(a["token"])
    paths = [(api, "/v1/health"), (api, "/metrics"), (inbox.owner, inbox.path),
             (inbox.owner, f"{inbox.path}/items?after=0"),
             (inbox.owner, f"{inbox.item_path(item)}/status"),
             (sender.api, f"{inbox.item_path(item)}/status"),
             (inbox.owner, f"{inbox.item_path(item)}/data"),
             (side, f"/v1/pair/{a['session']}"), (side, f"/v1/pair/{a['session']}/messages?after=0")]
    for client, path in paths:
        g, h = client.get(path), client.head(path)
        assert g.status == 200, (path, g)
        assert (h.status, h.body) == (200, b""), (path, h)
        assert h.header("Content-Type") == g.header("Content-Type"), path
    # what HEAD looked at is all still there
    assert inbox.listed_ids() == [item]
    assert inbox.download(item).body == b"some bytes"
    assert side.get(f"/v1/pair/{a['session']}").status == 200
    # a wrong token is a missing inbox, for HEAD too
    h = api.with_token(sender.token).head(inbox.path)
    assert (h.status, h.body) == (404, b""), h


def test_wrong_methods_on_capability_resources_are_405(inbox, sender):
    item = sender.upload(b"x")
    for method, path in (("PUT", inbox.path), ("PATCH", inbox.path),
                         ("GET", inbox.path + "/senders"), ("POST", inbox.item_path(item)),
                         ("POST", inbox.item_path(item) + "/data"),
                         ("DELETE", inbox.item_path(item) + "/status")):
        r = inbox.owner.request(method, path, b"" if method in ("POST", "PUT", "PATCH") else None)
        assert r.status in (404, 405), (method, path, r)


def test_pipelined_requests_are_answered_in_order(api):
    req = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = api.raw(req * 3 + b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                  timeout=3)
    codes = [int(c) for c in __import__("re").findall(rb"HTTP/1\.1 (\d{3})", raw)]
    assert codes == [200, 200, 200, 404], raw[:500]


def test_keep_alive_connection_serves_many_requests(api):
    conn = api.connection()
    try:
        for _ in range(50):
            conn.request("GET", "/v1/health")
            r = conn.getresponse()
            assert r.status == 200
            r.read()
    finally:
        conn.close()


def test_many_clients_at_once_are_all_served(api, inbox):
    from concurrent.futures import ThreadPoolExecutor
    senders = [inbox.add_sender() for _ in range(8)]

    def work(s):
        return [s.upload(bytes([i]) * 100) for i in range(10)]
    with ThreadPoolExecutor(8) as ex:
        ids = [i for batch in ex.map(work, senders) for i in batch]
    assert sorted(i["item"] for i in inbox.all_listed()) == sorted(ids)


def test_wrong_ranges_do_not_break_downloads(inbox, sender):
    item = sender.upload(b"0123456789")
    for rng in ("bytes=5-2", "bytes=a-b", "bytes=", "bytes=99999999999999999999999-"):
        r = inbox.download(item, rng)
        assert r.status in (200, 206, 400, 416), (rng, r)
        if r.status == 200:
            assert r.body == b"0123456789"
    # several ranges, or another unit: the Range header is ignored
    for rng in ("items=0-1", "bytes=0-1,3-4"):
        r = inbox.download(item, rng)
        assert (r.status, r.body) == (200, b"0123456789"), rng


def test_an_abandoned_upload_is_over_at_once(api, inbox, sender):
    from conftest import metric
    item = new_item_id()
    sender.create(item, 1000)
    s = api.raw_socket()
    s.sendall((f"PATCH {inbox.item_path(item)} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {sender.token}\r\nUpload-Offset: 0\r\n"
               "Content-Type: application/offset+octet-stream\r\n"
               "Content-Length: 1000\r\n\r\n").encode() + b"a" * 10)
    wait_until(lambda: metric(api.metrics(), "chute_uploads_in_flight") == 1, timeout=5,
               what="the upload in flight")
    s.close()
    wait_until(lambda: metric(api.metrics(), "chute_uploads_in_flight") == 0, timeout=5,
               what="the upload to end")
    assert sender.offset(item) == (10, 1000)


@pytest.mark.parametrize("what", ["items", "pair messages"])
def test_abandoned_long_polls_give_back_their_connections(relay_factory, what):
    """A client that gives up on a long-poll must not keep holding one of
    its per-IP connection slots until its wait= runs out."""
    from conftest import metric
    relay = relay_factory("--max-conns-per-ip", "5")
    api = relay.api()
    inbox = api.create_inbox()
    if what == "items":
        path, token = f"{inbox.path}/items?wait=60", inbox.owner_token
    else:
        a = api.post("/v1/pair", {}).json
        assert api.post(f"/v1/pair/{a['nameplate']}/claim", {}).status == 200
        path, token = f"/v1/pair/{a['session']}/messages?wait=60", a["token"]
    # The gauge is read from 127.0.0.2, whose connections the relay counts
    # apart: a probe never takes one of the five slots the polls test.
    probe = relay.api(source="127.0.0.2")
    def waiting(n):
        try:
            return metric(probe.metrics(), "chute_longpolls_waiting") == n
        except OSError:
            return False
    polls = []
    for i in range(4):
        # one at a time: a poll opened before the relay has seen the setup
        # requests' connections close is refused (503) — open it again
        for _ in range(20):
            p = api.raw_socket()
            p.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\n"
                       f"Authorization: Bearer {token}\r\n\r\n").encode())
            deadline = time.monotonic() + 1.0 * SLOW
            while not waiting(i + 1) and time.monotonic() < deadline:
                time.sleep(0.02)
            if waiting(i + 1):
                break
            p.close()
        polls.append(p)
    wait_until(lambda: waiting(4), timeout=5, what="four long-polls waiting")
    for p in polls:
        p.close()
    wait_until(lambda: waiting(0), timeout=5, what="the waiting gauge back at 0")
    # all five slots are free again: five kept-alive connections are served
    held = []
    try:
        for _ in range(5):
            def one():
                s = api.raw_socket()
                s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                s.settimeout(5 * SLOW)
                try:
                    if s.recv(100).startswith(b"HTTP/1.1 200"):
                        return s
                except OSError:
                    pass
                s.close()
                return None
            held.append(wait_until(one, timeout=5, interval=0.1, what="a free connection slot"))
    finally:
        for s in held:
            s.close()


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs for the relay's data."""
    with small_tmpfs(tmp_path / "small-disk", "4m") as d:
        yield d


def test_a_full_disk_gets_an_error_not_a_crash_or_a_half_item(relay_factory, small_disk):
    relay = relay_factory(data_dir=small_disk / "data")
    api = relay.api()
    inbox = api.create_inbox()
    sender = inbox.add_sender()
    first = sender.upload(b"1" * (2 * 1024 * 1024))
    item = new_item_id()
    data = b"2" * (3 * 1024 * 1024)
    assert sender.create(item, len(data)).status == 201
    r = sender.append(item, 0, data)
    assert r.status == 507, r
    assert "error" in r.json
    assert r.json["offset"] == sender.offset(item)[0]
    assert inbox.listed_ids() == [first]
    off, _ = sender.offset(item)
    assert inbox.download(item).body == data[:off]
    # space comes back when the first item is delivered; the upload resumes
    wait_until(lambda: inbox.ack(first).status == 204, timeout=5, interval=0.2,
               what="the ack that frees space on a full disk")
    assert sender.append(item, off, data[off:]).status == 204
    assert inbox.download(item).body == data
    assert api.health().status == 200


def test_many_uploads_at_once_leave_the_last_256k_free(relay_factory, tmp_path):
    # Each upload checks the free space only every 256 KiB it writes: 32 at
    # once must still leave SQLite the room to record the acks and deletes
    # that free space again (PROTOCOL §6.8), not eat into it together.
    import threading
    with small_tmpfs(tmp_path / "small-disk", "24m") as d:
        relay = relay_factory(data_dir=d / "data")
        api = relay.api()
        inbox = api.create_inbox()
        sender = inbox.add_sender()
        data = os.urandom(1024 * 1024)
        items = [new_item_id() for _ in range(32)]
        for item in items:
            assert sender.create(item, len(data)).status == 201
        answers = []

        def upload(item):
            answers.append(sender.append(item, 0, data).status)
        threads = [threading.Thread(target=upload, args=(i,)) for i in items]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60 * SLOW)
        assert sorted(set(answers)) in ([204, 507], [507]), answers
        vfs = os.statvfs(d)
        assert vfs.f_bavail * vfs.f_frsize >= 256 * 1024, vfs.f_bavail * vfs.f_frsize
        # what went whole can still be acked, and a cancel still recorded
        assert all(inbox.ack(i).status == 204 for i in inbox.listed_ids())
        assert all(sender.cancel(i).status in (204, 409) for i in items)
        assert api.health().status == 200


def test_405_names_the_allowed_methods(api, inbox):
    r = api.post("/v1/health", b"")
    assert r.status == 405 and "GET" in r.header("Allow", ""), r
    r = api.get("/v1/inboxes")
    assert r.status == 405 and "POST" in r.header("Allow", ""), r


@contextlib.contextmanager
def renames_refused(folder):
    """No entry of folder can be renamed or added (chattr +i, which binds
    root too): a commit's rename of the body fails, its writes do not."""
    r = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], timeout=10)


@pytest.mark.parametrize("deferred", [False, True])
def test_a_commit_that_failed_is_finished_by_the_senders_repeated_create(relay, inbox, sender,
                                                                          deferred):
    # Every byte durable but the commit failed (here: the body's rename):
    # the sender's retry of its create (or declare) must commit the item,
    # not answer "uploading" with offset = size and leave it unlisted.
    item = new_item_id()
    data = os.urandom(100_000)
    if deferred:
        assert sender.api.put(inbox.item_path(item), {"deferred": True}).status == 201
        assert sender.append(item, 0, data).status == 204
    else:
        assert sender.create(item, len(data)).status == 201
        assert sender.append(item, 0, data[:50_000]).status == 204
    with renames_refused(relay.data_dir / "items"):
        r = (sender.create(item, len(data)) if deferred
             else sender.append(item, 50_000, data[50_000:]))
        assert r.status == 500, r
    assert inbox.listed_ids() == []
    r = sender.create(item, len(data))
    assert r.status == 200, r
    assert (r.json["state"], r.json["offset"]) == ("pending", len(data)), r.json
    assert inbox.listed_ids() == [item]
    assert inbox.download(item).body == data
    assert sender.status(item).json["state"] == "pending"


def test_a_body_the_disk_failed_to_write_is_never_acknowledged(relay_factory, tmp_path):
    # The disk fails the writeback of [16, 24) MiB of a 40 MiB PATCH and
    # works again before its end. The relay's drop-behind waits for that
    # writeback and so takes the error from the fdatasync after it: the
    # PATCH must fail and the offset stay where the disk had everything.
    MiB = 1 << 20
    size = 40 * MiB
    data = os.urandom(size)
    with failing_disk(tmp_path / "disk") as disk:
        relay = relay_factory(data_dir=disk.root / "data")
        api = relay.api()
        inbox = api.create_inbox()
        sender = inbox.add_sender()
        item = new_item_id()
        assert sender.create(item, size).status == 201
        sock = api.raw_socket(timeout=30)
        sock.sendall(patch_head(inbox.item_path(item), sender.token, 0, size))
        sock.sendall(data[:16 * MiB + 256 * 1024])
        checkpoint = wait_until(lambda: sender.offset(item)[0] >= 16 * MiB and sender.offset(item)[0],
                                timeout=10, what="the 16 MiB checkpoint")
        disk.starve()
        try:
            sock.sendall(data[16 * MiB + 256 * 1024:24 * MiB + 256 * 1024])
            time.sleep(2)                   # the writeback fails meanwhile
        finally:
            disk.feed()
        try:
            sock.sendall(data[24 * MiB + 256 * 1024:])
        except (BrokenPipeError, ConnectionResetError):
            pass                            # refused before the end: fine
        answer = read_until_close(sock, 10)
        sock.close()
        assert status_line(answer) in (500, 507, None), answer[:200]
        offset = sender.offset(item)[0]
        assert offset == checkpoint
        relay.stop()
        disk.remount()                      # reads come from the disk now
        relay.start()                       # on another port
        inbox = Inbox(relay.api(), inbox.id, inbox.owner_token)
        sender = Sender(inbox, sender.id, sender.token)
        assert inbox.download(item).body == data[:offset]
        assert sender.append(item, offset, data[offset:]).status == 204
        assert inbox.download(item).body == data
