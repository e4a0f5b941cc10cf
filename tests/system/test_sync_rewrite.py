"""A queued item's plaintext is a hard link to its staging file, encrypted
only while it is uploaded (fs/seal.c, fs/uploader.c). These tests prove that
changing the file afterwards — in place, truncated, through a handle that
was open before the seal — never changes what an earlier item sends (the
path gets a copy first), that the newest content is what arrives, and that
crashes and a damaged spool neither lose nor silently drop an item. Real
chuted, real mounts, real pairing; the receiver decrypts with stock age.
"""

import hashlib
import os
import sqlite3
import subprocess

from conftest import binary, wait_until
from test_sync_upload import STATE, sync, wait_listed, write_random  # noqa: F401  (fixture)


def digest(b):
    return hashlib.sha256(b).hexdigest()


def plain(m, item):
    return m.home / "spool" / "sealed" / f"{item}.plain"


def queued_offline(relay, m, name, data):
    """Write name with the relay down: the item stays queued (not sent)."""
    (m.outbox / name).write_bytes(data)
    return m.row(name)


def delivered_only(rcv, m, name, want, timeout=60):
    """The relay ends with exactly one complete item for name, the active
    row's, and it decrypts to want."""
    item = m.row(name)["id"]
    wait_until(lambda: list(rcv.complete()) == [item], timeout=timeout,
               what=f"only the newest item of {name} on the relay")
    assert rcv.decrypt_sha(item) == digest(want)
    rcv.ack(item)
    wait_until(lambda: name not in os.listdir(m.outbox), timeout=30, what="delivered")


def test_rewrite_in_place_of_a_queued_file_sends_the_new_content_only(sync, tmp_path):
    relay, m, rcv, _, _ = sync
    relay.stop()
    v1 = os.urandom(3 * 65536 + 100)
    first = queued_offline(relay, m, "report.pdf", v1)
    # open without O_TRUNC, a few bytes at an offset, close
    with open(m.outbox / "report.pdf", "r+b") as f:
        f.seek(65536 + 7)
        f.write(b"EDITED")
        f.flush()
        assert plain(m, first["id"]).read_bytes() == v1   # the queued copy is whole
    v2 = bytearray(v1)
    v2[65536 + 7:65536 + 13] = b"EDITED"
    assert (m.outbox / "report.pdf").read_bytes() == bytes(v2)
    second = m.row("report.pdf")
    assert second["id"] != first["id"] and second["size"] == len(v2)
    assert not plain(m, first["id"]).exists()          # replaced: its link went
    assert plain(m, second["id"]).read_bytes() == bytes(v2)
    relay.start()
    delivered_only(rcv, m, "report.pdf", bytes(v2))


def file_sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def test_rewrite_in_place_while_uploading_never_sends_a_mix(sync, tmp_path):
    relay, m, rcv, _, _ = sync
    size = 200 << 20
    v1_sha = write_random(m.outbox / "big.bin", size)
    first = m.row("big.bin")["id"]
    wait_until(lambda: 0 < m.rows("id=?", (first,))[0]["progress"] < size,
               timeout=60, interval=0.002, what="the first version part-way up")
    with open(m.outbox / "big.bin", "r+b") as f:
        for off in (5, size // 2, size - 3):     # early, middle, and in the last chunk
            f.seek(off)
            f.write(b"NEW")
            f.flush()
        # Still open, so the first item is not replaced yet: it goes on
        # uploading from its own, untouched plaintext and arrives whole.
        assert file_sha(plain(m, first)) == v1_sha
        wait_until(lambda: first in rcv.complete(), timeout=120,
                   what="the first version whole on the relay")
        assert rcv.decrypt_sha(first) == v1_sha
    v2_sha = file_sha(m.outbox / "big.bin")
    assert v2_sha != v1_sha
    second = m.row("big.bin")["id"]
    assert second != first
    delivered_only_sha(rcv, m, "big.bin", second, v2_sha, timeout=120)


def delivered_only_sha(rcv, m, name, item, sha, timeout=60):
    wait_until(lambda: list(rcv.complete()) == [item], timeout=timeout,
               what=f"only the newest item of {name} on the relay")
    assert rcv.decrypt_sha(item) == sha
    rcv.ack(item)
    wait_until(lambda: name not in os.listdir(m.outbox), timeout=30, what="delivered")


def test_truncate_then_rewrite_after_close_keeps_the_queued_copy_whole(sync, tmp_path):
    relay, m, rcv, _, _ = sync
    relay.stop()
    v1 = os.urandom(200_000)
    first = queued_offline(relay, m, "notes.txt", v1)
    # truncating open, written but not closed yet: the queued copy is intact
    f = open(m.outbox / "notes.txt", "wb")
    try:
        f.write(b"short")
        f.flush()
        assert plain(m, first["id"]).read_bytes() == v1
        assert m.state("notes.txt") == "writing"
    finally:
        f.close()
    second = m.row("notes.txt")
    assert plain(m, second["id"]).read_bytes() == b"short"
    # truncate by name to a length, then append: a copy is cut, not the item's
    os.truncate(m.outbox / "notes.txt", 3)
    third = m.row("notes.txt")
    assert plain(m, third["id"]).read_bytes() == b"sho"
    with open(m.outbox / "notes.txt", "ab") as g:
        g.write(b"rt and sweet")
    fourth = m.row("notes.txt")
    assert len({first["id"], second["id"], third["id"], fourth["id"]}) == 4
    assert (m.outbox / "notes.txt").read_bytes() == b"short and sweet"
    relay.start()
    delivered_only(rcv, m, "notes.txt", b"short and sweet")


def test_write_through_a_dup_after_the_first_close_sealed_goes_to_a_copy(sync, tmp_path):
    relay, m, rcv, _, _ = sync
    relay.stop()
    path = m.outbox / "log.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fd2 = -1
    try:
        os.write(fd, b"first line\n")
        fd2 = os.dup(fd)
        os.close(fd)                   # the kernel flushes: this close seals
        fd = -1
        first = m.row("log.txt")
        assert plain(m, first["id"]).read_bytes() == b"first line\n"
        os.write(fd2, b"second line\n")   # same handle, after the seal
        assert plain(m, first["id"]).read_bytes() == b"first line\n"
    finally:
        if fd >= 0:
            os.close(fd)
        if fd2 >= 0:
            os.close(fd2)
    second = m.row("log.txt")
    assert second["id"] != first["id"]
    assert path.read_bytes() == b"first line\nsecond line\n"
    relay.start()
    delivered_only(rcv, m, "log.txt", b"first line\nsecond line\n")


def test_two_handles_writing_after_a_seal_share_one_copy(sync, tmp_path):
    relay, m, rcv, _, _ = sync
    relay.stop()
    path = m.outbox / "shared.bin"
    v1 = os.urandom(100_000)
    first = queued_offline(relay, m, "shared.bin", v1)
    a = open(path, "r+b")
    b = open(path, "r+b")
    try:
        a.seek(0)
        a.write(b"AAAA")
        a.flush()
        b.seek(10)
        b.write(b"BBBB")
        b.flush()
        b.seek(0)
        assert b.read(4) == b"AAAA"        # b follows the copy a made
    finally:
        a.close()
        b.close()
    want = b"AAAA" + v1[4:10] + b"BBBB" + v1[14:]
    assert path.read_bytes() == want
    # a's RELEASE reaches the mount asynchronously after close(2): b's
    # close may not have been the last one yet, and then the seal that
    # replaces the first item happens at that release
    wait_until(lambda: not plain(m, first["id"]).exists(), timeout=10,
               what="the first item to be replaced")
    relay.start()
    delivered_only(rcv, m, "shared.bin", want)


def test_two_handles_released_at_once_requeue_the_file_every_time(sync):
    relay, m, _, _, _ = sync
    relay.stop()                       # only the queue is looked at
    n = 30
    first = {queued_offline(relay, m, f"pair-{i}.bin", b"v1" * 500)["id"] for i in range(n)}
    # close(2) does not wait for RELEASE: the two handles' releases often
    # run at once on two threads, and one of them must seal the change
    for i in range(n):
        path = m.outbox / f"pair-{i}.bin"
        with open(path, "r+b") as a, open(path, "r+b") as b:
            a.write(b"AAAA")
            a.flush()
            b.seek(10)
            b.write(b"BBBB")
            b.flush()
    want = b"AAAA" + (b"v1" * 500)[4:10] + b"BBBB" + (b"v1" * 500)[14:]
    rows = lambda: m.rows("state IN (0, 1)")
    wait_until(lambda: len(rows()) == n and not {r["id"] for r in rows()} & first,
               timeout=20, what=f"all {n} files queued anew")
    for i in range(n):
        assert (m.outbox / f"pair-{i}.bin").read_bytes() == want


def test_kill9_right_after_close_then_restart_delivers_the_same_bytes(sync, tmp_path):
    relay, m, rcv, _, _ = sync
    sha = write_random(m.outbox / "video.mp4", 40 << 20)
    m.kill9()                          # close() returned: it must survive this
    m.mount()
    item = m.row("video.mp4")["id"]
    wait_listed(rcv, 1, timeout=120)
    assert rcv.decrypt_sha(item) == sha
    rcv.ack(item)
    wait_until(lambda: os.listdir(m.outbox) == [], timeout=30, what="delivered")


def test_row_whose_sealed_copy_is_missing_fails_visibly_and_is_kept(sync, tmp_path):
    relay, m, rcv, _, _ = sync
    relay.stop()
    lost = queued_offline(relay, m, "lost.txt", b"the spool lost this")
    m.unmount()
    plain(m, lost["id"]).unlink()
    relay.start()
    m.mount()
    (m.outbox / "fine.txt").write_bytes(b"this one goes")
    wait_until(lambda: "missing" in m.row("lost.txt")["last_error"], timeout=30,
               what="the missing sealed copy as the item's error")
    r = m.row("lost.txt")
    assert r["id"] == lost["id"] and r["state"] == 0      # kept, not dropped
    assert "missing" in os.getxattr(m.outbox / "lost.txt", "user.chute.error").decode()
    assert "lost.txt" in m.status() and "missing" in m.status()
    # the rest of the queue is not held up by it
    fine = m.row("fine.txt")["id"]
    wait_until(lambda: fine in rcv.complete(), timeout=60, what="the other file on the relay")
    assert rcv.decrypt_sha(fine) == digest(b"this one goes")


def test_relay_blob_of_edge_sizes_decrypts_with_stock_age(sync, tmp_path):
    relay, m, rcv, _, _ = sync
    datas = {"empty": b"", "one-chunk": os.urandom(65536),
             "chunk-and-a-byte": os.urandom(65537), "three": os.urandom(3 * 65536 - 1)}
    for n, d in datas.items():
        (m.outbox / n).write_bytes(d)
    listed = wait_listed(rcv, len(datas), timeout=60)
    rows = {r["id"]: r for r in m.rows("state IN (0,1,2)")}
    assert sorted(listed) == sorted(rows)
    for item, r in rows.items():
        assert listed[item]["size"] == r["blob_size"]
        assert rcv.decrypt_sha(item) == digest(datas[r["path"]]), r["path"]


def test_item_queued_by_the_previous_version_as_an_age_blob_still_goes(sync, tmp_path):
    """A queue from before items kept their plaintext: the row has no age
    parts and its blob is sealed/<id>.age. Made here from a current row."""
    relay, m, rcv, _, _ = sync
    relay.stop()
    data = os.urandom(150_000)
    r = queued_offline(relay, m, "old.bin", data)
    m.unmount()
    sealed = m.home / "spool" / "sealed"
    subprocess.run([str(binary("tools/chute_blob")), str(m.home), r["id"],
                    str(sealed / f"{r['id']}.age")], check=True, capture_output=True)
    plain(m, r["id"]).unlink()
    con = sqlite3.connect(str(m.home / "chutefs.db"))
    with con:
        con.execute("UPDATE queue SET age_header=NULL, age_nonce=NULL, file_key=NULL "
                    "WHERE id=?", (r["id"],))
    con.close()
    relay.start()
    m.mount()
    wait_until(lambda: r["id"] in rcv.complete(), timeout=60, what="the old item on the relay")
    assert rcv.decrypt_sha(r["id"]) == digest(data)
    rcv.ack(r["id"])
    wait_until(lambda: os.listdir(m.outbox) == [], timeout=30, what="delivered")
    assert not (sealed / f"{r['id']}.age").exists()
