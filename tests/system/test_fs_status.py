"""MOUNT/status: counters, pending files with state and progress, relay
reachability; read-only."""

import errno
import os

import pytest

from conftest import wait_until

from fsfixtures import chute  # noqa: F401  (fixture)


def test_counters_and_pending(chute):
    text = chute.status()
    assert "outgoing: 0\n" in text and "incoming: 0\n" in text and "stored: 0\n" in text
    # the fixture's relay address (port 9) answers nothing: the downloader
    # may already have found that out
    assert "relay: unknown\n" in text or "relay: unreachable since " in text
    (chute.outbox / "one.txt").write_bytes(b"1" * 10)
    (chute.outbox / "two.txt").write_bytes(b"2" * 20)
    chute.receive("got.txt", b"g")
    text = chute.status()
    assert "outgoing: 2\n" in text and "stored: 1\n" in text
    assert "home/one.txt\tqueued\t10 bytes" in text
    assert "home/two.txt\tqueued\t20 bytes" in text
    it = chute.item("two.txt")
    with chute.db() as con:
        con.execute("UPDATE queue SET state=0, attempts=3, last_error='relay unreachable', "
                    "progress=? WHERE id=?", (it["blob_size"] // 2, it["id"]))
    assert "attempts 3\tlast error: relay unreachable" in chute.status()
    with chute.db() as con:
        con.execute("UPDATE queue SET state=1 WHERE id=?", (it["id"],))
    assert "home/two.txt\tuploading 50%" in chute.status()
    with chute.db() as con:
        con.execute("UPDATE queue SET state=2 WHERE id=?", (it["id"],))
    text = chute.status()
    assert "outgoing: 1\n" in text and "on relay: 1\n" in text
    assert "home/two.txt\ton relay" in text
    os.unlink(chute.outbox / "one.txt")
    assert "one.txt" not in chute.status()


def test_status_is_read_only_and_sized(chute):
    p = chute.mnt / "status"
    # The text changes once, when the downloader first learns the relay's
    # state; compare sizes after that.
    wait_until(lambda: "relay: unknown" not in chute.status(), timeout=10,
               what="the relay line to settle")
    assert p.stat().st_size == len(chute.status().encode())
    for flags in (os.O_WRONLY, os.O_RDWR):
        with pytest.raises(OSError) as e:
            os.open(p, flags)
        assert e.value.errno == errno.EACCES
    with pytest.raises(OSError) as e:
        os.unlink(p)
    assert e.value.errno == errno.EPERM
