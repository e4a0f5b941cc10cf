"""The uploader (fs/uploader.c) against a real relay and a real pairing.

Two device state folders are paired with real pairtool processes; only the
sending device ("abroad") is mounted. The test plays the receiving device
("home") through the relay API with home's owner token and inbox id, read
from its state DB: list, download, decrypt with stock `age -d` and home's
exported identity, ack. Every wait is bounded.
"""

import contextlib
import errno
import grp
import hashlib
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import (SANITIZER_PATTERNS, SLOW, Api, GateProxy, Inbox, StatusProxy, binary,
                      faults_env, small_tmpfs, wait_until)
from pairtool import Device, pair

RELAY_ARGS = ("--pair-allocs-per-min", "1000", "--pair-claims-per-min", "1000")
STATE = "user.chute.state"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_random(path, size, chunk=1 << 20):
    """Write size random bytes to path (through the mount) in chunks; returns
    the sha256 of what was written."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            b = os.urandom(min(chunk, left))
            h.update(b)
            f.write(b)
            left -= len(b)
    return h.hexdigest()


class Mount:
    """chutefs over the sending device's state folder, uploader on."""

    def __init__(self, device, tmp, relative=False):
        self.relative = relative   # -H and the mount point relative to cwd tmp
        self.dev = device
        self.home = device.home
        self.mnt = tmp / "mnt"
        self.mnt.mkdir()
        self.tmp = tmp
        self.exe = binary("chutefs")
        self.proc = None
        self.logs = []

    def mount(self):
        log_path = self.tmp / f"chutefs.{len(self.logs)}.stderr"
        self.logs.append(log_path)
        env = {k: v for k, v in os.environ.items() if k != "CHUTE_UPLOADER"}
        with open(log_path, "wb") as log:
            home, mnt = (os.path.relpath(self.home, self.tmp), os.path.relpath(self.mnt, self.tmp)) \
                if self.relative else (str(self.home), str(self.mnt))
            self.proc = subprocess.Popen([str(self.exe), "-H", home, mnt, "-f"], cwd=self.tmp,
                                         stdout=log, stderr=log, env=env)
        wait_until(lambda: os.path.ismount(self.mnt) or self.proc.poll() is not None,
                   timeout=10, what="chutefs to mount")
        assert os.path.ismount(self.mnt), f"chutefs exited: {self.stderr()}"

    def unmount(self):
        if self.proc is None:
            return
        if os.path.ismount(self.mnt):
            subprocess.run(["fusermount3", "-u", str(self.mnt)], check=False)
        try:
            self.proc.wait(timeout=30 * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            subprocess.run(["fusermount3", "-uz", str(self.mnt)], check=False)
            raise AssertionError("chutefs did not exit after unmount")
        finally:
            self.proc = None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None
        subprocess.run(["fusermount3", "-uz", str(self.mnt)], check=False)
        wait_until(lambda: not os.path.ismount(self.mnt), timeout=5, what="unmount")

    def stderr(self):
        return b"".join(p.read_bytes() for p in self.logs if p.exists()).decode(errors="replace")

    def check_sanitizers(self):
        data = self.stderr().encode()
        for pat in SANITIZER_PATTERNS:
            assert not pat.search(data), f"sanitizer report in chutefs stderr:\n{data.decode()}"

    @property
    def outbox(self):
        return self.mnt / "outbox" / "home"

    def status(self):
        return (self.mnt / "status").read_text()

    def rows(self, where="1=1", args=()):
        con = sqlite3.connect(str(self.home / "chutefs.db"), timeout=10)
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute(
                f"SELECT * FROM queue WHERE {where} ORDER BY created, rowid", args)]
        finally:
            con.close()

    def row(self, path):
        rows = self.rows("path=? AND state IN (0,1,2)", (path,))
        assert len(rows) == 1, rows
        return rows[0]

    def state(self, name):
        try:
            return os.getxattr(self.outbox / name, STATE).decode()
        except FileNotFoundError:
            return None


class Receiver:
    """The home device, played through the relay API with its owner token."""

    def __init__(self, device, relay, tmp):
        row = device.device_row()
        self.relay = relay
        self.inbox_id = row["inbox"]
        self.owner_token = row["owner_token"]
        self.key = tmp / "home.key"
        self.key.write_text(device.run("export-identity", check=True).stdout)
        os.chmod(self.key, 0o600)
        self.tmp = tmp

    @property
    def inbox(self):
        return Inbox(Api(self.relay.url), self.inbox_id, self.owner_token)

    def complete(self):
        return {i["item"]: i for i in self.inbox.all_listed()}

    def status(self, item):
        r = self.inbox.status(item)
        return r.json["state"] if r.status == 200 else r.status

    def download(self, item):
        """Stream the item's body to a file (never all in memory)."""
        out = self.tmp / f"{item}.age"
        conn = http.client.HTTPConnection("127.0.0.1", self.relay.port, timeout=60 * SLOW)
        try:
            conn.request("GET", f"{self.inbox.path}/items/{item}/data",
                         headers={"Authorization": f"Bearer {self.owner_token}"})
            r = conn.getresponse()
            assert r.status == 200, (r.status, r.read()[:200])
            with open(out, "wb") as f:
                for block in iter(lambda: r.read(1 << 20), b""):
                    f.write(block)
        finally:
            conn.close()
        return out

    def decrypt_sha(self, item):
        """sha256 of the plaintext of item, decrypted by stock age."""
        blob = self.download(item)
        plain = self.tmp / f"{item}.plain"
        subprocess.run(["age", "-d", "-i", str(self.key), "-o", str(plain), str(blob)],
                       check=True, capture_output=True, timeout=120 * SLOW)
        # age writes -o lazily: an empty plaintext leaves no file at all
        digest = sha(plain) if plain.exists() else hashlib.sha256(b"").hexdigest()
        blob.unlink()
        plain.unlink(missing_ok=True)
        return digest

    def ack(self, item):
        r = self.inbox.ack(item)
        assert r.status == 204, r


def paired_and_mounted(tmp_path, url):
    """abroad and home, paired through the relay at url, abroad mounted:
    (Mount of abroad, home, abroad's name at home, home's name abroad)."""
    abroad = Device(tmp_path / "abroad", "abroad", url)
    home = Device(tmp_path / "home", "home", url)
    abroad.init()
    home.init()
    name_at_home, name_abroad = pair(home, abroad)
    m = Mount(abroad, tmp_path)
    m.mount()
    return m, home, name_at_home, name_abroad


@pytest.fixture
def sync(tmp_path, relay_factory):
    """(relay, Mount of abroad, Receiver home, abroad's name at home)."""
    relay = relay_factory(*RELAY_ARGS, listen=f"127.0.0.1:{free_port()}")
    m, home, name_at_home, name_abroad = paired_and_mounted(tmp_path, relay.url)
    assert name_abroad == "home"
    try:
        yield relay, m, Receiver(home, relay, tmp_path), home, name_at_home
    finally:
        m.unmount()
        m.check_sanitizers()


def wait_listed(rcv, n, timeout=30):
    return wait_until(lambda: len(rcv.complete()) >= n and rcv.complete(), timeout=timeout,
                      what=f"{n} complete item(s) on the relay")


def test_file_lands_on_relay_decrypts_and_leaves_after_ack(sync, tmp_path):
    relay, m, rcv, _, _ = sync
    seen = []
    stop = threading.Event()

    def watch():   # the xattr as a file manager would see it, sampled
        for _ in range(int(3000 * SLOW)):
            if stop.is_set():
                return
            s = m.state("doc.pdf")
            if s and (not seen or seen[-1] != s):
                seen.append(s)
            time.sleep(0.005)

    data = os.urandom(300_000)
    t = threading.Thread(target=watch)
    t.start()
    try:
        (m.outbox / "doc.pdf").write_bytes(data)
        items = wait_listed(rcv, 1)
        (item,) = items
        assert item == m.row("doc.pdf")["id"]
        assert rcv.decrypt_sha(item) == hashlib.sha256(data).hexdigest()
        wait_until(lambda: m.state("doc.pdf") == "on relay", what="on relay")
        assert "home/doc.pdf\ton relay" in m.status()
        assert "relay: reachable since " in m.status()
        rcv.ack(item)
        wait_until(lambda: not (m.outbox / "doc.pdf").exists(), timeout=10,
                   what="the delivered entry to leave the outbox")
    finally:
        stop.set()
        t.join()
    assert os.listdir(m.outbox) == []
    assert m.rows("id=?", (item,))[0]["state"] == 3          # delivered
    assert not (m.home / "spool" / "sealed" / f"{item}.plain").exists()
    assert not (m.home / "spool" / "staging" / "home" / "doc.pdf").exists()
    # the states went forward only: writing → queued → uploading N% → on relay
    order = ["writing", "queued", "uploading", "on relay", "delivered"]
    ranks = [order.index(s.split(" ")[0] if s.startswith("uploading") else s) for s in seen]
    assert ranks == sorted(ranks) and "on relay" in seen, seen
    assert "outgoing: 0\non relay: 0\n" in m.status()


def test_twenty_files_in_parallel(sync, tmp_path):
    relay, m, rcv, _, _ = sync
    datas = {f"f{i:02d}.bin": os.urandom(1000 + 7919 * i) for i in range(20)}
    errors = []

    def put(name):
        try:
            (m.outbox / name).write_bytes(datas[name])
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=put, args=(n,)) for n in datas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    listed = wait_listed(rcv, 20)
    ids = {r["id"]: r["path"] for r in m.rows("state IN (0,1,2)")}
    assert sorted(listed) == sorted(ids) and len(ids) == 20
    for item, path in ids.items():
        assert rcv.decrypt_sha(item) == hashlib.sha256(datas[path]).hexdigest()
        rcv.ack(item)
    wait_until(lambda: os.listdir(m.outbox) == [], timeout=30, what="all delivered")
    assert len(m.rows("state=3")) == 20


def test_relay_down_during_copy_then_back(sync, tmp_path):
    relay, m, rcv, _, _ = sync
    relay.stop()
    datas = {f"offline{i}.txt": os.urandom(5000 + i) for i in range(4)}
    for n, d in datas.items():
        (m.outbox / n).write_bytes(d)            # close() returned 0: durably queued
    wait_until(lambda: "relay: unreachable since " in m.status(), timeout=10,
               what="status to say unreachable")
    text = m.status()
    for n in datas:
        assert f"home/{n}\tqueued" in text or f"home/{n}\tuploading" in text, text
    wait_until(lambda: "last error: relay unreachable" in m.status(), timeout=10,
               what="the error in status")
    relay.start()
    listed = wait_listed(rcv, len(datas), timeout=60)
    ids = {r["id"]: r["path"] for r in m.rows("state IN (0,1,2)")}
    assert sorted(listed) == sorted(ids)
    for item, path in ids.items():
        assert rcv.decrypt_sha(item) == hashlib.sha256(datas[path]).hexdigest()
        rcv.ack(item)
    wait_until(lambda: os.listdir(m.outbox) == [], timeout=30, what="all delivered")
    assert "relay: reachable since " in m.status()


@contextlib.contextmanager
def gated_sync(tmp_path, relay_factory, rate):
    """sync, but abroad reaches the relay through a GateProxy that lets its
    requests through at `rate` bytes/s: (relay, Mount of abroad, Receiver
    home, the gate)."""
    relay = relay_factory(*RELAY_ARGS, listen=f"127.0.0.1:{free_port()}")
    gate = GateProxy(relay.port, toward="relay", rate=rate)
    # both through the gate: pairing binds the relay's address
    m, home, _, _ = paired_and_mounted(tmp_path, gate.url)
    try:
        yield relay, m, Receiver(home, relay, tmp_path), gate
    finally:
        m.unmount()
        gate.close()
        m.check_sanitizers()


@pytest.fixture
def slow_sync(tmp_path, relay_factory):
    """Requests at 1 MiB/s: one of a few MiB takes seconds."""
    with gated_sync(tmp_path, relay_factory, 1 << 20) as s:
        yield s


@pytest.fixture
def paced_sync(tmp_path, relay_factory):
    """Requests at 32 MiB/s: a 200 MiB file takes seconds however fast
    this machine is."""
    with gated_sync(tmp_path, relay_factory, 32 << 20) as s:
        yield s


def test_kill9_while_queued_and_uploading_then_resume_exactly_once(paced_sync, tmp_path):
    relay, m, rcv, gate = paced_sync
    big = 200 << 20
    # written under a temporary name and renamed, so none of it goes before
    # the seal (a big file written in place goes while it is written)
    big_sha = write_random(m.outbox / "big.bin.part", big)
    os.rename(m.outbox / "big.bin.part", m.outbox / "big.bin")
    small = {f"s{i}": os.urandom(20000 + i) for i in range(8)}
    for n, d in small.items():
        (m.outbox / n).write_bytes(d)
    big_row = m.row("big.bin")
    # kill while the big one is part way (its request under way: sent),
    # past the relay's first durable steps of 16 MiB
    row = wait_until(lambda: (lambda r: r if 48 << 20 <= r["sent"] < r["blob_size"] else None)(
        m.rows("id=?", (big_row["id"],))[0]), timeout=60, interval=0.005,
        what="the big item part-way up")
    m.kill9()
    durable = m.rows("id=?", (big_row["id"],))[0]["progress"]
    assert durable >= row["progress"] and durable < row["blob_size"]
    # the relay keeps the durable prefix of the request cut off
    kept = wait_until(lambda: (lambda r: r.json["offset"] if r.status == 200 and
                               r.json["offset"] >= 16 << 20 else None)(
        rcv.inbox.status(big_row["id"])), timeout=30, what="the relay's durable prefix")
    forwarded = gate.forwarded
    m.mount()
    # the resumed upload never goes back below what was durable
    samples = []
    def big_progress():
        r = m.rows("id=?", (big_row["id"],))[0]
        samples.append(r["progress"])
        return r["state"] >= 2
    wait_until(big_progress, timeout=120, interval=0.01, what="the big item on the relay")
    assert min(samples) >= durable, (durable, samples[:20])
    # and goes on from the relay's offset: the prefix it kept is not sent again
    resent = gate.forwarded - forwarded
    assert resent < row["blob_size"] - kept + (4 << 20), (resent, kept, row["blob_size"])
    listed = wait_listed(rcv, 1 + len(small), timeout=60)
    # exactly once: one relay item per file, ids unique, bytes exact
    rows = m.rows("state IN (0,1,2)")
    assert len(rows) == 1 + len(small) and len({r["id"] for r in rows}) == len(rows)
    assert sorted(listed) == sorted(r["id"] for r in rows)
    for r in rows:
        assert listed[r["id"]]["size"] == r["blob_size"]
        want = big_sha if r["path"] == "big.bin" else hashlib.sha256(small[r["path"]]).hexdigest()
        assert rcv.decrypt_sha(r["id"]) == want, r["path"]
        rcv.ack(r["id"])
    wait_until(lambda: os.listdir(m.outbox) == [], timeout=30, what="all delivered")


def test_unlink_cancels_on_relay(sync, tmp_path):
    relay, m, rcv, _, _ = sync
    # on the relay, not yet delivered
    (m.outbox / "oops.txt").write_bytes(b"not for you")
    wait_listed(rcv, 1)
    item = m.row("oops.txt")["id"]
    wait_until(lambda: m.state("oops.txt") == "on relay", what="on relay")
    os.unlink(m.outbox / "oops.txt")
    wait_until(lambda: rcv.status(item) == "cancelled", timeout=10, what="relay cancel")
    assert rcv.complete() == {}
    wait_until(lambda: m.rows("id=?", (item,))[0]["relay_cancel"] == 0, what="cancel done")
    # queued while the relay is down, after a failed attempt: deleted, it
    # never reaches the relay
    relay.stop()
    (m.outbox / "later.txt").write_bytes(b"changed my mind")
    wait_until(lambda: m.rows("path='later.txt'")[0]["attempts"] >= 1, timeout=10,
               what="an attempt")
    later = m.rows("path='later.txt'")[0]["id"]
    os.unlink(m.outbox / "later.txt")
    relay.start()
    wait_until(lambda: m.rows("id=?", (later,))[0]["relay_cancel"] == 0, timeout=60,
               what="the owed cancel done")
    assert rcv.status(later) in (404, "cancelled")
    assert rcv.complete() == {}
    assert os.listdir(m.outbox) == []


def uploading_between(m, name):
    """The file's state says uploading, with a percentage strictly between
    0 and 100: bytes noted while its request is still being sent."""
    st = m.state(name) or ""
    return st.startswith("uploading ") and st not in ("uploading 0%", "uploading 100%")


def test_progress_shows_while_one_request_is_being_sent(slow_sync):
    relay, m, rcv, gate = slow_sync
    data = os.urandom(6 << 20)          # one request (under 8 MiB: sent at its close)
    (m.outbox / "slow.bin").write_bytes(data)
    wait_until(lambda: uploading_between(m, "slow.bin"), timeout=30 * SLOW,
               what="a percentage while the request runs")
    row = m.row("slow.bin")
    # sent so far, ahead of what the relay has acknowledged as durable
    assert row["progress"] < row["sent"] < row["blob_size"]
    assert gate.forwarded < row["blob_size"]            # the request is not through
    wait_until(lambda: m.state("slow.bin") == "on relay", timeout=60 * SLOW, what="on relay")
    assert rcv.decrypt_sha(row["id"]) == hashlib.sha256(data).hexdigest()


def test_unlink_while_a_request_is_being_sent_cancels_it_then(slow_sync):
    relay, m, rcv, gate = slow_sync
    (m.outbox / "oops.bin").write_bytes(os.urandom(6 << 20))
    wait_until(lambda: uploading_between(m, "oops.bin"), timeout=30 * SLOW,
               what="the request under way")
    item = m.row("oops.bin")["id"]
    os.unlink(m.outbox / "oops.bin")
    wait_until(lambda: rcv.status(item) == "cancelled", timeout=10, what="relay cancel")
    assert gate.forwarded < 6 << 20                      # cut short, not sent to its end
    assert rcv.complete() == {}


def test_peer_unpaired_keeps_item_with_clear_error(sync, tmp_path):
    relay, m, rcv, home, name_at_home = sync
    home.run("unpair", name_at_home, check=True)
    (m.outbox / "after.txt").write_bytes(b"nobody home")
    want = "peer home no longer accepts files (unpaired?)"
    wait_until(lambda: want in m.status(), timeout=10, what="the unpaired error in status")
    assert m.state("after.txt") == "queued"
    assert os.getxattr(m.outbox / "after.txt", "user.chute.error").decode() == want
    r = m.row("after.txt")
    assert r["state"] == 0 and r["last_error"] == want
    assert r["next_attempt"] - time.time() > 60          # a long backoff, not a busy loop
    assert (m.home / "spool" / "sealed" / f"{r['id']}.plain").exists()   # never dropped
    peers = json.loads(m.dev.run("peers", "--json", check=True).stdout)
    assert [p.get("state") for p in peers] == ["gone"]
    assert rcv.complete() == {}


def test_relay_killed_mid_upload_resumes_intact(sync, tmp_path):
    relay, m, rcv, _, _ = sync
    size = 96 << 20
    digest = write_random(m.outbox / "movie.mkv", size)
    item = m.row("movie.mkv")["id"]
    wait_until(lambda: 0 < m.rows("id=?", (item,))[0]["progress"], timeout=60,
               interval=0.005, what="the upload part-way")
    relay.kill(signal.SIGKILL)
    relay.start()
    listed = wait_listed(rcv, 1, timeout=120)
    assert list(listed) == [item]
    assert rcv.decrypt_sha(item) == digest
    rcv.ack(item)
    wait_until(lambda: os.listdir(m.outbox) == [], timeout=30, what="delivered")


def test_an_item_whose_relay_commit_failed_is_committed_by_the_retry(tmp_path, relay_factory):
    # The relay's store fails the commit just after the body was made final
    # (a disk error between the two): the relay holds every byte of an item
    # still "uploading". The uploader's retry must get it committed, not
    # find all the bytes there, call it sent and wait for a delivery that
    # cannot come.
    relay = relay_factory(*RELAY_ARGS, listen=f"127.0.0.1:{free_port()}",
                          env=faults_env(wal_after_rename=".part"))
    m, home, _, _ = paired_and_mounted(tmp_path, relay.url)
    try:
        rcv = Receiver(home, relay, tmp_path)
        data = os.urandom(300_000)
        (m.outbox / "doc.pdf").write_bytes(data)
        item = m.row("doc.pdf")["id"]
        assert list(wait_listed(rcv, 1, timeout=30)) == [item]
        assert rcv.decrypt_sha(item) == hashlib.sha256(data).hexdigest()
        assert "COMMIT: disk I/O error" in relay.stderr()   # the injected failure happened
        assert "cannot rollback" not in relay.stderr()
    finally:
        m.unmount()
        m.check_sanitizers()


def test_orphaned_sealed_files_are_swept_after_start(sync, tmp_path):
    relay, m, rcv, _, _ = sync
    sealed = m.home / "spool" / "sealed"
    m.unmount()
    orphans = [sealed / "AAAAAAAAAAAAAAAAAAAAAA.age",      # an earlier version's blob
               sealed / "CCCCCCCCCCCCCCCCCCCCCC.plain",    # linked, row never inserted
               sealed / "BBBBBBBBBBBBBBBBBBBBBB.age.tmp",  # an earlier version's half seal
               sealed / "cow-Xy12Zq.tmp"]                   # a copy-on-write cut short
    for o in orphans:
        o.write_bytes(b"no queue row names this")
    m.mount()
    assert (m.mnt / "status").exists()        # serving before any sweep
    wait_until(lambda: not any(o.exists() for o in orphans), timeout=15,
               what="the orphan sweep")


def test_relative_state_folder(sync, tmp_path):
    """-H ./abroad works for the background threads too (fuse_main may
    change the working folder before they open the state)."""
    relay, m, rcv, _, _ = sync
    m.unmount()
    rel = Mount.__new__(Mount)
    rel.__dict__.update(m.__dict__, relative=True)
    rel.mount()
    try:
        (rel.outbox / "rel.txt").write_bytes(b"relative")
        (item,) = wait_listed(rcv, 1)
        assert rcv.decrypt_sha(item) == hashlib.sha256(b"relative").hexdigest()
    finally:
        rel.unmount()
        m.logs = rel.logs


def test_pairtool_status_shows_the_mounts_queue(sync, tmp_path):
    relay, m, rcv, home, _ = sync
    st = json.loads(home.run("status", "--json", check=True).stdout)
    assert st["queue"] is None                       # never mounted: no chutefs.db made
    assert not (home.home / "chutefs.db").exists()
    (m.outbox / "report.txt").write_bytes(b"r" * 1234)
    wait_listed(rcv, 1)
    wait_until(lambda: m.state("report.txt") == "on relay", what="on relay")
    st = json.loads(m.dev.run("status", "--json", check=True).stdout)
    q = st["queue"]
    assert q["relay"] == "reachable" and q["outgoing"] == 0 and q["on_relay"] == 1
    (p,) = q["pending"]
    assert p["peer"] == "home" and p["path"] == "report.txt" and p["state"] == "on relay"
    assert p["size"] == 1234 and p["percent"] == 100 and p["uploaded"] == p["blob_size"]
    assert p["last_error"] == "" and p["id"] == m.row("report.txt")["id"]
    text = m.dev.run("status", check=True).stdout
    assert "on relay:  1\n" in text and "  home/report.txt  on relay" in text


def nginx_proxy(tmp, upstream, max_body):
    """nginx on a free loopback port proxying to upstream (the README's
    settings) with client_max_body_size max_body; returns (url, Popen).

    The port is free when free_port() looks but may be taken before nginx
    binds it, so an nginx that exits on "Address already in use" is started
    again on another port; and only an answer that nginx itself signed
    (Server: nginx) counts as nginx being up."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not exe:
        pytest.skip("nginx is not installed")
    user = f"user {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name};" \
        if os.getuid() == 0 else ""
    for attempt in range(3):
        d = tmp / f"nginx{attempt}"
        (d / "tmp").mkdir(parents=True)
        port = free_port()
        (d / "nginx.conf").write_text(f"""{user}
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size {max_body};
    location / {{
      proxy_pass {upstream};
      proxy_http_version 1.1;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_read_timeout 90s;
    }}
  }}
}}
""")
        proc = subprocess.Popen([exe, "-p", str(d), "-e", str(d / "error.log"), "-c", str(d / "nginx.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"

        def up():
            if proc.poll() is not None:
                return "exited"
            r = Api(url, timeout=2).get("/v1/health")
            return r.status == 200 and (r.header("Server") or "").startswith("nginx")

        try:
            got = wait_until(up, timeout=10, errors=(OSError,), what="nginx in front of the relay")
        except AssertionError as e:
            proc.terminate()  # the master stops its worker too; a kill would orphan it
            proc.wait(timeout=10)
            raise AssertionError(f"{e}\n{nginx_said(proc)}") from e
        if got != "exited":
            return url, proc
        if "Address already in use" not in nginx_said(proc):
            raise AssertionError(f"nginx did not start: {nginx_said(proc)}")
    raise AssertionError(f"nginx found no free port in 3 tries: {nginx_said(proc)}")


def nginx_said(proc):
    """nginx's state and its error log (its -e argument), for a failure message."""
    state = "running" if proc.poll() is None else f"exited with {proc.returncode}"
    try:
        log = Path(proc.args[proc.args.index("-e") + 1]).read_text(errors="replace")[-4000:]
    except OSError as e:
        log = f"(no error log: {e})"
    return f"nginx {state}; its error log:\n{log}"


def test_proxy_body_limit_makes_patches_smaller_not_the_upload_fail(tmp_path, relay_factory):
    relay = relay_factory(*RELAY_ARGS, listen=f"127.0.0.1:{free_port()}")
    url, nginx = nginx_proxy(tmp_path, relay.url, "3m")
    try:
        proxied_upload_arrives(tmp_path, relay, url)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{nginx_said(nginx)}") from e
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)


def proxied_upload_arrives(tmp_path, relay, url):
    """Two devices paired through the proxy at url; a 20 MiB file goes
    through it in PATCHes under the proxy's body limit and decrypts."""
    m, home, _, _ = paired_and_mounted(tmp_path, url)
    try:
        rcv = Receiver(home, relay, tmp_path)
        sha = write_random(m.outbox / "big.iso", 20 << 20)
        item = m.row("big.iso")["id"]
        wait_until(lambda: item in rcv.complete(), timeout=60, what="the item through the proxy")
        assert rcv.decrypt_sha(item) == sha
        assert "refuses" in m.stderr() and "bytes at a time" in m.stderr()
        assert m.row("big.iso")["last_error"] == ""
    finally:
        m.unmount()
        m.check_sanitizers()


# --- a big file goes while it is still being written (fs/growing.h) -------------

GROW = 8 << 20   # GROWING_MIN_BYTES: a file this big by appends starts going


def early_items(rcv):
    """The items of deferred length on the relay: files still being written."""
    return {i["item"]: i for i in rcv.inbox.listed(partial=True) if i.get("deferred")}


def early_item_with_bytes(rcv):
    e = early_items(rcv)
    return next((i for i, v in e.items() if v["offset"] > 0), None)


@pytest.fixture
def writers(sync):
    """Writers still open when a test fails are closed before the unmount
    (an open file would keep the mount busy)."""
    ws = []
    yield ws
    for w in ws:
        try:
            w.close()
        except OSError:
            pass


class Writer:
    """An open file in the outbox, written in 1 MiB appends; sha256 of all."""

    def __init__(self, path, writers, mode="wb"):
        writers.append(self)
        self.f = open(path, mode, buffering=0)
        self.h = hashlib.sha256()
        self.data = bytearray()

    def append(self, mib, keep=False):
        for _ in range(mib):
            b = os.urandom(1 << 20)
            self.h.update(b)
            if keep:
                self.data += b
            self.f.write(b)

    def close(self):
        self.f.close()


def test_a_big_file_goes_while_it_is_written_and_arrives_once(sync, writers):
    relay, m, rcv, _, _ = sync
    w = Writer(m.outbox / "growing.bin", writers)
    w.append(16)
    # still open: its item is on the relay, of deferred length, with bytes
    item = wait_until(lambda: early_item_with_bytes(rcv), timeout=30 * SLOW,
                      what="the early item growing on the relay")
    assert m.state("growing.bin") == "writing"
    assert [r["id"] for r in m.rows("growing=1 AND state IN (0,1)")] == [item]
    # not queued (still being written), but shown as going
    assert "growing.bin" not in m.status().split("\nwriting:\n")[0]
    wait_until(lambda: "home/growing.bin\tsending while written\t" in m.status() and
               not m.status().endswith("\t0 bytes on relay\n"), timeout=10,
               what="status to show the file going while written")
    assert rcv.complete() == {}
    w.append(9)                                 # ends inside a chunk
    w.f.write(b"tail")
    w.h.update(b"tail")
    w.close()
    # the same item, declared at the close and committed; no second one
    listed = wait_listed(rcv, 1, timeout=60 * SLOW)
    assert list(listed) == [item]
    (row,) = m.rows()
    assert row["id"] == item and row["growing"] == 0 and row["size"] == (25 << 20) + 4
    assert listed[item]["size"] == row["blob_size"]
    assert rcv.decrypt_sha(item) == w.h.hexdigest()
    rcv.ack(item)
    wait_until(lambda: os.listdir(m.outbox) == [], timeout=30, what="delivered")


def test_a_small_file_is_not_sent_before_its_close(sync, writers):
    relay, m, rcv, _, _ = sync
    w = Writer(m.outbox / "small.bin", writers)
    w.append(GROW // (1 << 20) - 1)
    time.sleep(1.5)                             # room for a wrong early start
    assert early_items(rcv) == {} and m.rows() == []
    w.close()
    (item,) = wait_listed(rcv, 1)
    assert rcv.decrypt_sha(item) == w.h.hexdigest()


@pytest.mark.parametrize("how", ["write-behind", "truncate", "temporary-name", "unlink"])
def test_a_change_other_than_an_append_cancels_the_early_item(sync, writers, how):
    relay, m, rcv, _, _ = sync
    path = m.outbox / "changed.bin"
    w = Writer(path, writers, "w+b")
    w.append(12, keep=True)
    item = wait_until(lambda: early_item_with_bytes(rcv), timeout=30 * SLOW,
                      what="the early item growing on the relay")
    if how == "write-behind":                   # an edit of bytes already sent
        w.f.seek(1000)
        w.f.write(b"EDITED")
        w.data[1000:1006] = b"EDITED"
        w.f.seek(0, os.SEEK_END)
    elif how == "truncate":
        w.f.truncate(5 << 20)
        del w.data[5 << 20:]
        w.f.seek(0, os.SEEK_END)
    elif how == "temporary-name":
        os.rename(path, m.outbox / "changed.bin.part")
    else:
        os.unlink(path)
    wait_until(lambda: rcv.status(item) == "cancelled", timeout=30 * SLOW,
               what="the early item cancelled on the relay")
    tail = os.urandom(300_000)
    w.f.write(tail)
    w.data += tail
    w.close()
    if how == "temporary-name":                 # the usual way: sent at the rename
        os.rename(m.outbox / "changed.bin.part", path)
    if how == "unlink":
        time.sleep(1.5)
        assert rcv.complete() == {} and m.rows("state IN (0,1,2)") == []
        return
    # the file as it is at its close goes as a new item
    listed = wait_listed(rcv, 1, timeout=60 * SLOW)
    (new,) = listed
    assert new != item
    assert rcv.decrypt_sha(new) == hashlib.sha256(bytes(w.data)).hexdigest()
    assert m.rows("id=?", (item,))[0]["state"] == 4


def test_kill9_while_a_file_is_written_cancels_its_early_item_at_restart(sync, writers):
    relay, m, rcv, _, _ = sync
    w = Writer(m.outbox / "interrupted.bin", writers)
    w.append(12)
    item = wait_until(lambda: early_item_with_bytes(rcv), timeout=30 * SLOW,
                      what="the early item growing on the relay")
    m.kill9()
    try:
        w.close()
    except OSError:
        pass                                    # the mount is gone under it
    m.mount()
    # never closed: never delivered, and the relay copy goes
    wait_until(lambda: rcv.status(item) == "cancelled", timeout=30 * SLOW,
               what="the early item cancelled after the restart")
    (row,) = m.rows("id=?", (item,))
    assert row["state"] == 4
    wait_until(lambda: m.rows("id=?", (item,))[0]["relay_cancel"] == 0, timeout=10,
               what="the owed cancel done")
    assert rcv.complete() == {}


def test_relay_down_while_a_file_is_written_then_back_delivers_it_once(sync, tmp_path):
    relay, m, rcv, _, _ = sync
    # The writer is a process of its own: starting the relay from this one
    # closes an inherited copy of the fd, and that flush would seal it.
    src = tmp_path / "src.bin"
    digest = write_random(src, 16 << 20)
    relay.stop()
    dd = subprocess.Popen(["dd", f"of={m.outbox / 'offline.bin'}", "bs=1M", "iflag=fullblock",
                           "status=none"], stdin=subprocess.PIPE)
    try:
        with open(src, "rb") as f:
            dd.stdin.write(f.read(12 << 20))
            dd.stdin.flush()
            wait_until(lambda: any(r["attempts"] >= 1 and r["growing"] for r in m.rows()),
                       timeout=20 * SLOW, what="an early attempt while the relay is down")
            # pairtool shows it going, with why it waits (safe to run here:
            # the open fd is dd's, not this process's)
            shown = wait_until(lambda: (lambda q: q if q["writing"] and q["writing"][0]
                                        ["last_error"] else None)(json.loads(
                                   m.dev.run("status", "--json", check=True).stdout)["queue"]),
                               timeout=10, what="pairtool status to show the file")
            assert [x["path"] for x in shown["writing"]] == ["offline.bin"]
            assert "relay unreachable" in shown["writing"][0]["last_error"]
            assert shown["pending"] == []
            relay.start()
            item = wait_until(lambda: early_item_with_bytes(rcv), timeout=60 * SLOW,
                              what="the early item once the relay is back")
            dd.stdin.write(f.read())
        dd.stdin.close()
        assert dd.wait(timeout=60 * SLOW) == 0
    finally:
        if dd.poll() is None:
            dd.kill()
            dd.wait(timeout=10)
    listed = wait_listed(rcv, 1, timeout=60 * SLOW)
    assert list(listed) == [item]
    assert rcv.decrypt_sha(item) == digest


def test_files_being_written_do_not_hold_up_a_closed_one(sync, writers):
    relay, m, rcv, _, _ = sync
    growing = [Writer(m.outbox / f"recording-{i}.wav", writers) for i in range(3)]
    for w in growing:
        w.append(10)
    wait_until(lambda: len(m.rows("growing=1 AND state IN (0,1)")) == 3, timeout=10,
               what="three files sent while written")
    (m.outbox / "note.txt").write_bytes(b"closed, so it goes now")
    # one worker always stays for closed files, however many are open
    listed = wait_listed(rcv, 1, timeout=20 * SLOW)
    (note,) = [r["id"] for r in m.rows("path='note.txt'")]
    assert list(listed) == [note]
    for w in growing:
        w.close()
    listed = wait_listed(rcv, 4, timeout=60 * SLOW)
    for r in m.rows("state IN (0,1,2)"):
        if r["path"].startswith("recording-"):
            i = int(r["path"][len("recording-")])
            assert rcv.decrypt_sha(r["id"]) == growing[i].h.hexdigest()


def test_delivery_leaves_a_newer_unsent_file_at_the_same_path(tmp_path, relay_factory):
    # "notes.txt" is on the relay; meanwhile it is written anew and the disk
    # fills, so the new one stays local, unsent. The old one's delivery must
    # not delete the new one.
    relay = relay_factory(*RELAY_ARGS, listen=f"127.0.0.1:{free_port()}")
    with small_tmpfs(tmp_path / "abroad", "16m"):
        m, home, _, _ = paired_and_mounted(tmp_path, relay.url)
        try:
            rcv = Receiver(home, relay, tmp_path)
            (m.outbox / "notes.txt").write_bytes(os.urandom(100_000))
            item = next(iter(wait_listed(rcv, 1)))
            ballast = m.home / "ballast"
            ballast.write_bytes(b"\0" * (14 << 20))
            fd = os.open(m.outbox / "notes.txt", os.O_WRONLY | os.O_TRUNC)
            try:
                with pytest.raises(OSError) as e:
                    for _ in range(16):
                        os.write(fd, os.urandom(1 << 20))
                assert e.value.errno == errno.ENOSPC
            finally:
                os.close(fd)
            ballast.unlink()
            assert m.state("notes.txt") == "write failed"
            rcv.ack(item)
            wait_until(lambda: m.rows("id=? AND state=3", (item,)), timeout=30,
                       what="the old item seen delivered")
            time.sleep(0.5)
            assert m.state("notes.txt") == "write failed"
            assert os.path.getsize(m.outbox / "notes.txt") > 0
        finally:
            m.unmount()
            m.check_sanitizers()


def test_a_file_open_when_delivered_leaves_the_outbox_at_its_close(sync, tmp_path):
    relay, m, rcv, _, _ = sync
    (m.outbox / "photo.jpg").write_bytes(os.urandom(50_000))
    item = next(iter(wait_listed(rcv, 1)))
    with open(m.outbox / "photo.jpg", "rb") as viewer:   # a file manager's preview
        rcv.ack(item)
        wait_until(lambda: m.rows("id=? AND state=3", (item,)), timeout=30,
                   what="the item seen delivered")
        assert m.state("photo.jpg") == "delivered"
        assert len(viewer.read()) == 50_000
    wait_until(lambda: not (m.outbox / "photo.jpg").exists(), timeout=10,
               what="the delivered file to leave the outbox")
    # one written after its delivery, while still open, stays: it is new
    (m.outbox / "draft.txt").write_bytes(b"one")
    item = next(iter(wait_listed(rcv, 1)))
    with open(m.outbox / "draft.txt", "r+b") as f:
        rcv.ack(item)
        wait_until(lambda: m.rows("id=? AND state=3", (item,)), timeout=30,
                   what="the item seen delivered")
        f.write(b"two")
    assert (m.outbox / "draft.txt").read_bytes() == b"two"
    assert m.state("draft.txt") in ("queued", "uploading 0%", "on relay")


def test_relay_back_after_a_long_outage_sends_at_once_not_after_the_backoff(sync):
    relay, m, rcv, _, _ = sync
    relay.stop()
    data = os.urandom(20_000)
    (m.outbox / "postcard.jpg").write_bytes(data)
    wait_until(lambda: "last error: relay unreachable" in m.status(), timeout=20,
               what="the failed attempt in status")
    # as after hours down: the next try is ten minutes away
    con = sqlite3.connect(str(m.home / "chutefs.db"), timeout=10)
    with con:
        con.execute("UPDATE queue SET next_attempt=? WHERE path='postcard.jpg' AND state=0",
                    (int(time.time()) + 600,))
    con.close()
    relay.start()
    item = next(iter(wait_listed(rcv, 1, timeout=45)))   # the probe sees it back within 30 s
    assert rcv.decrypt_sha(item) == hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def answered_by_proxy(tmp_path, relay_factory, method, status):
    """abroad mounted behind a StatusProxy that answers every `method`
    request with `status`: the Mount."""
    relay = relay_factory(*RELAY_ARGS)
    proxy = StatusProxy(relay.port, lambda m_, path: m_ == method)
    proxy.refuse = status
    try:
        m, _, _, _ = paired_and_mounted(tmp_path, proxy.url)
        try:
            yield m
        finally:
            m.unmount()
            m.check_sanitizers()
    finally:
        proxy.close()


def test_a_refusal_the_uploader_does_not_know_waits_long_with_its_reason(tmp_path, relay_factory):
    # A 403 (say, from a proxy in front of the relay) will not pass in a
    # second: the item waits as refusals do, 15 min or more, and says why.
    with answered_by_proxy(tmp_path, relay_factory, "PUT", 403) as m:
        (m.outbox / "doc.txt").write_bytes(b"refused")
        row = wait_until(lambda: [r for r in m.rows("path='doc.txt' AND state=0")
                                  if r["last_error"]], timeout=20,
                         what="the refusal recorded")[0]
        assert row["last_error"] == "relay refused the item: answered by the test proxy"
        assert row["next_attempt"] - time.time() > 7 * 60   # 15 min, jittered down to half
        assert "answered by the test proxy" in m.status()


def test_an_item_the_relay_fails_keeps_its_backoff_while_the_relay_answers(tmp_path,
                                                                          relay_factory):
    # A 500 for one item's bytes is an answer, not an outage: the relay's
    # coming "back" must not send that item again at once, round after round.
    with answered_by_proxy(tmp_path, relay_factory, "PATCH", 500) as m:
        (m.outbox / "flaky.bin").write_bytes(os.urandom(100_000))
        time.sleep(12)
        row = m.rows("path='flaky.bin' AND state IN (0,1)")[0]
        assert row["last_error"].startswith("relay failed: "), row["last_error"]
        # backoff 1, 2, 4, 8 s (each jittered down to half at most): 5 tries at most
        assert 2 <= row["attempts"] <= 6, row["attempts"]


def test_a_copy_created_after_its_cancel_is_deleted_when_the_first_delete_fails(
        tmp_path, relay_factory):
    # The user deletes a file while its create is on the way: the tracker's
    # DELETE comes first and finds nothing (404, done), then the create
    # lands. The worker deletes that copy itself; when that DELETE does not
    # get through either, the copy must still go, not wait out its TTL.
    relay = relay_factory(*RELAY_ARGS)
    proxy = StatusProxy(relay.port, lambda method, path: method == "DELETE")
    try:
        m, home, _, _ = paired_and_mounted(tmp_path, proxy.url)
        rcv = Receiver(home, relay, tmp_path)
        try:
            proxy.hold = lambda method, path: method == "PUT" and "/items/" in path
            (m.outbox / "oops.txt").write_bytes(b"not for you")
            wait_until(lambda: proxy.held >= 1, what="the create on its way")
            item = m.row("oops.txt")["id"]
            os.unlink(m.outbox / "oops.txt")
            wait_until(lambda: proxy.deletes and
                       m.rows("id=?", (item,))[0]["relay_cancel"] == 0,
                       what="the tracker's DELETE done: nothing there yet")
            assert rcv.status(item) == 404
            proxy.refuse = 503                    # the worker's DELETE fails
            proxy.release.set()
            wait_until(lambda: proxy.refused >= 1, what="the worker's DELETE, refused")
            assert rcv.status(item) == "uploading"   # the copy the create made
            proxy.refuse = None
            wait_until(lambda: rcv.status(item) == "cancelled", timeout=20,
                       what="the copy deleted after all")
            assert m.rows("id=?", (item,))[0]["relay_cancel"] == 0
            assert os.listdir(m.outbox) == []
        finally:
            proxy.release.set()
            m.unmount()
            m.check_sanitizers()
    finally:
        proxy.close()


from test_relay_tls import cert  # noqa: E402,F401  (the self-signed certificate fixture)


def test_a_peer_that_spells_our_relay_otherwise_still_gets_our_ca(tmp_path, relay_factory,
                                                                  cert):  # noqa: F811
    # Pairing binds the relay's origin, not its spelling: home typed the
    # host in capitals and a trailing '/'. abroad's CA file must still
    # apply to home's inbox, which is on abroad's own relay.
    relay = relay_factory(*RELAY_ARGS, tls=cert)
    abroad = Device(tmp_path / "abroad", "abroad", f"https://localhost:{relay.port}")
    home = Device(tmp_path / "home", "home", f"https://LocalHost:{relay.port}/")
    abroad.init("--cacert", cert[0])
    home.init("--cacert", cert[0])
    pair(home, abroad)
    m = Mount(abroad, tmp_path)
    m.mount()
    try:
        (m.outbox / "letter.txt").write_bytes(b"same relay")
        wait_until(lambda: m.rows("path='letter.txt' AND state=2"), timeout=20,
                   what="the item on the relay")
    finally:
        m.unmount()
        m.check_sanitizers()


def test_a_peer_on_a_relay_that_is_down_holds_up_no_one_else(tmp_path, relay_factory):
    # far's inbox is on another relay, and that one is down. Its item must
    # back off on its own (1 s doubling), while our relay, which answers,
    # releases it again at each answer — and home's files, on our relay,
    # must go as they come, the status saying our relay is reachable.
    relay = relay_factory(*RELAY_ARGS)
    abroad = Device(tmp_path / "abroad", "abroad", relay.url)
    home = Device(tmp_path / "home", "home", relay.url)
    far = Device(tmp_path / "far", "far", relay.url)
    for d in (abroad, home, far):
        d.init()
    assert pair(home, abroad)[1] == "home"
    assert pair(far, abroad)[1] == "far"
    con = sqlite3.connect(str(abroad.home / "state.db"), timeout=10)
    with con:
        con.execute("UPDATE peers SET relay_url=? WHERE name='far'",
                    (f"http://127.0.0.1:{free_port()}",))
    con.close()
    m = Mount(abroad, tmp_path)
    m.mount()
    try:
        (m.mnt / "outbox" / "far" / "stuck.txt").write_bytes(b"for far")
        wait_until(lambda: m.rows("path='stuck.txt' AND attempts>=1 AND last_error<>''"),
                   timeout=10, what="far's item failed once")
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < 15:
            name = f"note{n}.txt"
            (m.outbox / name).write_bytes(b"for home %d" % n)
            wait_until(lambda: m.rows("path=? AND state=2", (name,)), timeout=3,
                       what=f"{name} on our relay at once")
            assert "relay: unreachable" not in m.status()
            n += 1
            time.sleep(0.5)
        row = m.rows("path='stuck.txt'")[0]
        assert row["state"] in (0, 1) and row["last_error"].startswith("relay unreachable"), row
        # 0.5-1, 1-2, 2-4, 4-8 s (next tries in whole seconds): 6 tries at most
        assert row["attempts"] <= 6, row["attempts"]
    finally:
        m.unmount()
        m.check_sanitizers()


def test_an_item_whose_state_write_failed_is_not_left_uploading(tmp_path, relay_factory):
    # The relay has all of an item, but the queue cannot record it (another
    # writer holds chutefs.db past the busy timeout, as a full or stuck
    # disk would): the row must not stay "uploading" until the next mount.
    relay = relay_factory(*RELAY_ARGS)
    proxy = StatusProxy(relay.port, lambda method, path: False)
    try:
        m, _, _, _ = paired_and_mounted(tmp_path, proxy.url)
        locker = None
        try:
            proxy.hold = lambda method, path: method == "PATCH"
            (m.outbox / "ledger.txt").write_bytes(b"x" * 5000)
            wait_until(lambda: proxy.held >= 1, timeout=20, what="the PATCH on its way")
            item = m.row("ledger.txt")["id"]
            locker = sqlite3.connect(str(m.home / "chutefs.db"), timeout=10,
                                     isolation_level=None)
            locker.execute("BEGIN IMMEDIATE")
            proxy.hold = None
            proxy.release.set()
            time.sleep(24)                    # set_progress, then mark_uploaded: 10 s each
            locker.execute("ROLLBACK")
            locker.close()
            locker = None
            wait_until(lambda: m.rows("id=? AND state=2", (item,)), timeout=15,
                       what="the item recorded on the relay")
        finally:
            if locker is not None:
                locker.close()
            proxy.release.set()
            m.unmount()
            m.check_sanitizers()
    finally:
        proxy.close()


def test_a_copy_whose_create_answer_was_lost_after_its_cancel_is_deleted(tmp_path,
                                                                         relay_factory):
    # The user deletes a file while its create is on the way; the tracker's
    # DELETE comes first and finds nothing. The create then lands on the
    # relay but its answer is lost: the worker sees a network failure, not
    # a copy, and must still owe that copy a DELETE, not leave it to the TTL.
    relay = relay_factory(*RELAY_ARGS)
    proxy = StatusProxy(relay.port, lambda method, path: False)
    try:
        m, home, _, _ = paired_and_mounted(tmp_path, proxy.url)
        rcv = Receiver(home, relay, tmp_path)
        try:
            creates = lambda method, path: method == "PUT" and "/items/" in path  # noqa: E731
            proxy.hold = proxy.lose = creates
            (m.outbox / "oops.txt").write_bytes(b"not for you")
            wait_until(lambda: proxy.held >= 1, what="the create on its way")
            item = m.row("oops.txt")["id"]
            os.unlink(m.outbox / "oops.txt")
            wait_until(lambda: proxy.deletes and
                       m.rows("id=?", (item,))[0]["relay_cancel"] == 0,
                       what="the tracker's DELETE done: nothing there yet")
            assert rcv.status(item) == 404
            proxy.release.set()
            wait_until(lambda: proxy.lost >= 1, what="the create made, its answer lost")
            wait_until(lambda: rcv.status(item) == "cancelled", timeout=20,
                       what="the copy deleted after all")
            assert m.rows("id=?", (item,))[0]["relay_cancel"] == 0
        finally:
            proxy.release.set()
            m.unmount()
            m.check_sanitizers()
    finally:
        proxy.close()


def test_a_file_delivered_while_its_folder_is_renamed_leaves_the_outbox(tmp_path,
                                                                        relay_factory):
    # The tracker asks whether docs/a.txt was delivered; while it asks, the
    # folder becomes papers/. The answer "delivered" must let go of the
    # file where it is now, not at the name it had when the check began.
    relay = relay_factory(*RELAY_ARGS)
    proxy = StatusProxy(relay.port, lambda method, path: False)
    try:
        m, home, _, _ = paired_and_mounted(tmp_path, proxy.url)
        rcv = Receiver(home, relay, tmp_path)
        try:
            (m.outbox / "docs").mkdir()
            (m.outbox / "docs" / "a.txt").write_bytes(b"minutes")
            item = wait_until(lambda: m.rows("path='docs/a.txt' AND state=2"), timeout=20,
                              what="the item on the relay")[0]["id"]
            proxy.hold = lambda method, path: method == "GET" and path.endswith("/status")
            wait_until(lambda: proxy.held >= 1, timeout=20, what="a delivery check on its way")
            os.rename(m.outbox / "docs", m.outbox / "papers")
            assert m.rows("id=?", (item,))[0]["path"] == "papers/a.txt"
            rcv.ack(item)
            proxy.hold = None
            proxy.release.set()
            wait_until(lambda: m.rows("id=? AND state=3", (item,)), timeout=20,
                       what="the item seen delivered")
            wait_until(lambda: not (m.outbox / "papers" / "a.txt").exists(), timeout=10,
                       what="the delivered file to leave the outbox")
        finally:
            proxy.release.set()
            m.unmount()
            m.check_sanitizers()
    finally:
        proxy.close()
