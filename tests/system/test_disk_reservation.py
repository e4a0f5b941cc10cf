"""Disk blocks reserved ahead of the big files Chute writes (lib/prealloc.h):
the outbox's staging file, the relay's body and the inbox database get the
next steps reserved while they grow, a finished file gives back what lies
beyond its end with its times kept, and a nearly full disk gets nothing
reserved at all."""

import ctypes
import os

import pytest

from conftest import b64, new_item_id, read_until_close, small_tmpfs, status_line, wait_until
from fsfixtures import chute, run  # noqa: F401  (fixture)

MiB = 1 << 20
STEP = 8 * MiB              # PREALLOC_STEP
MIN_FREE = 1 << 30          # PREALLOC_MIN_FREE
SLACK = 256 * 1024          # filesystem metadata blocks counted in st_blocks


def allocated(path):
    return os.stat(path).st_blocks * 512


def roomy(folder):
    """Whether prealloc reserves in folder: fallocate works and more than
    PREALLOC_MIN_FREE (plus the reservation) is free. Asked directly."""
    probe = os.path.join(folder, ".probe")
    fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.fallocate(fd, 1, ctypes.c_long(0), ctypes.c_long(MiB)) == 0  # KEEP_SIZE
        vfs = os.statvfs(folder)
        return ok and vfs.f_bavail * vfs.f_frsize > MIN_FREE + 4 * STEP
    finally:
        os.close(fd)
        os.unlink(probe)


def test_a_file_being_written_into_the_outbox_has_the_next_steps_reserved(chute):
    staging = chute.home / "spool" / "staging" / "home" / "growing.bin"
    with open(chute.outbox / "growing.bin", "wb") as f:
        f.write(os.urandom(STEP + 2 * MiB))
        f.flush()
        assert staging.stat().st_size == STEP + 2 * MiB
        if roomy(staging.parent):
            assert allocated(staging) >= 3 * STEP     # [STEP, 3 STEP) ahead of it
        else:
            assert allocated(staging) <= STEP + 2 * MiB + SLACK


def test_a_file_left_under_a_temporary_name_keeps_nothing_reserved(chute):
    # Never sealed, so the seal's trim never runs: the last writer's
    # close gives the reservation back, and keeps the file's times.
    staging = chute.home / "spool" / "staging" / "home" / "dl.mkv.part"
    with open(chute.outbox / "dl.mkv.part", "wb") as f:
        f.write(os.urandom(STEP + 2 * MiB))
        f.flush()
        reserved = roomy(staging.parent) and allocated(staging) >= 3 * STEP
        mtime = os.fstat(f.fileno()).st_mtime_ns
    # (the release follows the close: wait for it)
    wait_until(lambda: allocated(staging) <= STEP + 2 * MiB + SLACK, timeout=5,
               what="the reservation given back")
    assert os.stat(chute.outbox / "dl.mkv.part").st_mtime_ns == mtime
    assert chute.active() == []
    if not reserved:
        pytest.skip("no room here to reserve ahead: nothing to give back")


def test_a_sealed_big_file_keeps_nothing_reserved_and_keeps_its_times(chute, tmp_path):
    size = 2 * STEP + 12345
    data = os.urandom(size)
    src = tmp_path / "video.mkv"
    src.write_bytes(data)
    os.utime(src, ns=(1_500_000_000_123_456_789, 1_600_000_000_000_000_005))
    run("cp", "-p", src, chute.outbox / "video.mkv")
    it = chute.item("video.mkv")
    plain = chute.blob(it["id"])
    st = os.stat(plain)
    assert st.st_size == size
    assert allocated(plain) <= size + SLACK          # the reservation was given back
    assert st.st_mtime_ns == 1_600_000_000_000_000_005
    assert chute.open_meta(it["id"])["mtime"] == 1_600_000_000
    assert chute.decrypt(it["id"]) == data


def test_a_received_big_file_leaves_at_most_two_steps_reserved_in_the_cache(chute):
    db = chute.home / "inbox-data.db"
    chute.receive("big.bin", os.urandom(5 * STEP))
    beyond = allocated(db) - os.stat(db).st_size
    assert beyond <= 2 * STEP + SLACK
    if roomy(chute.home):
        assert beyond >= STEP                           # the next batches' blocks


def part_body(relay, inbox, item):
    return relay.data_dir / "items" / f"{inbox.id}.{item}.part"


def send_patch_head(relay, sender, item, offset, length):
    """A PATCH whose body the test sends itself; the connection."""
    s = relay.api().raw_socket(timeout=30)
    s.sendall((f"PATCH {sender.inbox.item_path(item)} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {sender.token}\r\nUpload-Offset: {offset}\r\n"
               "Content-Type: application/offset+octet-stream\r\n"
               f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode())
    return s


def test_a_growing_relay_body_has_blocks_reserved_and_a_complete_one_none(relay, inbox, sender):
    item = new_item_id()
    assert sender.api.put(sender.inbox.item_path(item), {"deferred": True}).status == 201
    data = os.urandom(STEP + 4 * MiB)
    s = send_patch_head(relay, sender, item, 0, len(data))
    s.sendall(data[:STEP + 2 * MiB])
    body = part_body(relay, inbox, item)
    wait_until(lambda: body.exists() and body.stat().st_size == STEP + 2 * MiB,
               what="the relay to write what was sent")
    if roomy(body.parent):
        assert allocated(body) >= 3 * STEP   # while it grows
    s.sendall(data[STEP + 2 * MiB:])
    assert status_line(read_until_close(s, 30)) == 204
    s.close()
    # the PATCH is over: what was reserved ahead goes back until the next
    assert body.stat().st_size == len(data)
    assert allocated(body) <= len(data) + SLACK
    # declared whole: committed, and nothing beyond its end stays reserved
    r = sender.api.put(sender.inbox.item_path(item), {"size": len(data), "meta": b64(b"m")})
    assert r.status in (200, 201), r
    final = body.with_name(f"{inbox.id}.{item}")
    assert allocated(final) <= len(data) + SLACK
    assert inbox.download(item).body == data


@pytest.mark.parametrize("end", ["interrupted", "complete request"])
def test_a_relay_body_reserves_nothing_beyond_its_declared_size(relay, inbox, sender, end):
    """An item declared 9 MiB took 24 MiB of disk once 8.5 MiB of it were
    written (two steps reserved past 8 MiB), and kept them while the
    upload stayed unfinished, until the item expired: the reservation
    stops at the declared size, and goes back when a PATCH ends."""
    size, sent = STEP + MiB, STEP + MiB // 2
    data = os.urandom(size)
    item = new_item_id()
    assert sender.create(item, size).status == 201
    body = part_body(relay, inbox, item)
    if end == "interrupted":
        s = send_patch_head(relay, sender, item, 0, size)
        s.sendall(data[:sent])
        wait_until(lambda: body.exists() and body.stat().st_size == sent,
                   what="the relay to write what was sent")
        assert allocated(body) <= size + SLACK     # while the PATCH is open
        s.close()
        wait_until(lambda: sender.offset(item)[0] == sent, what="the upload to settle")
    else:
        assert sender.append(item, 0, data[:sent]).status == 204
    assert body.stat().st_size == sent
    assert allocated(body) <= sent + SLACK
    assert sender.append(item, sent, data[sent:]).status == 204
    assert inbox.download(item).body == data


def test_a_nearly_full_relay_disk_gets_nothing_reserved(relay_factory, tmp_path):
    with small_tmpfs(tmp_path / "small-disk", "64m") as d:
        relay = relay_factory(data_dir=d / "data")
        api = relay.api()
        inbox = api.create_inbox()
        sender = inbox.add_sender()
        item = new_item_id()
        assert sender.api.put(sender.inbox.item_path(item), {"deferred": True}).status == 201
        data = os.urandom(STEP + 4 * MiB)
        assert sender.append(item, 0, data).status == 204
        body = part_body(relay, inbox, item)
        assert allocated(body) <= len(data) + SLACK   # 64 MiB is far below PREALLOC_MIN_FREE
