"""PROTOCOL §6.5–6.6: uploading, listing, downloading, acking items."""

import hashlib
import os
import random
import socket

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
    raw = api.raw((head + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                   "5\r\nhello\r\n0\r\n\r\n").encode())
    assert raw.startswith(b"HTTP/1.1 411"), raw[:200]
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
    assert r.status in (400, 409), (offset, r)
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
        assert r.header("Content-Range") in ("bytes */10", None)


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


def test_resume_after_a_connection_dropped_mid_append(api, inbox, sender):
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


def test_prefix_of_a_dropped_append_matches_what_was_sent(api, inbox, sender):
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
