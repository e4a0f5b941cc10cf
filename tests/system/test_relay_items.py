"""PROTOCOL §6.5–6.6: uploading, listing, downloading, acking items."""

import base64
import hashlib
import os
import random
import socket
import subprocess

import pytest

from conftest import NOT_FOUND, b64, new_item_id, wait_until


def test_create_item_starts_uploading_at_offset_zero(sender):
    item = new_item_id()
    r = sender.create(item, 5, b"sealed")
    assert r.status == 201, r
    assert r.json == {"item": item, "size": 5, "offset": 0, "state": "uploading"}


def test_repeating_a_create_reports_the_durable_offset(sender):
    item = new_item_id()
    assert sender.create(item, 10, b"m").status == 201
    assert sender.append(item, 0, b"abc").status == 204
    r = sender.create(item, 10, b"m")
    assert r.status == 200, r
    assert r.json == {"item": item, "size": 10, "offset": 3, "state": "uploading"}


def test_repeating_a_create_of_a_complete_item_is_a_no_op(inbox, sender):
    item = sender.upload(b"hello", meta=b"m")
    r = sender.create(item, 5, b"m")
    assert r.status == 200, r
    assert r.json["offset"] == 5 and r.json["state"] == "pending"
    assert inbox.listed_ids() == [item]


def test_create_with_another_size_or_meta_conflicts(sender):
    item = new_item_id()
    assert sender.create(item, 10, b"m").status == 201
    for size, meta in ((11, b"m"), (10, b"n"), (0, b"m")):
        r = sender.create(item, size, meta)
        assert r.status == 409, (size, meta, r)
        assert "error" in r.json
    assert sender.offset(item) == (0, 10)


def test_zero_size_item_is_complete_at_once(inbox, sender):
    item = new_item_id()
    assert sender.create(item, 0).status == 201
    assert inbox.listed_ids() == [item]
    assert sender.status(item).json["state"] == "pending"
    r = inbox.download(item)
    assert (r.status, r.body) == (200, b"")


@pytest.mark.parametrize("item", ["short", "x" * 15, "y" * 65, "has.dot" + "a" * 16,
                                  "has%20space" + "a" * 16, "%2e%2e%2f" + "a" * 16])
def test_item_ids_outside_the_syntax_are_refused(sender, item):
    r = sender.create(item, 1)
    assert r.status in (400, 404), r
    assert "error" in r.json


@pytest.mark.parametrize("item", ["a" * 16, "Z" * 64, "0-_" * 6])
def test_item_ids_of_16_to_64_allowed_characters_are_accepted(sender, item):
    assert sender.create(item, 0).status == 201


@pytest.mark.parametrize("body", [
    {"size": 5},
    {"meta": "bWV0YQ=="},
    {"size": -1, "meta": "bWV0YQ=="},
    {"size": "5", "meta": "bWV0YQ=="},
    {"size": 5.5, "meta": "bWV0YQ=="},
    {"size": 5, "meta": "not base64!"},
    {"size": 5, "meta": 17},
    [5, "bWV0YQ=="],
    "size",
])
def test_create_with_a_malformed_body_is_refused(sender, body):
    r = sender.api.put(sender.inbox.item_path(new_item_id()), body)
    assert r.status == 400, (body, r)
    assert "error" in r.json


def test_appends_advance_the_offset(sender):
    item = new_item_id()
    sender.create(item, 9)
    for off, chunk in ((0, b"abc"), (3, b"def"), (6, b"ghi")):
        r = sender.append(item, off, chunk)
        assert r.status == 204, r
        assert r.header("Upload-Offset") == str(off + 3)
        assert r.body == b""


def test_uploaded_bytes_come_back_intact(inbox, sender):
    data = random.Random(1).randbytes(3 * 1024 * 1024 + 17)
    item = sender.upload(data, pieces=5)
    r = inbox.download(item)
    assert r.status == 200
    assert r.header("Content-Type", "").startswith("application/octet-stream")
    assert hashlib.sha256(r.body).digest() == hashlib.sha256(data).digest()


def test_append_at_a_wrong_offset_conflicts_and_tells_the_offset(sender):
    item = new_item_id()
    sender.create(item, 10)
    sender.append(item, 0, b"1234")
    for wrong in (0, 3, 5, 10):
        r = sender.append(item, wrong, b"xx")
        assert r.status == 409, (wrong, r)
        assert r.json["offset"] == 4 and "error" in r.json
    assert sender.offset(item) == (4, 10)


def test_append_beyond_the_declared_size_is_too_large(inbox, sender):
    item = new_item_id()
    sender.create(item, 5)
    r = sender.append(item, 0, b"123456")
    assert r.status == 413, r
    assert "error" in r.json
    assert sender.offset(item) == (0, 5)
    assert sender.append(item, 0, b"12345").status == 204
    assert inbox.download(item).body == b"12345"


def test_append_to_a_complete_item_is_refused(sender):
    item = sender.upload(b"done")
    r = sender.append(item, 4, b"x")
    assert r.status in (409, 413), r


def test_append_without_content_length_needs_length(api, sender):
    item = new_item_id()
    sender.create(item, 5)
    head = (f"PATCH {sender.inbox.item_path(item)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {sender.token}\r\nUpload-Offset: 0\r\n"
            "Content-Type: application/offset+octet-stream\r\n")
    raw = api.raw((head + "Connection: close\r\n\r\n").encode())
    assert raw.startswith(b"HTTP/1.1 411"), raw[:200]
    # chunked (which has no Content-Length): refused for what it is (§6.5)
    raw = api.raw((head + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                   "5\r\nhello\r\n0\r\n\r\n").encode())
    assert raw.startswith(b"HTTP/1.1 400"), raw[:200]
    assert b"Transfer-Encoding is not accepted" in raw
    assert sender.offset(item) == (0, 5)


@pytest.mark.parametrize("ctype", ["application/octet-stream", "application/json", "text/plain"])
def test_append_with_another_content_type_is_unsupported(sender, ctype):
    item = new_item_id()
    sender.create(item, 5)
    r = sender.append(item, 0, b"hello", content_type=ctype)
    assert r.status == 415, r
    assert "error" in r.json
    assert sender.offset(item) == (0, 5)


@pytest.mark.parametrize("offset", [None, "", "abc", "-1", "1e3", "0x0", "99999999999999999999999"])
def test_append_with_a_malformed_upload_offset_is_refused(sender, offset):
    item = new_item_id()
    sender.create(item, 5)
    headers = {"Content-Type": "application/offset+octet-stream"}
    if offset is not None:
        headers["Upload-Offset"] = offset
    r = sender.api.patch(sender.inbox.item_path(item), b"hello", headers=headers)
    assert r.status == 400, (offset, r)
    assert sender.offset(item) == (0, 5)


def test_append_to_a_missing_item_is_not_found(sender):
    r = sender.append(new_item_id(), 0, b"x")
    assert (r.status, r.json) == (404, NOT_FOUND)


def test_head_reports_offset_and_length_to_sender_and_owner(inbox, sender):
    item = new_item_id()
    sender.create(item, 8)
    sender.append(item, 0, b"abc")
    for api in (sender.api, inbox.owner):
        r = api.head(inbox.item_path(item))
        assert r.status == 200, r
        assert (r.header("Upload-Offset"), r.header("Upload-Length")) == ("3", "8")
        assert r.body == b""


def test_incomplete_item_is_not_listed(inbox, sender):
    item = new_item_id()
    sender.create(item, 4)
    sender.append(item, 0, b"abc")
    assert inbox.listed() == []
    sender.append(item, 3, b"d")
    assert inbox.listed_ids() == [item]


def test_listing_shows_seq_size_meta_and_creation_time(inbox, sender):
    import time
    t0 = int(time.time())
    meta = os.urandom(200)
    item = sender.upload(b"12345", meta=meta)
    r = inbox.list()
    assert r.status == 200
    j = r.json
    assert len(j["items"]) == 1
    it = j["items"][0]
    assert it["item"] == item and it["size"] == 5 and it["meta"] == b64(meta)
    assert isinstance(it["seq"], int) and it["seq"] > 0
    assert t0 - 2 <= it["created"] <= int(time.time()) + 2
    assert j["cursor"] == it["seq"]


def test_listing_names_the_sender_of_each_item(inbox):
    a, b = inbox.add_sender(), inbox.add_sender()
    ia = a.upload(b"from a")
    ib = b.upload(b"from b")
    senders = {i["item"]: i["sender"] for i in inbox.listed()}
    assert senders == {ia: a.id, ib: b.id}
    assert {i["sender"] for i in inbox.listed(partial=True)} == {a.id, b.id}


def test_listing_follows_commit_order_not_creation_order(inbox, sender):
    a, b = new_item_id(), new_item_id()
    sender.create(a, 1)
    sender.create(b, 1)
    sender.append(b, 0, b"b")
    sender.append(a, 0, b"a")
    items = inbox.listed()
    assert [i["item"] for i in items] == [b, a]
    assert items[0]["seq"] < items[1]["seq"]


def test_listing_after_a_cursor_returns_only_newer_items(inbox, sender):
    ids = [sender.upload(bytes([i])) for i in range(4)]
    items = inbox.listed()
    assert [i["item"] for i in items] == ids
    seqs = [i["seq"] for i in items]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    r = inbox.list(after=seqs[1]).json
    assert [i["item"] for i in r["items"]] == ids[2:]
    assert r["cursor"] == seqs[3]
    r = inbox.list(after=seqs[3]).json
    assert r == {"items": [], "cursor": seqs[3]}


def test_listing_pages_at_1000_items(inbox, sender):
    from concurrent.futures import ThreadPoolExecutor
    ids = [new_item_id() for _ in range(1001)]
    with ThreadPoolExecutor(8) as ex:
        statuses = list(ex.map(lambda i: sender.create(i, 0).status, ids))
    assert statuses == [201] * 1001
    first = inbox.list().json
    assert len(first["items"]) == 1000
    rest = inbox.list(after=first["cursor"]).json
    assert len(rest["items"]) == 1
    assert {i["item"] for i in first["items"] + rest["items"]} == set(ids)


LIST_BYTES = 256 * 1024  # PROTOCOL §6.6: the most JSON in one list answer


@pytest.mark.parametrize("partial", [False, True])
def test_a_list_answer_stays_within_256_kib_and_the_cursor_carries_on(inbox, sender, partial):
    """A list answer is held in the relay's memory until its client has
    read it: 1000 items of 4 KiB meta made 5.6 MB each. An answer stops
    at 256 KiB of JSON, and following the cursor still lists every item,
    once, in order."""
    from concurrent.futures import ThreadPoolExecutor
    rng = random.Random(7)
    metas = {new_item_id(): rng.randbytes(4096) for _ in range(150)}
    with ThreadPoolExecutor(8) as ex:
        statuses = list(ex.map(lambda i: sender.create(i, 0, metas[i]).status, metas))
    assert statuses == [201] * len(metas)
    seen, after, pages = [], 0, 0
    for _ in range(20):  # 150 items of ~5.6 KiB: 4 answers and an empty one
        r = inbox.list(after=after, partial=partial)
        assert r.status == 200, r
        assert len(r.body) <= LIST_BYTES, len(r.body)
        j = r.json
        if not j["items"]:
            break
        pages += 1
        seen += j["items"]
        assert j["cursor"] == j["items"][-1]["seq"] > after
        after = j["cursor"]
    else:
        raise AssertionError("the listing did not end")
    assert pages > 1
    assert [i["seq"] for i in seen] == sorted(i["seq"] for i in seen)
    assert sorted(i["item"] for i in seen) == sorted(metas)
    assert all(base64.b64decode(i["meta"]) == metas[i["item"]] for i in seen)


@pytest.mark.parametrize("after", ["-1", "abc", "1.5"])
def test_listing_with_a_malformed_cursor_is_refused(inbox, after):
    r = inbox.owner.get(f"{inbox.path}/items?after={after}")
    assert r.status == 400, r


def test_download_a_range_gives_partial_content(inbox, sender):
    data = bytes(range(100))
    item = sender.upload(data)
    for rng, want, content_range in (("bytes=2-5", data[2:6], "bytes 2-5/100"),
                                     ("bytes=90-", data[90:], "bytes 90-99/100"),
                                     ("bytes=-3", data[97:], "bytes 97-99/100"),
                                     ("bytes=99-200", data[99:], "bytes 99-99/100")):
        r = inbox.download(item, rng)
        assert r.status == 206, (rng, r)
        assert r.body == want, rng
        assert r.header("Content-Range") == content_range
        assert r.header("Content-Length") == str(len(want))


def test_unsatisfiable_range_is_416(inbox, sender):
    item = sender.upload(b"0123456789")
    for rng in ("bytes=10-", "bytes=20-30"):
        r = inbox.download(item, rng)
        assert r.status == 416, (rng, r)
        assert r.header("Content-Range") == "bytes */10"


def test_download_of_an_uploading_item_serves_its_durable_prefix(inbox, sender):
    item = new_item_id()
    sender.create(item, 10)
    sender.append(item, 0, b"abcd")
    r = inbox.download(item)
    assert (r.status, r.body) == (200, b"abcd")
    assert inbox.download(item, "bytes=1-2").body == b"bc"


def test_send_token_cannot_download_or_list(inbox, sender):
    item = sender.upload(b"secret")
    assert inbox.download(item, api=sender.api).status == 404
    assert inbox.list(api=sender.api).status == 404


def test_ack_deletes_the_body_and_leaves_a_delivered_tombstone(relay, inbox, sender):
    marker = b"ack-marker-" + new_item_id().encode()
    item = sender.upload(marker * 50)
    r = inbox.ack(item)
    assert r.status == 204, r
    assert inbox.listed() == []
    assert inbox.download(item).status == 404
    assert sender.status(item).json["state"] == "delivered"
    assert inbox.ack(item).status == 204  # retried ack
    assert not [p for p in relay.data_files() if marker in p.read_bytes()]


def test_owner_rejects_an_item_and_its_sender_is_told(relay, inbox, sender):
    marker = b"reject-marker-" + new_item_id().encode()
    item = sender.upload(marker * 50)
    r = inbox.owner.delete(inbox.item_path(item) + "?reject=1")
    assert r.status == 204, r
    assert inbox.listed() == []
    assert inbox.download(item).status == 404
    assert sender.status(item).json["state"] == "rejected"
    assert inbox.status(item).json["state"] == "rejected"
    # a later plain ack or another reject changes nothing
    assert inbox.ack(item).status == 204
    assert inbox.owner.delete(inbox.item_path(item) + "?reject=1").status == 204
    assert sender.status(item).json["state"] == "rejected"
    # the sender cannot cancel what was refused, and learns why
    r = sender.api.delete(inbox.item_path(item))
    assert r.status == 409 and r.json["state"] == "rejected", r
    assert not [p for p in relay.data_files() if marker in p.read_bytes()]
    # reject=0 is an ordinary ack
    other = sender.upload(b"fine")
    assert inbox.owner.delete(inbox.item_path(other) + "?reject=0").status == 204
    assert sender.status(other).json["state"] == "delivered"


def test_sender_sees_its_item_go_uploading_pending_delivered(inbox, sender):
    item = new_item_id()
    sender.create(item, 2)

    def st():
        r = sender.status(item)
        assert r.status == 200, r
        return r.json
    assert st() == {"item": item, "state": "uploading", "size": 2, "offset": 0}
    sender.append(item, 0, b"a")
    assert st() == {"item": item, "state": "uploading", "size": 2, "offset": 1}
    sender.append(item, 1, b"b")
    assert st() == {"item": item, "state": "pending", "size": 2, "offset": 2}
    inbox.ack(item)
    assert st()["state"] == "delivered"
    assert inbox.status(item).json["state"] == "delivered"


def test_sender_cancels_an_item(relay, inbox, sender):
    marker = b"cancel-marker-" + new_item_id().encode()
    item = sender.upload(marker * 50)
    r = sender.cancel(item)
    assert r.status == 204, r
    assert sender.status(item).json["state"] == "cancelled"
    assert inbox.listed() == []
    assert inbox.download(item).status == 404
    assert sender.cancel(item).status == 204  # repeated
    assert not [p for p in relay.data_files() if marker in p.read_bytes()]


def test_cancel_of_an_uploading_item_stops_its_upload(inbox, sender):
    item = new_item_id()
    sender.create(item, 4)
    sender.append(item, 0, b"ab")
    assert sender.cancel(item).status == 204
    assert sender.append(item, 2, b"cd").status in (404, 409, 410)
    assert inbox.listed() == []
    assert sender.status(item).json["state"] == "cancelled"


def test_cancel_after_delivery_conflicts(inbox, sender):
    item = sender.upload(b"x")
    inbox.ack(item)
    r = sender.cancel(item)
    assert r.status == 409, r
    assert r.json["state"] == "delivered" and "error" in r.json


def test_a_sender_cannot_see_another_senders_items(inbox):
    a, b = inbox.add_sender(), inbox.add_sender()
    item = new_item_id()
    a.create(item, 4)
    a.append(item, 0, b"ab")
    path = inbox.item_path(item)
    for r in (b.status(item), b.api.head(path), b.cancel(item), b.append(item, 2, b"cd"),
              b.api.get(path + "/data")):
        assert r.status == 404, r
        if r.body:
            assert r.json == NOT_FOUND
    assert a.offset(item) == (2, 4)
    assert a.status(item).json["state"] == "uploading"


def test_resume_after_a_connection_dropped_mid_append(relay_factory):
    # A long idle timeout: the relay must notice the dropped connection
    # itself, not because the connection went idle.
    api = relay_factory("--idle-timeout", "120").api()
    inbox = api.create_inbox()
    sender = inbox.add_sender()
    data = random.Random(7).randbytes(8 * 1024 * 1024)
    sent = 4 * 1024 * 1024
    item = new_item_id()
    assert sender.create(item, len(data)).status == 201
    s = api.raw_socket()
    s.sendall((f"PATCH {inbox.item_path(item)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Bearer {sender.token}\r\nUpload-Offset: 0\r\n"
               "Content-Type: application/offset+octet-stream\r\n"
               f"Content-Length: {len(data)}\r\n\r\n").encode())
    s.sendall(data[:sent])
    s.shutdown(socket.SHUT_RDWR)
    s.close()

    # The relay keeps a durable prefix of what arrived; wait until the dropped
    # request is over (a resume at the reported offset is accepted).
    def resumed():
        off, length = sender.offset(item)
        assert length == len(data)
        assert off <= sent, f"offset {off} beyond the {sent} bytes sent"
        r = sender.append(item, off, data[off:off + 1])
        return (off, r) if r.status == 204 else None
    off, r = wait_until(resumed, timeout=10, interval=0.05, what="a resumable offset")
    assert off > 0, "nothing of a 4 MiB partial append was kept"
    off += 1
    assert sender.append(item, off, data[off:]).status == 204
    got = inbox.download(item)
    assert hashlib.sha256(got.body).digest() == hashlib.sha256(data).digest()
    assert inbox.listed_ids() == [item]


def test_prefix_of_a_dropped_append_matches_what_was_sent(relay_factory):
    # a short idle timeout, so this holds even if the relay notices the
    # drop only when the connection times out
    api = relay_factory("--idle-timeout", "2").api()
    inbox = api.create_inbox()
    sender = inbox.add_sender()
    data = random.Random(8).randbytes(2 * 1024 * 1024)
    item = new_item_id()
    sender.create(item, len(data) + 10)
    s = api.raw_socket()
    s.sendall((f"PATCH {inbox.item_path(item)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Bearer {sender.token}\r\nUpload-Offset: 0\r\n"
               "Content-Type: application/offset+octet-stream\r\n"
               f"Content-Length: {len(data) + 10}\r\n\r\n").encode() + data)
    s.close()
    wait_until(lambda: sender.create(item, len(data) + 10).json["offset"] > 0
               and sender.status(item).json["offset"] == sender.offset(item)[0],
               timeout=10, what="the dropped append's prefix")
    off = sender.offset(item)[0]
    got = inbox.download(item).body
    assert len(got) == off and got == data[:off]


def test_two_concurrent_appends_at_one_offset_do_not_both_land(inbox):
    import threading
    a = inbox.add_sender()
    item = new_item_id()
    first, second = os.urandom(1024 * 1024), os.urandom(1024 * 1024)
    a.create(item, 2 * 1024 * 1024)
    barrier = threading.Barrier(2)
    results = {}

    def go(name, data):
        barrier.wait(5)
        results[name] = a.append(item, 0, data)
    ts = [threading.Thread(target=go, args=(n, d)) for n, d in (("first", first), ("second", second))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    codes = sorted(r.status for r in results.values())
    assert codes == [204, 409], codes
    off, _ = a.offset(item)
    body = inbox.download(item).body
    assert off == 1024 * 1024
    assert body == (first if results["first"].status == 204 else second)


def test_curl_uploads_with_expect_continue_and_downloads_ranges(relay, inbox, sender, tmp_path):
    import subprocess
    data = random.Random(11).randbytes(3 * 1024 * 1024)
    f = tmp_path / "blob"
    f.write_bytes(data)
    item = new_item_id()
    sender.create(item, len(data))
    url = relay.url + inbox.item_path(item)
    r = subprocess.run(["curl", "-sS", "--max-time", "30", "-X", "PATCH", "-T", str(f),
                        "-o", "/dev/null", "-w", "%{http_code}",
                        "-H", f"Authorization: Bearer {sender.token}", "-H", "Upload-Offset: 0",
                        "-H", "Content-Type: application/offset+octet-stream", url],
                       capture_output=True, timeout=60)
    assert r.stdout == b"204", r
    r = subprocess.run(["curl", "-sS", "--max-time", "30", "-f", "-H",
                        f"Authorization: Bearer {inbox.owner_token}", "-r", "1000-1999",
                        url + "/data"], capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == data[1000:2000], r.stderr
    r = subprocess.run(["curl", "-sS", "--max-time", "30", "-f", "-H",
                        f"Authorization: Bearer {inbox.owner_token}", url + "/data"],
                       capture_output=True, timeout=60)
    assert hashlib.sha256(r.stdout).digest() == hashlib.sha256(data).digest()


def test_relay_memory_stays_bounded_for_a_large_item(relay, inbox, sender):
    from conftest import SLOW
    if SLOW > 1:
        pytest.skip("sanitizer shadow memory makes RSS meaningless")
    size = 256 * 1024 * 1024
    chunk = os.urandom(1024 * 1024)
    item = new_item_id()
    sender.create(item, size)
    conn = sender.api.connection(timeout=60)
    conn.putrequest("PATCH", inbox.item_path(item))
    for k, v in (("Authorization", f"Bearer {sender.token}"), ("Upload-Offset", "0"),
                 ("Content-Type", "application/offset+octet-stream"),
                 ("Content-Length", str(size))):
        conn.putheader(k, v)
    conn.endheaders()
    for _ in range(size // len(chunk)):
        conn.send(chunk)
    r = conn.getresponse()
    assert r.status == 204
    conn.close()
    # and back out
    conn = inbox.owner.connection(timeout=60)
    conn.request("GET", inbox.item_path(item) + "/data",
                 headers={"Authorization": f"Bearer {inbox.owner_token}"})
    r = conn.getresponse()
    n = 0
    while True:
        b = r.read(1024 * 1024)
        if not b:
            break
        assert b == chunk
        n += len(b)
    conn.close()
    assert n == size
    hwm = relay.vm("VmHWM")
    assert hwm < 64 * 1024, f"chuted peak RSS {hwm / 1024:.0f} MiB for a 256 MiB item"


def expect_continue_reply(api, method, path, headers, length):
    """Send only the headers of a request with Expect: 100-continue and a
    large Content-Length; return the first status the relay sends."""
    s = api.raw_socket()
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall((head + f"Content-Length: {length}\r\n\r\n").encode())
        s.settimeout(5)
        data = b""
        while b"\r\n" not in data:
            b = s.recv(4096)
            if not b:
                break
            data += b
        return int(data.split(b" ")[1]) if data.startswith(b"HTTP/1.1 ") else data
    finally:
        s.close()


def test_oversized_append_is_refused_before_its_body_is_sent(api, inbox, sender):
    item = new_item_id()
    sender.create(item, 5)
    h = {"Authorization": f"Bearer {sender.token}", "Upload-Offset": "0",
         "Content-Type": "application/offset+octet-stream"}
    assert expect_continue_reply(api, "PATCH", inbox.item_path(item), h, 2**30) == 413
    assert expect_continue_reply(api, "PATCH", inbox.item_path(item),
                                 dict(h, **{"Upload-Offset": "3"}), 1) == 409
    assert expect_continue_reply(api, "PATCH", inbox.item_path(new_item_id()), h, 5) == 404
    assert expect_continue_reply(api, "PATCH", inbox.item_path(item), h, 5) == 100


def test_item_ids_differing_in_case_are_different_items(inbox, sender):
    lower, upper = "abcdefghijklmnopqrstuv", "ABCDEFGHIJKLMNOPQRSTUV"
    sender.upload(b"lower", item=lower)
    sender.upload(b"UPPER", item=upper)
    assert inbox.download(lower).body == b"lower"
    assert inbox.download(upper).body == b"UPPER"


def test_range_beyond_the_durable_prefix_is_416(inbox, sender):
    item = new_item_id()
    sender.create(item, 10)
    sender.append(item, 0, b"abcd")
    assert inbox.download(item, "bytes=4-").status == 416
    assert inbox.download(item, "bytes=2-8").body == b"cd"


def test_range_of_an_empty_item_is_416(inbox, sender):
    item = new_item_id()
    sender.create(item, 0)
    assert inbox.download(item, "bytes=0-").status == 416


@pytest.mark.parametrize("query", ["wait=-1", "wait=abc", "after=18446744073709551616",
])
def test_listing_with_malformed_parameters_is_refused(inbox, query):
    r = inbox.owner.get(f"{inbox.path}/items?{query}")
    assert r.status == 400, (query, r)


def test_metrics_follow_acks_and_cancels(api, inbox, sender):
    from conftest import metric
    m0 = api.metrics()
    a = sender.upload(b"a" * 100)
    b = sender.upload(b"b" * 50)
    m1 = api.metrics()
    assert metric(m1, "chute_items_stored") == metric(m0, "chute_items_stored") + 2
    inbox.ack(a)
    sender.cancel(b)
    m2 = api.metrics()
    assert metric(m2, "chute_items_stored") == metric(m0, "chute_items_stored")
    assert metric(m2, "chute_bytes_stored") == metric(m0, "chute_bytes_stored")


def test_concurrent_identical_creates_make_one_item(inbox, sender):
    import threading
    from concurrent.futures import ThreadPoolExecutor
    item = new_item_id()
    barrier = threading.Barrier(16)

    def go(_):
        barrier.wait(5)
        return sender.create(item, 7, b"same").status
    with ThreadPoolExecutor(16) as ex:
        codes = sorted(ex.map(go, range(16)))
    assert codes == [200] * 15 + [201], codes


def test_concurrent_acks_of_one_item_all_succeed(inbox, sender):
    import threading
    from concurrent.futures import ThreadPoolExecutor
    item = sender.upload(b"once")
    barrier = threading.Barrier(12)

    def go(_):
        barrier.wait(5)
        return inbox.ack(item).status
    with ThreadPoolExecutor(12) as ex:
        codes = list(ex.map(go, range(12)))
    assert codes == [204] * 12, codes
    assert sender.status(item).json["state"] == "delivered"


def test_cancel_racing_ack_ends_in_one_state(inbox, sender):
    import threading
    for _ in range(10):
        item = sender.upload(b"race")
        barrier = threading.Barrier(2)
        out = {}

        def ack():
            barrier.wait(5)
            out["ack"] = inbox.ack(item).status

        def cancel():
            barrier.wait(5)
            out["cancel"] = sender.cancel(item).status
        ts = [threading.Thread(target=ack), threading.Thread(target=cancel)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        state = sender.status(item).json["state"]
        assert state in ("delivered", "cancelled")
        if state == "delivered":
            assert (out["ack"], out["cancel"]) == (204, 409), out
        else:
            assert out["cancel"] == 204 and out["ack"] in (204, 404, 409), out


def test_a_completed_partial_item_is_listed_again_after_the_cursor(inbox, sender):
    item = new_item_id()
    sender.create(item, 4)
    sender.append(item, 0, b"ab")
    r = inbox.list(partial=True).json
    assert [(i["item"], i["complete"]) for i in r["items"]] == [(item, False)]
    sender.append(item, 2, b"cd")
    r2 = inbox.list(after=r["cursor"], partial=True).json
    assert [(i["item"], i["complete"]) for i in r2["items"]] == [(item, True)]


def test_mixed_load_never_gets_a_server_error(inbox):
    import threading
    from concurrent.futures import ThreadPoolExecutor
    senders = [inbox.add_sender() for _ in range(16)]
    codes = []
    stop = threading.Event()

    def upload(s):
        rng = random.Random(s.id)
        for _ in range(15):
            item = new_item_id()
            data = rng.randbytes(rng.randint(0, 20000))
            codes.append(s.create(item, len(data)).status)
            if data:
                codes.append(s.append(item, 0, data).status)
            codes.append(s.status(item).status)

    def receive():
        after = 0
        for _ in range(500):
            if stop.is_set():
                return
            r = inbox.list(after=after, wait=1)
            codes.append(r.status)
            for it in r.json["items"]:
                codes.append(inbox.download(it["item"]).status)
                codes.append(inbox.ack(it["item"]).status)
            after = r.json["cursor"]
    rx = threading.Thread(target=receive)
    rx.start()
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(upload, senders))
    stop.set()
    rx.join(30)
    assert not [c for c in codes if c >= 500], sorted(set(codes))
    assert set(codes) <= {200, 201, 204}, sorted(set(codes))


def test_the_owner_token_cannot_upload(inbox, sender):
    item = new_item_id()
    r = inbox.owner.put(inbox.item_path(item), {"size": 1, "meta": b64(b"m")})
    assert (r.status, r.json) == (404, NOT_FOUND)
    sender.create(item, 1)
    r = inbox.owner.patch(inbox.item_path(item), b"x", content_type="application/offset+octet-stream",
                          headers={"Upload-Offset": "0"})
    assert (r.status, r.json) == (404, NOT_FOUND)


def start_patch(api, inbox, sender, item, length, first_part):
    s = api.raw_socket()
    s.sendall((f"PATCH {inbox.item_path(item)} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {sender.token}\r\nUpload-Offset: 0\r\n"
               "Content-Type: application/offset+octet-stream\r\n"
               f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode() + first_part)
    return s


@pytest.mark.parametrize("who", ["sender cancels", "owner acks"])
def test_an_item_retired_during_its_upload_stays_retired(api, inbox, sender, who):
    from conftest import metric, read_until_close, status_line
    data = os.urandom(2 * 1024 * 1024)
    item = new_item_id()
    sender.create(item, len(data))
    s = start_patch(api, inbox, sender, item, len(data), data[:1024 * 1024])
    wait_until(lambda: metric(api.metrics(), "chute_uploads_in_flight") == 1, timeout=5,
               what="the upload in flight")
    r = sender.cancel(item) if who == "sender cancels" else inbox.ack(item)
    assert r.status == 204, r
    want = "cancelled" if who == "sender cancels" else "delivered"
    try:
        s.sendall(data[1024 * 1024:])
    except OSError:
        pass  # the relay may cut the upload short
    reply = read_until_close(s, timeout=5)
    s.close()
    assert status_line(reply) != 204, reply[:300]
    assert sender.status(item).json["state"] == want
    assert inbox.listed() == [] and inbox.listed(partial=True) == []
    assert inbox.download(item).status == 404


def test_a_sender_revoked_during_its_upload_cannot_finish_it(api, inbox, sender):
    # §6.4: from the revoke on, the send token gets 404 everywhere; a PATCH
    # begun before must not commit its item after.
    from conftest import metric, read_until_close, status_line
    data = os.urandom(1024 * 1024)
    item = new_item_id()
    sender.create(item, len(data))
    s = start_patch(api, inbox, sender, item, len(data), data[:1000])
    wait_until(lambda: metric(api.metrics(), "chute_uploads_in_flight") == 1, timeout=5,
               what="the upload in flight")
    assert inbox.owner.delete(f"{inbox.path}/senders/{sender.id}").status == 204
    try:
        s.sendall(data[1000:])
    except OSError:
        pass  # the relay may cut the upload short
    reply = read_until_close(s, timeout=5)
    s.close()
    assert status_line(reply) == 404, reply[:300]
    assert inbox.listed() == []
    assert sender.status(item).status == 404


def test_deleting_an_inbox_during_an_upload_leaves_nothing_behind(relay, api, inbox, sender):
    from conftest import metric, read_until_close, status_line
    marker = b"orphan-marker-" + new_item_id().encode()
    data = marker * (2 * 1024 * 1024 // len(marker))
    item = new_item_id()
    sender.create(item, len(data))
    half = len(data) // 2
    s = start_patch(api, inbox, sender, item, len(data), data[:half])
    wait_until(lambda: metric(api.metrics(), "chute_uploads_in_flight") == 1, timeout=5,
               what="the upload in flight")
    assert inbox.owner.delete(inbox.path).status == 204
    try:
        s.sendall(data[half:])
    except OSError:
        pass
    reply = read_until_close(s, timeout=5)
    s.close()
    assert status_line(reply) != 204, reply[:300]
    wait_until(lambda: metric(api.metrics(), "chute_uploads_in_flight") == 0, timeout=5,
               what="the upload to end")
    assert sender.status(item).status == 404
    assert not [p for p in relay.data_files() if marker in p.read_bytes()], \
        "the body of an item of a deleted inbox is still on disk"
    assert metric(api.metrics(), "chute_items_stored") == 0


def test_an_item_expiring_during_its_upload_stays_expired(relay_factory):
    from conftest import metric, read_until_close, status_line
    relay = relay_factory("--item-ttl", "1s")
    api = relay.api()
    inbox = api.create_inbox()
    sender = inbox.add_sender()
    marker = b"expiry-marker-" + new_item_id().encode()
    data = marker * (1024 * 1024 // len(marker))
    item = new_item_id()
    sender.create(item, len(data))
    s = start_patch(api, inbox, sender, item, len(data), data[:1000])
    wait_until(lambda: sender.status(item).json["state"] == "expired", timeout=10,
               interval=0.1, what="the sweeper to expire the item")
    try:
        s.sendall(data[1000:])
    except OSError:
        pass
    reply = read_until_close(s, timeout=5)
    s.close()
    assert status_line(reply) != 204, reply[:300]
    assert sender.status(item).json["state"] == "expired"
    assert inbox.listed() == [] and inbox.listed(partial=True) == []
    wait_until(lambda: metric(api.metrics(), "chute_uploads_in_flight") == 0, timeout=5,
               what="the upload to end")
    assert not [p for p in relay.data_files() if marker in p.read_bytes()]


def test_create_over_another_senders_item_or_a_tombstone_conflicts(inbox):
    a, b = inbox.add_sender(), inbox.add_sender()
    item = new_item_id()
    assert a.create(item, 3, b"m").status == 201
    r = b.create(item, 3, b"m")
    assert r.status == 409 and r.json["state"] == "uploading", r
    a.append(item, 0, b"abc")
    inbox.ack(item)
    r = a.create(item, 3, b"m")
    assert r.status == 409 and r.json["state"] == "delivered", r


def test_conflicting_append_names_the_state(inbox, sender):
    item = sender.upload(b"done")
    r = sender.append(item, 0, b"x")
    assert r.status == 409 and r.json["state"] == "pending" and r.json["offset"] == 4, r


def test_content_type_parameters_are_allowed_on_append(sender):
    item = new_item_id()
    sender.create(item, 3)
    r = sender.append(item, 0, b"abc", content_type="application/offset+octet-stream; x=y")
    assert r.status == 204, r


def test_empty_append_at_the_end_of_a_complete_item_is_204(sender):
    item = sender.upload(b"done")
    r = sender.append(item, 4, b"")
    assert r.status == 204 and r.header("Upload-Offset") == "4", r


def test_head_of_a_complete_or_delivered_item_reports_its_size(inbox, sender):
    item = sender.upload(b"12345")
    assert sender.offset(item) == (5, 5)
    inbox.ack(item)
    assert sender.offset(item) == (5, 5)


def test_head_of_an_item_acked_mid_upload_keeps_the_offset_it_had(inbox, sender):
    # A tombstone keeps the offset it had (§6.5): HEAD says what the status
    # says, for a declared item and a deferred one alike.
    item = new_item_id()
    assert sender.create(item, 5).status == 201
    assert sender.append(item, 0, b"12").status == 204
    assert inbox.ack(item).status == 204
    assert sender.offset(item) == (2, 5)
    assert sender.status(item).json["offset"] == 2
    deferred = new_item_id()
    assert sender.api.put(inbox.item_path(deferred), {"deferred": True}).status == 201
    assert sender.append(deferred, 0, b"123456").status == 204
    assert inbox.ack(deferred).status == 204
    r = sender.api.head(inbox.item_path(deferred))
    assert r.status == 200 and r.header("Upload-Offset") == "6", r
    assert r.header("Upload-Defer-Length") == "1"
    assert sender.status(deferred).json["offset"] == 6


def test_cancel_of_an_expired_item_conflicts(relay_factory):
    inbox = relay_factory("--item-ttl", "1s").api().create_inbox()
    sender = inbox.add_sender()
    item = sender.upload(b"late")
    wait_until(lambda: sender.status(item).json["state"] == "expired", timeout=10,
               interval=0.1, what="expiry")
    r = sender.cancel(item)
    assert r.status == 409 and r.json["state"] == "expired", r


def test_acking_a_tombstone_keeps_its_state(inbox, sender):
    item = sender.upload(b"x")
    sender.cancel(item)
    assert inbox.ack(item).status == 204
    assert sender.status(item).json["state"] == "cancelled"


def test_a_patch_in_progress_on_a_cancelled_item_gets_409_cancelled(api, inbox, sender):
    import json
    from conftest import metric, read_until_close, status_line
    data = os.urandom(2 * 1024 * 1024)
    item = new_item_id()
    sender.create(item, len(data))
    s = start_patch(api, inbox, sender, item, len(data), data[:1024 * 1024])
    wait_until(lambda: metric(api.metrics(), "chute_uploads_in_flight") == 1, timeout=5,
               what="the upload in flight")
    assert sender.cancel(item).status == 204
    try:
        s.sendall(data[1024 * 1024:])
    except OSError:
        pass
    reply = read_until_close(s, timeout=5)
    s.close()
    assert status_line(reply) == 409, reply[:300]
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["state"] == "cancelled"


def test_deleting_an_inbox_answers_its_long_polls_at_once(inbox):
    import threading
    import time
    out = {}

    def poll():
        out["r"] = inbox.list(wait=30)
        out["t"] = time.monotonic()
    t = threading.Thread(target=poll, daemon=True)
    t.start()
    from conftest import metric
    wait_until(lambda: metric(inbox.owner.metrics(), "chute_longpolls_waiting") == 1,
               timeout=5, what="the lister waiting")
    t0 = time.monotonic()
    assert inbox.owner.delete(inbox.path).status == 204
    t.join(10)
    assert out["r"].status == 404
    assert out["t"] - t0 < 1


def test_a_refused_append_with_a_body_is_answered_not_reset(sender):
    item = new_item_id()
    sender.create(item, 8 * 1024 * 1024)
    body = os.urandom(4 * 1024 * 1024)
    r = sender.append(item, 5, body)  # wrong offset, no Expect: 100-continue
    assert r.status == 409 and r.json["offset"] == 0, r
    r = sender.append(item, 0, body, content_type="text/plain")
    assert r.status == 415, r
    r = sender.append(item, 0, body + body + b"x")
    assert r.status == 413, r
    assert sender.append(item, 0, body).status == 204


def _cached_bytes(path):
    """Bytes of path in the page cache, by util-linux fincore."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def test_a_big_body_does_not_stay_in_the_relays_memory(relay, inbox, sender):
    # 40 MiB in one PATCH, then downloaded whole and by a range: the relay
    # hands the body's pages back behind itself both times (lib/pagecache.h),
    # and every byte still comes back as sent.
    size = 40 << 20
    data = random.Random(7).randbytes(size)
    item = sender.upload(data)
    body = relay.data_dir / "items" / f"{inbox.id}.{item}"
    assert body.stat().st_size == size
    assert _cached_bytes(body) < size // 2
    r = inbox.download(item)
    assert r.status == 200 and hashlib.sha256(r.body).digest() == hashlib.sha256(data).digest()
    assert _cached_bytes(body) < size // 2
    r = inbox.download(item, f"bytes={9 << 20}-{(30 << 20) + 4}")
    want = hashlib.sha256(data[9 << 20:(30 << 20) + 5]).digest()
    assert r.status == 206 and hashlib.sha256(r.body).digest() == want


def test_a_body_its_owner_follows_stays_cached_for_the_owner(relay, inbox, sender):
    # The owner reads an item still uploading (its durable prefix): the
    # relay then keeps what the owner has yet to read in the page cache as
    # the upload goes on, instead of handing it back behind the writer and
    # reading it from the disk again (lib/pagecache.h, pagecache_follow).
    item = new_item_id()
    assert sender.api.put(sender.inbox.item_path(item), {"deferred": True}).status == 201
    data = random.Random(8).randbytes(48 << 20)
    assert sender.append(item, 0, data[:8 << 20]).status == 204
    r = inbox.download(item)                 # the prefix; the follower's hold
    assert r.status == 200 and r.body == data[:8 << 20]
    assert sender.append(item, 8 << 20, data[8 << 20:]).status == 204   # within its grace
    body = relay.data_dir / "items" / f"{inbox.id}.{item}.part"
    assert _cached_bytes(body) >= 36 << 20   # the 40 MiB after the prefix, but the last steps'
    r = inbox.download(item, f"bytes={8 << 20}-")
    assert r.status == 206 and hashlib.sha256(r.body).digest() == \
        hashlib.sha256(data[8 << 20:]).digest()
