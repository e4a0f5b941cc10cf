"""PROTOCOL §6.2–6.4: health, metrics, inboxes, senders, capabilities."""

import base64
import hashlib
import re
import secrets
import sqlite3

from conftest import (B64URL_ID, B64URL_TOKEN, NOT_FOUND, Inbox, Sender, downgrade_schema, metric,
                      new_item_id, parse_prometheus)


def test_health_reports_ok_and_version(api):
    r = api.health()
    assert r.status == 200
    assert r.header("Content-Type", "").startswith("application/json")
    assert r.json == {"status": "ok", "version": "0.1.0"}


def test_metrics_are_prometheus_text_with_the_documented_series(api):
    api.health()
    r = api.get("/metrics")
    assert r.status == 200
    ctype = r.header("Content-Type", "")
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
    m = parse_prometheus(r.body.decode())
    names = {name for name, _ in m}
    for name in ("chute_items_stored", "chute_bytes_stored", "chute_uploads_in_flight",
                 "chute_longpolls_waiting", "chute_pairings_active",
                 "chute_http_requests_total"):
        assert name in names, f"{name} missing from /metrics"
    assert metric(m, "chute_http_requests_total", code="200") >= 1


def test_metrics_count_stored_items_and_bytes(api, inbox, sender):
    before = api.metrics()
    sender.upload(b"x" * 1000)
    sender.upload(b"y" * 24)
    after = api.metrics()
    assert metric(after, "chute_items_stored") - metric(before, "chute_items_stored") == 2
    assert metric(after, "chute_bytes_stored") - metric(before, "chute_bytes_stored") == 1024


def test_metrics_count_what_a_schema_3_database_held(relay):
    """The item counts of /metrics are kept as items change (a count
    scanned every item and tombstone for each scrape): a database from
    before is counted once, when it is upgraded."""
    inbox = relay.api().create_inbox()
    sender = inbox.add_sender()
    kept = sender.upload(b"x" * 100)
    acked = sender.upload(b"y" * 50)
    assert inbox.ack(acked).status == 204
    half = new_item_id()
    assert sender.create(half, 30).status == 201
    assert sender.append(half, 0, b"z" * 7).status == 204
    relay.stop()
    downgrade_schema(relay, 3)
    relay.start()
    api = relay.api()
    m = api.metrics()
    assert (metric(m, "chute_items_stored"), metric(m, "chute_bytes_stored")) == (2, 107)
    sender = Sender(Inbox(api, inbox.id, inbox.owner_token), sender.id, sender.token)
    assert sender.append(half, 7, b"z" * 23).status == 204
    assert sender.cancel(kept).status == 204
    m = api.metrics()
    assert (metric(m, "chute_items_stored"), metric(m, "chute_bytes_stored")) == (1, 30)


def test_metrics_forget_the_items_of_a_deleted_inbox(api, inbox, sender):
    other = api.create_inbox()
    other.add_sender().upload(b"o" * 11)
    sender.upload(b"a" * 5)
    half = new_item_id()
    assert sender.create(half, 9).status == 201
    assert sender.append(half, 0, b"b" * 4).status == 204
    m = api.metrics()
    assert (metric(m, "chute_items_stored"), metric(m, "chute_bytes_stored")) == (3, 20)
    assert inbox.owner.delete(inbox.path).status == 204
    m = api.metrics()
    assert (metric(m, "chute_items_stored"), metric(m, "chute_bytes_stored")) == (1, 11)


def test_metrics_count_requests_by_status_code(api):
    before = metric(api.metrics(), "chute_http_requests_total", code="404") or 0
    for _ in range(3):
        assert api.get("/v1/no-such-thing").status == 404
    after = metric(api.metrics(), "chute_http_requests_total", code="404")
    assert after - before == 3


def test_create_inbox_returns_id_and_owner_token(api):
    for body in (b"", b"{}"):
        r = api.post("/v1/inboxes", body, content_type="application/json")
        assert r.status == 201, r
        j = r.json
        assert set(j) == {"inbox", "owner_token"}
        assert B64URL_ID.match(j["inbox"]), j
        assert B64URL_TOKEN.match(j["owner_token"]), j


def test_creating_inboxes_is_rate_limited_per_client(relay_factory):
    # Each inbox brings its own quota: a loop of creates must not be one
    # client's way around every quota.
    relay = relay_factory("--inbox-creates-per-min", "3")
    api = relay.api()
    for _ in range(3):
        assert api.post("/v1/inboxes", b"", token=None).status == 201
    r = api.post("/v1/inboxes", b"", token=None)
    assert r.status == 429, r
    assert int(r.header("Retry-After")) >= 1 and r.json["retry_after"] >= 1
    assert "inboxes" in r.json["error"]
    assert api.health().status == 200


def test_every_inbox_gets_its_own_id_and_token(api):
    boxes = [api.create_inbox() for _ in range(5)]
    assert len({b.id for b in boxes}) == 5
    assert len({b.owner_token for b in boxes}) == 5


def test_get_inbox_reports_counts_and_default_quotas(inbox):
    assert inbox.info() == {"inbox": inbox.id, "items": 0, "bytes": 0,
                            "quota_items": 10000, "quota_bytes": 100 * 2**30,
                            "senders": 0}


def test_inbox_counts_undelivered_items_and_their_declared_sizes(inbox):
    s = inbox.add_sender()
    inbox.add_sender()
    done = s.upload(b"a" * 300)
    assert s.create(new_item_id(), 10).status == 201  # uploading: declared size counts
    info = inbox.info()
    assert (info["senders"], info["items"], info["bytes"]) == (2, 2, 310)
    inbox.ack(done)
    info = inbox.info()
    assert (info["items"], info["bytes"]) == (1, 10)


def test_every_answer_says_no_store(api, inbox, sender):
    item = sender.upload(b"x")
    for r in (api.health(), api.get("/metrics"), api.get("/nope"), inbox.owner.get(inbox.path),
              inbox.download(item), sender.status(item), api.post("/v1/health", b""),
              api.get(inbox.path)):
        assert r.header("Cache-Control") == "no-store", r


def test_logs_never_contain_a_token(relay_factory):
    relay = relay_factory("--log-level", "debug")
    api = relay.api()
    inbox = api.create_inbox()
    s = inbox.add_sender()
    item = s.upload(b"logged?")
    inbox.ack(item)
    api.get(inbox.path, token="W" * 43)  # a wrong token is a secret guess too
    a = api.post("/v1/pair", {}).json
    c = api.post(f"/v1/pair/{a['nameplate']}/claim", {}).json
    relay.stop()
    log = relay.stderr()
    for t in (inbox.owner_token, s.token, a["token"], c["token"], "W" * 43):
        assert t not in log


def test_missing_inbox_is_not_found(api, inbox):
    r = api.get("/v1/inboxes/AAAAAAAAAAAAAAAAAAAAAA", token=inbox.owner_token)
    assert r.status == 404
    assert r.json == NOT_FOUND


def test_wrong_token_looks_like_missing_inbox(api, inbox):
    other = api.create_inbox()
    missing = api.get("/v1/inboxes/AAAAAAAAAAAAAAAAAAAAAA", token=inbox.owner_token)
    for token in (None, "", "x" * 43, other.owner_token, inbox.owner_token[:-1] + "A"
                  if inbox.owner_token[-1] != "A" else inbox.owner_token[:-1] + "B"):
        r = api.get(inbox.path, token=token)
        assert (r.status, r.body) == (missing.status, missing.body), token
    # the other verbs of an inbox too
    for method, path in (("DELETE", inbox.path), ("POST", inbox.path + "/senders"),
                         ("GET", inbox.path + "/items?after=0"),
                         ("DELETE", inbox.path + "/senders/AAAAAAAAAAAAAAAAAAAAAA")):
        r = api.request(method, path, token=other.owner_token)
        assert (r.status, r.json) == (404, NOT_FOUND), (method, path)


def test_malformed_authorization_header_looks_like_missing_inbox(api, inbox):
    for value in ("Basic " + base64.b64encode(b"a:b").decode(), "Bearer", "Bearer  ",
                  inbox.owner_token, "bearer", "Bearer " + inbox.owner_token + "x"):
        r = api.get(inbox.path, token=None, headers={"Authorization": value})
        assert (r.status, r.json) == (404, NOT_FOUND), value


def test_send_token_cannot_manage_the_inbox(inbox, sender):
    api = sender.api
    assert (api.get(inbox.path).status, api.get(inbox.path).json) == (404, NOT_FOUND)
    assert api.post(inbox.path + "/senders", b"").status == 404
    assert api.delete(inbox.path).status == 404
    assert api.get(inbox.path + "/items?after=0").status == 404
    assert inbox.info()["senders"] == 1


def test_delete_inbox_forgets_it_and_its_items(relay, inbox, sender):
    marker = b"chute-marker-" + new_item_id().encode()
    body = marker * 100
    item = sender.upload(body)
    assert any(marker in p.read_bytes() for p in relay.data_files())
    r = inbox.owner.delete(inbox.path)
    assert r.status == 204, r
    assert inbox.owner.get(inbox.path).status == 404
    assert inbox.download(item).status == 404
    assert sender.status(item).status == 404
    assert sender.create(new_item_id(), 1).status == 404
    assert not [p for p in relay.data_files() if marker in p.read_bytes()], \
        "item body still on disk after its inbox was deleted"


def test_add_sender_returns_id_and_send_token(inbox):
    s1, s2 = inbox.add_sender(), inbox.add_sender()
    assert B64URL_ID.match(s1.id) and B64URL_TOKEN.match(s1.token)
    assert s1.id != s2.id and s1.token != s2.token
    assert s1.token != inbox.owner_token


def test_revoked_send_token_gets_not_found_everywhere(inbox):
    s = inbox.add_sender()
    done = s.upload(b"delivered later")
    half = new_item_id()
    assert s.create(half, 10).status == 201
    assert s.append(half, 0, b"12345").status == 204
    r = inbox.owner.delete(f"{inbox.path}/senders/{s.id}")
    assert r.status == 204, r
    checks = [
        s.create(new_item_id(), 1),
        s.append(half, 5, b"67890"),
        s.api.head(inbox.item_path(half)),
        s.status(done),
        s.status(half),
        s.cancel(done),
        s.create(half, 10),
    ]
    for r in checks:
        assert r.status == 404, r
        if r.body:  # HEAD has none
            assert r.json == NOT_FOUND


def test_revoked_senders_items_stay_for_the_owner(inbox):
    s = inbox.add_sender()
    item = s.upload(b"still here")
    assert inbox.owner.delete(f"{inbox.path}/senders/{s.id}").status == 204
    assert item in inbox.listed_ids()
    assert inbox.download(item).body == b"still here"
    assert inbox.info()["senders"] == 0


def test_revoking_one_sender_leaves_the_others(inbox):
    a, b = inbox.add_sender(), inbox.add_sender()
    assert inbox.owner.delete(f"{inbox.path}/senders/{a.id}").status == 204
    assert b.create(new_item_id(), 0).status == 201


def test_revoking_unknown_sender_is_not_found(inbox):
    r = inbox.owner.delete(f"{inbox.path}/senders/AAAAAAAAAAAAAAAAAAAAAA")
    assert (r.status, r.json) == (404, NOT_FOUND)


MAX_SENDERS = 1000  # PROTOCOL §6.4


def sender_indexes(relay):
    """The columns of each index on the senders table."""
    con = sqlite3.connect(relay.database())
    try:
        names = [n for (n,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'senders'")]
        return {n: [row[2] for row in con.execute(f"PRAGMA index_info({n})")] for n in names}
    finally:
        con.close()


def test_send_tokens_are_looked_up_by_an_index_on_inbox_and_token_hash(relay, inbox, sender):
    """Checking a send token must cost one index lookup, not a comparison
    with every sender of the inbox under the store's lock (a flood of
    made-up tokens on an inbox of many senders stalled the relay). The
    lookup's cost is for make bench; here: the index is there and used."""
    assert ["inbox", "token_hash"] in sender_indexes(relay).values()
    con = sqlite3.connect(relay.database())
    plan = " ".join(str(r[-1]) for r in con.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM senders WHERE inbox = ?1 AND token_hash = ?2",
        (inbox.id, b"\0" * 32)))
    con.close()
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
    assert sender.create(new_item_id(), 0).status == 201


def test_a_schema_2_database_gets_the_sender_index_and_its_tokens_still_work(relay):
    inbox = relay.api().create_inbox()
    sender = inbox.add_sender()
    relay.stop()
    downgrade_schema(relay, 2)
    assert ["inbox", "token_hash"] not in sender_indexes(relay).values()
    relay.start()
    assert ["inbox", "token_hash"] in sender_indexes(relay).values()
    inbox = Inbox(relay.api(), inbox.id, inbox.owner_token)
    sender = Sender(inbox, sender.id, sender.token)
    assert sender.create(new_item_id(), 0).status == 201
    assert inbox.info()["senders"] == 1


def test_an_inbox_has_at_most_1000_senders(relay, inbox):
    """Senders per inbox are capped: 507, like the inbox's other quotas,
    until one is revoked. The first MAX_SENDERS - 1 are written straight
    into the database (a thousand requests would only be slower)."""
    first = inbox.add_sender()
    con = sqlite3.connect(relay.database(), timeout=10)
    with con:
        con.executemany(
            "INSERT INTO senders(id, inbox, token_hash, created) VALUES (?, ?, ?, 0)",
            ((secrets.token_urlsafe(16), inbox.id, hashlib.sha256(secrets.token_bytes(32)).digest())
             for _ in range(MAX_SENDERS - 2)))
    con.close()
    last = inbox.add_sender()
    assert inbox.info()["senders"] == MAX_SENDERS
    r = inbox.owner.post(f"{inbox.path}/senders", b"")
    assert r.status == 507 and "error" in r.json, r
    assert inbox.info()["senders"] == MAX_SENDERS
    # the senders there keep working, and a revoke makes room again
    assert first.create(new_item_id(), 0).status == 201
    assert last.create(new_item_id(), 0).status == 201
    assert inbox.owner.delete(f"{inbox.path}/senders/{first.id}").status == 204
    assert inbox.add_sender().create(new_item_id(), 0).status == 201


def test_send_token_of_one_inbox_is_useless_on_another(api, sender):
    other = api.create_inbox()
    r = sender.api.put(other.item_path(new_item_id()), {"size": 1, "meta": "bWV0YQ=="})
    assert (r.status, r.json) == (404, NOT_FOUND)


def test_private_relay_needs_access_token_to_create_inboxes(relay_factory):
    relay = relay_factory(access_token="s3cret-access")
    bare = relay.api(access_token=None)
    r = bare.post("/v1/inboxes", b"")
    assert r.status == 401 and "error" in r.json
    r = bare.post("/v1/inboxes", b"", headers={"Chute-Access-Token": "wrong"})
    assert r.status == 401 and "error" in r.json
    box = relay.api().create_inbox()  # with the token
    # the inbox's own capabilities need no access token
    s = box.add_sender()  # owner token only; bare client below
    bare_sender = bare.with_token(s.token)
    assert bare_sender.put(box.item_path(new_item_id()),
                           {"size": 0, "meta": "bWV0YQ=="}).status == 201
    assert bare.with_token(box.owner_token).get(box.path).status == 200
    assert bare.health().status == 200


def test_relay_files_never_contain_a_token_in_clear(relay, api, inbox, sender):
    item = sender.upload(b"payload")
    s2 = inbox.add_sender()
    pair = api.post("/v1/pair", {}).json
    claim = api.post(f"/v1/pair/{pair['nameplate']}/claim", {}).json
    tokens = [inbox.owner_token, sender.token, s2.token, pair["token"], claim["token"]]
    inbox.ack(item)
    relay.stop()  # let it checkpoint and close everything
    for path in relay.data_files():
        data = path.read_bytes()
        for t in tokens:
            raw = base64.urlsafe_b64decode(t + "=")
            assert t.encode() not in data, f"token in clear in {path}"
            assert raw not in data, f"raw token bytes in {path}"
    assert relay.stop() == 0


def test_inbox_ids_are_not_sequential(api):
    ids = [api.create_inbox().id for _ in range(3)]
    raw = [base64.urlsafe_b64decode(i + "==") for i in ids]
    assert len(set(r[:8] for r in raw)) == 3
    assert all(re.match(r"^[A-Za-z0-9_-]{22}$", i) for i in ids)
