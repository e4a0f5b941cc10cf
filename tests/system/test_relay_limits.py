"""PROTOCOL §6.8: every limit, configured small, answers its status and
leaves the relay serving."""

import time

import pytest

from conftest import SLOW, metric, new_item_id, read_until_close, status_line, wait_until


def test_undelivered_item_expires_to_an_expired_tombstone(relay_factory):
    relay = relay_factory("--item-ttl", "2s")
    inbox = relay.api().create_inbox()
    sender = inbox.add_sender()
    done = sender.upload(b"never fetched")
    half = new_item_id()
    sender.create(half, 10)
    sender.append(half, 0, b"12")
    assert inbox.listed_ids() == [done]
    wait_until(lambda: sender.status(done).json["state"] == "expired", timeout=10,
               interval=0.1, what="the item to expire")
    wait_until(lambda: sender.status(half).json["state"] == "expired", timeout=5,
               interval=0.1, what="the uploading item to expire")
    assert inbox.listed() == []
    assert inbox.listed(partial=True) == []
    assert inbox.download(done).status == 404
    assert sender.append(half, 2, b"34").status in (404, 409, 410)
    assert inbox.info()["items"] == 0
    m = relay.api().metrics()
    assert (metric(m, "chute_items_stored"), metric(m, "chute_bytes_stored")) == (0, 0)


def test_tombstones_are_forgotten_after_tombstone_ttl(relay_factory):
    relay = relay_factory("--tombstone-ttl", "1s")
    inbox = relay.api().create_inbox()
    sender = inbox.add_sender()
    item = sender.upload(b"x")
    assert inbox.ack(item).status == 204
    assert sender.status(item).json["state"] == "delivered"
    wait_until(lambda: sender.status(item).status == 404, timeout=10, interval=0.1,
               what="the tombstone to go")


def test_item_quota_is_507_until_an_item_is_delivered(relay_factory):
    inbox = relay_factory("--inbox-quota-items", "3").api().create_inbox()
    sender = inbox.add_sender()
    ids = [sender.upload(b"q") for _ in range(3)]
    r = sender.create(new_item_id(), 1)
    assert r.status == 507, r
    assert "error" in r.json
    # a retried create of an existing item is not a new item
    assert sender.create(ids[0], 1, b"meta").status == 200
    inbox.ack(ids[0])
    assert sender.create(new_item_id(), 1).status == 201


def test_byte_quota_counts_declared_sizes(relay_factory):
    inbox = relay_factory("--inbox-quota-bytes", "1000").api().create_inbox()
    sender = inbox.add_sender()
    a = new_item_id()
    assert sender.create(a, 600).status == 201  # nothing appended yet
    r = sender.create(new_item_id(), 401)
    assert r.status == 507, r
    assert sender.create(new_item_id(), 400).status == 201


def test_meta_larger_than_max_meta_is_too_large(relay_factory):
    inbox = relay_factory("--max-meta", "100").api().create_inbox()
    sender = inbox.add_sender()
    assert sender.create(new_item_id(), 1, b"m" * 100).status == 201
    r = sender.create(new_item_id(), 1, b"m" * 101)
    assert r.status == 413, r
    assert "error" in r.json


def test_default_max_meta_is_4096(sender):
    assert sender.create(new_item_id(), 1, b"m" * 4096).status == 201
    assert sender.create(new_item_id(), 1, b"m" * 4097).status == 413


def test_item_larger_than_max_item_size_is_too_large(relay_factory):
    inbox = relay_factory("--max-item-size", "1M").api().create_inbox()
    sender = inbox.add_sender()
    assert sender.create(new_item_id(), 1048576).status == 201  # sizes are binary
    r = sender.create(new_item_id(), 1048577)
    assert r.status == 413, r
    assert "error" in r.json


def test_default_max_item_size_is_64_gib(sender):
    assert sender.create(new_item_id(), 64 * 2**30).status == 201
    assert sender.create(new_item_id(), 64 * 2**30 + 1).status == 413


def test_json_body_larger_than_max_body_is_too_large(api, sender):
    big = b'{"size": 1, "meta": "bWV0YQ==", "pad": "' + b"x" * (70 * 1024) + b'"}'
    r = sender.api.put(sender.inbox.item_path(new_item_id()), big, content_type="application/json")
    assert r.status == 413, r
    r = api.post("/v1/pair", b'{"ttl": 60, "pad": "' + b"x" * (70 * 1024) + b'"}',
                 content_type="application/json")
    assert r.status == 413, r
    assert api.health().status == 200


def test_configured_max_body_applies(relay_factory):
    api = relay_factory("--max-body", "1K").api()
    r = api.post("/v1/pair", b'{"ttl": 60, "pad": "' + b"x" * 2000 + b'"}',
                 content_type="application/json")
    assert r.status == 413, r
    assert api.post("/v1/pair", {"ttl": 60}).status == 201


def test_header_too_large_is_431_or_closed_and_others_are_served(api):
    req = (b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * (16 * 1024)
           + b"\r\nConnection: close\r\n\r\n")
    raw = api.raw(req)
    assert status_line(raw) in (431, None), raw[:200]
    assert api.health().status == 200


def test_request_line_too_long_is_431_or_closed(api):
    """max_header bounds the request line (query string included) + headers."""
    long_line = (b"GET /v1/health?" + b"q" * (16 * 1024)
                 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = api.raw(long_line)
    assert status_line(raw) in (414, 431, None), raw[:200]
    assert api.health().status == 200


def held_connection(api):
    """A kept-alive connection the relay has certainly accepted."""
    s = api.raw_socket()
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5 * SLOW)
    assert s.recv(100).startswith(b"HTTP/1.1 200")
    return s


def test_connections_per_ip_are_limited(relay_factory):
    relay = relay_factory("--max-conns-per-ip", "4")
    api = relay.api()
    held = [held_connection(api) for _ in range(4)]
    try:
        fifth = api.raw(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        timeout=3)
        assert status_line(fifth) in (None, 503), fifth[:200]
    finally:
        for s in held:
            s.close()
    wait_until(lambda: api.health().status == 200, timeout=5, what="service after closing",
               errors=(OSError,))


def test_total_connections_are_limited(relay_factory):
    relay = relay_factory("--max-conns", "4")
    api = relay.api()
    held = [held_connection(api) for _ in range(4)]
    try:
        fifth = api.raw(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        timeout=3)
        assert status_line(fifth) in (None, 503), fifth[:200]
    finally:
        for s in held:
            s.close()
    wait_until(lambda: api.health().status == 200, timeout=5, what="service after closing",
               errors=(OSError,))


def test_idle_connection_is_closed_after_idle_timeout(relay_factory):
    api = relay_factory("--idle-timeout", "1").api()
    s = api.raw_socket()
    t0 = time.monotonic()
    data = read_until_close(s, timeout=10)
    elapsed = time.monotonic() - t0
    s.close()
    assert data == b"" or status_line(data) == 408, data[:200]
    assert 0.5 <= elapsed < 5 * SLOW, elapsed


def test_pair_allocations_are_rate_limited_per_ip(relay_factory):
    api = relay_factory("--pair-allocs-per-min", "2").api()
    assert api.post("/v1/pair", {}).status == 201
    assert api.post("/v1/pair", {}).status == 201
    r = api.post("/v1/pair", {})
    assert r.status == 429, r
    assert "error" in r.json
    retry = r.header("Retry-After")
    assert retry is not None and retry.isdigit() and 1 <= int(retry) <= 60, retry
    # inboxes are not pairing attempts
    assert api.post("/v1/inboxes", b"").status == 201


def test_pair_claims_are_rate_limited_per_ip(relay_factory):
    api = relay_factory("--pair-claims-per-min", "2").api()
    assert api.post("/v1/pair/999998/claim", {}).status == 404
    assert api.post("/v1/pair/999997/claim", {}).status == 404
    r = api.post("/v1/pair/999996/claim", {})
    assert r.status == 429, r
    retry = r.header("Retry-After")
    assert retry is not None and retry.isdigit() and 1 <= int(retry) <= 60, retry


def test_default_pair_allocation_limit_is_10_per_minute(api):
    statuses = [api.post("/v1/pair", {}).status for _ in range(11)]
    assert statuses == [201] * 10 + [429], statuses


@pytest.mark.parametrize("limit,value", [("--item-ttl", "5m"), ("--pair-ttl", "1h"),
                                         ("--max-item-size", "10G"), ("--max-meta", "512"),
                                         ("--inbox-quota-bytes", "1T"), ("--max-wait", "30s")])
def test_limits_accept_suffixed_values(relay_factory, limit, value):
    relay = relay_factory(limit, value)
    assert relay.api().health().status == 200


def test_cancelled_and_expired_items_free_their_quota(relay_factory):
    inbox = relay_factory("--inbox-quota-items", "1", "--item-ttl", "1s").api().create_inbox()
    sender = inbox.add_sender()
    a = new_item_id()
    assert sender.create(a, 5).status == 201
    assert sender.create(new_item_id(), 5).status == 507
    assert sender.cancel(a).status == 204
    b = new_item_id()
    assert sender.create(b, 5).status == 201
    wait_until(lambda: sender.status(b).json["state"] == "expired", timeout=10, interval=0.1,
               what="expiry")
    assert sender.create(new_item_id(), 5).status == 201
