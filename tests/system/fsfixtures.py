"""Fixtures for the chutefs system tests (test_fs_*.py).

``chute`` mounts a real ``chutefs`` on a temporary folder over a device
state prepared with ``build/tools/chute_fixture`` (the same devstate and
cache calls pairtool and the downloader use), with one peer ``home`` whose
age identity the test holds, so sealed items can be checked with stock
``age -d`` (``age_file`` makes an item's age file as the uploader sends it,
with ``build/tools/chute_blob``). Teardown unmounts, waits for the process, and fails on any
sanitizer report in its stderr. Every wait is bounded.
"""

import base64
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD, SANITIZER_PATTERNS, SLOW, binary, inbox_cache, wait_until

TEMP_SUFFIXES = ("~", ".part", ".crdownload", ".tmp")


def run(*args, check=True, **kw):
    return subprocess.run([str(a) for a in args], check=check, capture_output=True, **kw)


class Chute:
    """One device: state folder, mount point, its peer ``home``."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.home = tmp / "state"
        self.mnt = tmp / "mnt"
        self.mnt.mkdir()
        self.fixture = binary("tools/chute_fixture") if (BUILD / "tools/chute_fixture").exists() \
            else pytest.fail("build/tools/chute_fixture missing: run make")
        self.exe = binary("chutefs")
        run(self.fixture, "init", self.home, "abroad")
        self.peer = "home"
        self.peer_key = self.add_identity("home")
        self.peer_recipient = run("age-keygen", "-y", self.peer_key).stdout.decode().strip()
        self.link_key = os.urandom(32).hex()
        out = run(self.fixture, "add-peer", self.home, "home", self.peer_recipient, self.link_key)
        assert out.stdout.decode().strip() == "home"
        self.proc = None
        self.log = tmp / "chutefs.stderr"
        self.logs = []

    def add_identity(self, name):
        key = self.tmp / f"{name}.key"
        run("age-keygen", "-o", key)
        return key

    # --- the process --------------------------------------------------------
    def mount(self, env=None):
        log = open(self.tmp / f"chutefs.{len(self.logs)}.stderr", "wb")
        self.logs.append(Path(log.name))
        # These tests are about the mount's local behaviour: no uploader
        # (its relay is a closed port anyway); test_sync_*.py run it.
        env = dict(os.environ, CHUTE_UPLOADER="off", **(env or {}))
        self.proc = subprocess.Popen([str(self.exe), "-H", str(self.home), str(self.mnt), "-f"],
                                     stdout=log, stderr=log, env=env)
        log.close()
        wait_until(lambda: os.path.ismount(self.mnt) or self.proc.poll() is not None,
                   timeout=10, what="chutefs to mount")
        if not os.path.ismount(self.mnt):
            raise AssertionError(f"chutefs exited {self.proc.returncode}: {self.stderr()}")

    def unmount(self):
        if self.proc is None:
            return
        if os.path.ismount(self.mnt):
            run("fusermount3", "-u", self.mnt, check=False)
        try:
            self.proc.wait(timeout=10 * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            run("fusermount3", "-uz", self.mnt, check=False)
        self.proc = None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None
        run("fusermount3", "-uz", self.mnt, check=False)
        wait_until(lambda: not os.path.ismount(self.mnt), timeout=5, what="unmount")

    def stderr(self):
        return b"".join(p.read_bytes() for p in self.logs if p.exists()).decode(errors="replace")

    def check_sanitizers(self):
        data = b"".join(p.read_bytes() for p in self.logs if p.exists())
        for pat in SANITIZER_PATTERNS:
            assert not pat.search(data), f"sanitizer report in chutefs stderr:\n{data.decode(errors='replace')}"

    # --- paths --------------------------------------------------------------
    @property
    def outbox(self):
        return self.mnt / "outbox" / self.peer

    @property
    def inbox(self):
        return self.mnt / "inbox" / self.peer

    # --- the queue and blobs --------------------------------------------------
    def db(self):
        con = sqlite3.connect(str(self.home / "chutefs.db"), timeout=10)
        con.row_factory = sqlite3.Row
        return con

    def inbox_db(self):
        """The inbox cache: its index (inbox.db), apart from the queue's
        chutefs.db, with its chunk file (inbox-data.db) attached."""
        return inbox_cache(self.home)

    def rows(self, where="1=1", args=()):
        with self.db() as con:
            return [dict(r) for r in con.execute(
                f"SELECT * FROM queue WHERE {where} ORDER BY created, rowid", args)]

    def active(self):
        return self.rows("state IN (0,1,2)")

    def active_paths(self):
        return sorted(r["path"] for r in self.active())

    def blob(self, item_id):
        """The item's sealed plaintext: a hard link to its staging file."""
        return self.home / "spool" / "sealed" / f"{item_id}.plain"

    def age_file(self, item_id):
        """The item's age file, byte for byte what the uploader sends."""
        out = self.tmp / f"{item_id}.age"
        run(binary("tools/chute_blob"), self.home, item_id, out)
        return out

    def decrypt(self, item_id, key=None):
        age = self.age_file(item_id)
        try:
            return run("age", "-d", "-i", key or self.peer_key, age).stdout
        finally:
            age.unlink()

    def open_meta(self, item_id):
        out = run(self.fixture, "open-meta", self.home, self.peer, item_id)
        return json.loads(out.stdout)

    def item(self, path):
        rows = [r for r in self.active() if r["path"] == path]
        assert len(rows) == 1, f"{path}: {rows}"
        return rows[0]

    def receive(self, path, data: bytes, mode="644", mtime=1700000000, item=None):
        """Put a received file into the cache (as the downloader will)."""
        src = self.tmp / f"recv-{os.urandom(6).hex()}"
        src.write_bytes(data)
        item = item or base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        path_arg = path if isinstance(path, bytes) else path.encode()
        out = subprocess.run([str(self.fixture).encode(), b"receive", bytes(self.home), b"home",
                              item.encode(), path_arg, bytes(src), mode.encode(), str(mtime).encode()],
                             check=True, capture_output=True)
        src.unlink()
        return out.stdout.rstrip(b"\n")

    def status(self):
        return (self.mnt / "status").read_text()


def header_mac(blob: bytes) -> str:
    """The age header MAC of a blob, hex (the last header line '--- MAC')."""
    i = blob.index(b"\n--- ")
    end = blob.index(b"\n", i + 1)
    mac = blob[i + 5:end]
    return base64.b64decode(mac + b"=" * (-len(mac) % 4)).hex()


@contextlib.contextmanager
def mounted(c):
    """c mounted for the with block; unmounted and checked for sanitizer
    reports after it."""
    c.mount()
    try:
        yield c
    finally:
        c.unmount()
        c.check_sanitizers()


@pytest.fixture
def chute(tmp_path):
    with mounted(Chute(tmp_path)) as c:
        yield c
