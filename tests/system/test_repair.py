"""A peer unpaired, and a device paired afterwards under its name.

The mount keeps an unpaired peer's queued and received files under its
folder name (DESIGN: kept and reported, never silently deleted). Another
device that calls itself the same must get a folder of its own, not that
history; the same device paired again (PROTOCOL §7.5, §7.9 advise it) gets
its folder back and what was queued for it. Real chuted, real pairing,
real mounts on both sides.
"""

import hashlib
import os
import sqlite3
import time

import pytest

from conftest import wait_until
from pairtool import Device, pair
from test_sync_upload import (SLOW, Mount, Receiver, slow_sync, sync,  # noqa: F401  (fixtures)
                              uploading_between, wait_listed)


def refused_then_forgotten(m, home, name_at_home, name, data):
    """home unpairs abroad; abroad queues name for it, is refused, and
    forgets home in turn. The item stays queued, its folder gone."""
    home.run("unpair", name_at_home, check=True)
    (m.outbox / name).write_bytes(data)
    wait_until(lambda: "no longer accepts" in m.status(), timeout=20, what="the refusal")
    m.dev.run("unpair", "home", check=True)
    wait_until(lambda: not (m.mnt / "outbox" / "home").exists(), timeout=5,
               what="the unpaired peer's folder to go")
    assert m.row(name)["state"] == 0                  # kept, not dropped


def retry_now(m, wake_folder):
    """Bring every retry forward and wake the uploader with a new file."""
    con = sqlite3.connect(str(m.home / "chutefs.db"), timeout=10)
    try:
        con.execute("UPDATE queue SET next_attempt = 0")
        con.commit()
    finally:
        con.close()
    (m.mnt / "outbox" / wake_folder / "wake.txt").write_bytes(b"wake")


def test_another_device_by_the_old_name_gets_a_folder_of_its_own(sync, tmp_path):
    relay, m, rcv, home, name_at_home = sync
    refused_then_forgotten(m, home, name_at_home, "meant-for-home.txt", b"for home only")
    other = Device(tmp_path / "other", "home", relay.url)
    other.init()
    _, folder = pair(other, m.dev)
    assert folder == "home-2"
    assert os.listdir(m.mnt / "outbox" / "home-2") == []
    assert os.listdir(m.mnt / "inbox" / "home-2") == []
    retry_now(m, "home-2")
    # the old item is tried, and stays for the old home; only the new file goes
    wait_until(lambda: m.row("meant-for-home.txt")["last_error"]
               == "peer home is not paired any more", timeout=20, what="the old item's retry")
    got = Receiver(other, relay, tmp_path)
    wait_until(lambda: len(got.complete()) == 1, timeout=20, what="the new file at the other")
    assert [i["item"] for i in got.complete().values()] == [m.rows("path='wake.txt'")[0]["id"]]


def test_the_same_device_paired_again_gets_what_was_queued_for_it(sync, tmp_path):
    relay, m, rcv, home, name_at_home = sync
    refused_then_forgotten(m, home, name_at_home, "report.pdf", b"queued while unpaired")
    name_at_home, folder = pair(home, m.dev)
    assert folder == "home"
    assert os.listdir(m.mnt / "outbox" / "home") == ["report.pdf"]
    (tmp_path / "b").mkdir()
    mb = Mount(home, tmp_path / "b")
    mb.mount()
    try:
        retry_now(m, "home")
        inbox = mb.mnt / "inbox" / name_at_home
        wait_until(lambda: sorted(os.listdir(inbox)) == ["report.pdf", "wake.txt"],
                   timeout=30, what="both files at home")
        assert (inbox / "report.pdf").read_bytes() == b"queued while unpaired"
        assert "quarantin" not in mb.stderr()
    finally:
        mb.unmount()
        mb.check_sanitizers()


def test_an_item_queued_by_an_earlier_version_goes_to_the_same_device_paired_again(
        sync, tmp_path):
    # Rows from before items kept their recipient learn it at their next
    # try while the peer is still paired (the meta opening proves it).
    relay, m, rcv, home, name_at_home = sync
    home.run("unpair", name_at_home, check=True)
    (m.outbox / "old.txt").write_bytes(b"queued before the upgrade")
    wait_until(lambda: "no longer accepts" in m.status(), timeout=20, what="the refusal")
    m.unmount()
    con = sqlite3.connect(str(m.home / "chutefs.db"), timeout=10)
    try:
        con.execute("UPDATE queue SET recipient = '', next_attempt = 0")   # as an old row
        con.commit()
    finally:
        con.close()
    m.mount()
    wait_until(lambda: m.row("old.txt")["recipient"].startswith("age1"), timeout=20,
               what="the old row to learn its recipient")
    m.dev.run("unpair", "home", check=True)
    name_at_home, folder = pair(home, m.dev)
    assert folder == "home"
    retry_now(m, "home")
    wait_until(lambda: len(rcv.complete()) == 2, timeout=30, what="both files on the relay")
    assert m.row("old.txt")["last_error"] == ""


def test_files_received_from_an_unpaired_peer_stay_until_removed(sync, tmp_path):
    # Unpairing a lost or sold device must not take away what it sent:
    # its inbox folder stays while it holds files; nothing new arrives.
    relay, m, rcv, home, name_at_home = sync
    (tmp_path / "b").mkdir()
    mb = Mount(home, tmp_path / "b")
    mb.mount()
    try:
        (m.outbox / "photos").mkdir()
        (m.outbox / "photos" / "a.jpg").write_bytes(b"first photo")
        (m.outbox / "notes.txt").write_bytes(b"some notes")
        inbox = mb.mnt / "inbox" / name_at_home
        wait_until(lambda: inbox.exists() and sorted(os.listdir(inbox)) == ["notes.txt", "photos"],
                   timeout=30, what="both at home")
        home.run("unpair", name_at_home, check=True)
        wait_until(lambda: not (mb.mnt / "outbox" / name_at_home).exists(), timeout=5,
                   what="the unpaired peer's outbox folder to go")
        assert os.listdir(mb.mnt / "outbox") == []
        assert os.listdir(mb.mnt / "inbox") == [name_at_home]
        assert (inbox / "photos" / "a.jpg").read_bytes() == b"first photo"
        assert (inbox / "notes.txt").read_bytes() == b"some notes"
        os.rename(inbox / "notes.txt", inbox / "kept.txt")
        assert sorted(os.listdir(inbox)) == ["kept.txt", "photos"]
        with pytest.raises(PermissionError):
            (inbox / "new.txt").write_bytes(b"x")
        # the folder goes with the last thing in it
        os.unlink(inbox / "kept.txt")
        os.unlink(inbox / "photos" / "a.jpg")
        assert os.listdir(mb.mnt / "inbox") == [name_at_home]
        os.rmdir(inbox / "photos")
        assert os.listdir(mb.mnt / "inbox") == []
        assert not inbox.exists()
    finally:
        mb.unmount()
        mb.check_sanitizers()


def paired_again_and_mounted(home, m, tmp_path):
    """abroad and home forget each other, pair again, and home mounts:
    (home's Mount, abroad's folder name at home)."""
    m.dev.run("unpair", "home", check=True)
    name_at_home, folder = pair(home, m.dev)
    assert folder == "home"
    (tmp_path / "b").mkdir()
    mb = Mount(home, tmp_path / "b")
    mb.mount()
    return mb, name_at_home


def test_an_item_left_on_the_relay_by_the_old_pairing_is_sent_again(sync, tmp_path):
    # Uploaded whole, then home unpaired abroad before fetching it: the
    # relay keeps it under the revoked sender, where the new pairing's
    # home never looks. Once paired again it goes again, under a new id.
    relay, m, rcv, home, name_at_home = sync
    (m.outbox / "done.txt").write_bytes(b"on the relay before the unpair")
    old_id = list(wait_listed(rcv, 1))[0]
    home.run("unpair", name_at_home, check=True)
    mb, name_at_home = paired_again_and_mounted(home, m, tmp_path)
    try:
        retry_now(m, "home")
        inbox = mb.mnt / "inbox" / name_at_home
        wait_until(lambda: inbox.exists() and sorted(os.listdir(inbox)) == ["done.txt", "wake.txt"],
                   timeout=30, what="both files at home")
        assert (inbox / "done.txt").read_bytes() == b"on the relay before the unpair"
        wait_until(lambda: not (m.outbox / "done.txt").exists(), timeout=20,
                   what="the outbox entry to go once delivered")
        row = m.rows("path='done.txt'")[0]
        assert row["id"] != old_id and row["state"] == 3
        assert "quarantin" not in mb.stderr()
    finally:
        mb.unmount()
        mb.check_sanitizers()


def test_an_upload_cut_by_the_unpair_goes_from_the_start_once_paired_again(slow_sync, tmp_path):
    # The relay keeps the part under the old sender and the id; the new
    # pairing cannot append to it, so the item starts again under a new id.
    relay, m, rcv, gate = slow_sync
    home = Device(tmp_path / "home", "home", gate.url)
    data = os.urandom(6 << 20)
    (m.outbox / "slow.bin").write_bytes(data)
    wait_until(lambda: uploading_between(m, "slow.bin"), timeout=30 * SLOW,
               what="the upload part-way")
    old_id = m.row("slow.bin")["id"]
    home.run("unpair", "abroad", check=True)
    wait_until(lambda: "no longer accepts" in m.status(), timeout=30 * SLOW, what="the refusal")
    mb, name_at_home = paired_again_and_mounted(home, m, tmp_path)
    try:
        retry_now(m, "home")
        inbox = mb.mnt / "inbox" / name_at_home
        wait_until(lambda: inbox.exists() and sorted(os.listdir(inbox)) == ["slow.bin", "wake.txt"],
                   timeout=60 * SLOW, what="both files at home")
        got = hashlib.sha256((inbox / "slow.bin").read_bytes()).hexdigest()
        assert got == hashlib.sha256(data).hexdigest()
        assert m.rows("path='slow.bin'")[0]["id"] != old_id
        assert "quarantin" not in mb.stderr()
    finally:
        mb.unmount()
        mb.check_sanitizers()


def test_an_item_whose_sealed_copy_went_says_so_once_paired_again(sync, tmp_path):
    # Its new id needs the copy linked under it: missing, that is an error
    # to show and back off from, not a cancel to be retried at once.
    relay, m, rcv, home, name_at_home = sync
    refused_then_forgotten(m, home, name_at_home, "lost.txt", b"its copy is deleted")
    row = m.row("lost.txt")
    os.unlink(m.home / "spool" / "sealed" / f"{row['id']}.plain")
    pair(home, m.dev)
    retry_now(m, "home")
    want = "the file's sealed copy is missing"
    wait_until(lambda: m.row("lost.txt")["last_error"].startswith(want), timeout=20,
               what="the missing copy in its last error")
    tried = m.row("lost.txt")["attempts"]
    time.sleep(2)
    assert m.row("lost.txt")["attempts"] <= tried + 1      # backing off, not spinning
    assert m.row("lost.txt")["state"] == 0
