"""End to end: two paired devices, both mounted, a real relay between them.

Files go in through abroad's outbox/home/ with ordinary tools and must come
out byte-identical in home's inbox/abroad/, once each; the sender's entry
leaves its outbox when home has the file. Every wait is bounded.
"""

import hashlib
import os
import shutil
import sqlite3
import subprocess
import tarfile
import time

import pytest

from conftest import SLOW, inbox_cache, wait_until
from pairtool import Device, pair
from test_sync_upload import RELAY_ARGS, Mount, free_port


def tree_digest(root):
    """{relative path: sha256} of every regular file under root."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


class Pair:
    def __init__(self, tmp, relay):
        self.relay = relay
        self.home = Device(tmp / "dev-home", "home", relay.url)
        self.abroad = Device(tmp / "dev-abroad", "abroad", relay.url)
        self.home.init()
        self.abroad.init()
        to_abroad, to_home = pair(self.home, self.abroad)
        assert (to_abroad, to_home) == ("abroad", "home")
        (tmp / "a").mkdir()
        (tmp / "h").mkdir()
        self.tx = Mount(self.abroad, tmp / "a")
        self.rx = Mount(self.home, tmp / "h")
        self.tx.mount()
        self.rx.mount()

    @property
    def outbox(self):
        return self.tx.mnt / "outbox" / "home"

    @property
    def inbox(self):
        return self.rx.mnt / "inbox" / "abroad"

    def wait_arrived(self, expected, timeout=60):
        wait_until(lambda: tree_digest(self.inbox) == expected, timeout=timeout,
                   what=f"{len(expected)} files in home's inbox")

    def close(self):
        for m in (self.tx, self.rx):
            try:
                m.unmount()
            finally:
                m.check_sanitizers()


@pytest.fixture
def two(tmp_path, relay_factory):
    # A fixed port, so a relay stopped and started again is the same address.
    p = Pair(tmp_path, relay_factory(*RELAY_ARGS, listen=f"127.0.0.1:{free_port()}"))
    try:
        yield p
    finally:
        p.close()


def test_everyday_tools_deliver_byte_identical_files(two, tmp_path):
    src = tmp_path / "src"
    (src / "tree" / "sub").mkdir(parents=True)
    (src / "tree" / "a.txt").write_bytes(os.urandom(1000))
    (src / "tree" / "sub" / "b.bin").write_bytes(os.urandom(200_000))
    (src / "single.pdf").write_bytes(os.urandom(70_000))
    (src / "rsynced.dat").write_bytes(os.urandom(65_537))
    (src / "empty").write_bytes(b"")
    (src / "Grüße – 写真.jpg").write_bytes(os.urandom(4096))
    tar_src = tmp_path / "tarred"
    (tar_src / "x").mkdir(parents=True)
    (tar_src / "x" / "in-tar.txt").write_bytes(os.urandom(3000))
    with tarfile.open(tmp_path / "t.tar", "w") as t:
        t.add(tar_src / "x", arcname="x")

    subprocess.run(["cp", str(src / "single.pdf"), str(src / "empty"),
                    str(src / "Grüße – 写真.jpg"), str(two.outbox)], check=True)
    subprocess.run(["cp", "-r", str(src / "tree"), str(two.outbox)], check=True)
    subprocess.run(["rsync", str(src / "rsynced.dat"), str(two.outbox) + "/"], check=True)
    subprocess.run(["tar", "-xf", str(tmp_path / "t.tar"), "-C", str(two.outbox)], check=True)
    moved = tmp_path / "moved.log"
    moved.write_bytes(os.urandom(12_345))
    expected_moved = hashlib.sha256(moved.read_bytes()).hexdigest()
    subprocess.run(["mv", str(moved), str(two.outbox)], check=True)

    expected = {k: v for k, v in tree_digest(src).items()}
    expected.update({"x/in-tar.txt": tree_digest(tar_src)["x/in-tar.txt"],
                     "moved.log": expected_moved})
    two.wait_arrived(expected)
    # The sender's entries leave once home has them; folders may stay.
    wait_until(lambda: not any(f for _, _, f in os.walk(two.outbox)), timeout=60,
               what="abroad's outbox to empty")
    # Each item arrived exactly once: no collision-renamed duplicates.
    assert sorted(tree_digest(two.inbox)) == sorted(expected)


def test_both_directions_at_once(two):
    back = two.rx.mnt / "outbox" / "abroad"
    there = os.urandom(100_000)
    here = os.urandom(100_001)
    (two.outbox / "there.bin").write_bytes(there)
    (back / "here.bin").write_bytes(here)
    two.wait_arrived({"there.bin": hashlib.sha256(there).hexdigest()})
    arrived = two.tx.mnt / "inbox" / "home" / "here.bin"
    wait_until(lambda: arrived.exists() and arrived.read_bytes() == here, timeout=60,
               what="the reply in abroad's inbox")


def test_relay_down_then_up_delivers_queue(two):
    two.relay.stop()
    files = {f"offline-{i}.txt": os.urandom(10_000 + i) for i in range(5)}
    for name, data in files.items():
        (two.outbox / name).write_bytes(data)   # close() returned: durably queued
    wait_until(lambda: "relay: unreachable" in two.tx.status(), timeout=20,
               what="abroad's status to see the relay down")
    assert os.listdir(two.inbox) == []
    two.relay.start()
    two.wait_arrived({n: hashlib.sha256(d).hexdigest() for n, d in files.items()},
                     timeout=120)


def test_inbox_file_can_be_copied_out_and_deleted(two, tmp_path):
    data = os.urandom(300_000)
    (two.outbox / "keep.bin").write_bytes(data)
    two.wait_arrived({"keep.bin": hashlib.sha256(data).hexdigest()})
    shutil.copy(two.inbox / "keep.bin", tmp_path / "copied")
    assert (tmp_path / "copied").read_bytes() == data
    os.unlink(two.inbox / "keep.bin")
    assert os.listdir(two.inbox) == []
    assert "stored: 0\n" in two.rx.status()


def test_blob_tampered_on_the_relay_is_refused_and_its_sender_is_told(two, tmp_path):
    """A relay (or disk) that changes a stored blob: home refuses it and
    shows nothing, and abroad keeps the file, saying it was refused."""
    two.rx.unmount()
    (tmp_path / "src.bin").write_bytes(os.urandom(300_000))
    subprocess.run(["cp", str(tmp_path / "src.bin"), str(two.outbox / "doc.bin")], check=True)
    wait_until(lambda: two.tx.state("doc.bin") == "on relay", timeout=30, what="the upload")
    item = two.tx.row("doc.bin")["id"]
    (blob,) = [p for p in two.relay.data_files() if p.name.endswith("." + item)]
    with open(blob, "r+b") as f:
        f.seek(150_000)
        b = f.read(1)
        f.seek(150_000)
        f.write(bytes([b[0] ^ 0x20]))
    two.rx.mount()
    wait_until(lambda: "quarantined: 1\n" in (two.rx.mnt / "status").read_text(),
               timeout=30, what="home to quarantine it")
    assert os.listdir(two.inbox) == []
    wait_until(lambda: "home refused it" in two.tx.status(), timeout=60,
               what="abroad to learn that home refused it")
    # nothing is lost: the file stays in abroad's outbox, with the reason
    assert (two.outbox / "doc.bin").read_bytes() == (tmp_path / "src.bin").read_bytes()
    assert b"refused" in os.getxattr(two.outbox / "doc.bin", "user.chute.error")


def stored_prefix_chunks(mount):
    """Chunks of unfinished downloads in a mount's inbox cache."""
    try:
        con = inbox_cache(mount.home)
        try:
            return con.execute("SELECT count(*) FROM chunks JOIN data ON chunks.data = data.id "
                               "WHERE data.complete = 0").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def test_a_file_still_being_written_is_already_on_its_way_but_arrives_only_whole(two):
    h = hashlib.sha256()
    with open(two.outbox / "recording.wav", "wb", buffering=0) as f:
        for _ in range(24):
            b = os.urandom(1 << 20)
            h.update(b)
            f.write(b)
        # home has stored a prefix already, and shows nothing of it
        wait_until(lambda: stored_prefix_chunks(two.rx) >= 128, timeout=30 * SLOW,
                   what="home to store what came while the file is open")
        assert os.listdir(two.inbox) == []
        b = os.urandom(777_777)
        h.update(b)
        f.write(b)
    two.wait_arrived({"recording.wav": h.hexdigest()}, timeout=60 * SLOW)
    assert stored_prefix_chunks(two.rx) == 0
    wait_until(lambda: os.listdir(two.outbox) == [], timeout=60, what="abroad's outbox to empty")


def test_an_edit_behind_what_was_sent_starts_it_over_and_home_gets_the_final_bytes(two):
    data = bytearray(os.urandom(20 << 20))
    with open(two.outbox / "draft.bin", "w+b", buffering=0) as f:
        for i in range(0, 16 << 20, 1 << 20):
            f.write(data[i:i + (1 << 20)])
        wait_until(lambda: stored_prefix_chunks(two.rx) >= 128, timeout=30 * SLOW,
                   what="home to store what came while the file is open")
        f.seek(4096)
        f.write(b"changed my mind")             # bytes home already has
        data[4096:4096 + 15] = b"changed my mind"
        f.seek(0, os.SEEK_END)
        f.write(data[16 << 20:])
    two.wait_arrived({"draft.bin": hashlib.sha256(bytes(data)).hexdigest()}, timeout=60 * SLOW)
    # the first try was dropped at home, nothing of it kept
    wait_until(lambda: stored_prefix_chunks(two.rx) == 0, timeout=10, what="the dropped try")
    assert os.listdir(two.inbox) == ["draft.bin"]


def test_a_browser_download_into_the_outbox_arrives_once_under_its_name(two):
    # Firefox holds the name with an empty file, downloads into NAME.part
    # beside it, and renames that over the empty one at the end.
    film = os.urandom(3_000_000)
    open(two.outbox / "movie.mp4", "wb").close()
    time.sleep(0.05)
    with open(two.outbox / "movie.mp4.part", "wb") as f:
        for i in range(0, len(film), 500_000):
            f.write(film[i:i + 500_000])
            f.flush()
            time.sleep(0.5)                 # a download takes its time
    wait_until(lambda: "a download beside it" in two.tx.status(), timeout=10,
               what="the empty one to wait for its download")
    assert os.listdir(two.inbox) == []
    os.rename(two.outbox / "movie.mp4.part", two.outbox / "movie.mp4")
    two.wait_arrived({"movie.mp4": hashlib.sha256(film).hexdigest()})
    # an empty file with no download beside it still goes
    open(two.outbox / "empty.txt", "wb").close()
    two.wait_arrived({"movie.mp4": hashlib.sha256(film).hexdigest(),
                      "empty.txt": hashlib.sha256(b"").hexdigest()})
