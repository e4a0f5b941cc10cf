"""The inbox of a real chutefs mount: files committed to the cache (as the
downloader will) show up at once, read with random access, can be deleted
and renamed, refuse changes, and carry sanitized, collision-free names."""

import errno
import os
import stat
import random
import shutil
import time

import pytest

from conftest import wait_until
from fsfixtures import chute, run  # noqa: F401  (fixture)


def chunk_rows(chute):
    with chute.inbox_db() as con:
        return con.execute("SELECT count(*) FROM chunks").fetchone()[0]


def test_arrival_is_listed_at_once_and_reads_randomly(chute):
    data = os.urandom(3 * 1024 * 1024 + 12345)
    assert os.listdir(chute.inbox) == []
    assert chute.receive("movie.mkv", data, mode="640", mtime=1600000000) == b"movie.mkv"
    assert os.listdir(chute.inbox) == ["movie.mkv"]        # no kernel cache delay
    st = (chute.inbox / "movie.mkv").stat()
    assert st.st_size == len(data)
    assert st.st_mode & 0o777 == 0o440                      # read-only view of 0640
    assert int(st.st_mtime) == 1600000000
    rnd = random.Random(7)
    with open(chute.inbox / "movie.mkv", "rb") as f:
        for _ in range(200):
            off = rnd.randrange(0, len(data) + 10)
            n = rnd.choice([1, 100, 4096, 65535, 65536, 65537, 300000])
            f.seek(off)
            assert f.read(n) == data[off:off + n]
        f.seek(len(data) - 3)
        assert f.read() == data[-3:]
    assert (chute.inbox / "movie.mkv").read_bytes() == data
    # copy out with a real tool
    run("cp", chute.inbox / "movie.mkv", chute.tmp / "copy")
    assert (chute.tmp / "copy").read_bytes() == data


def test_folders_from_the_peer(chute):
    chute.receive("album/2024/a.jpg", b"a")
    chute.receive("album/2024/b.jpg", b"b")
    assert os.listdir(chute.inbox) == ["album"]
    assert sorted(os.listdir(chute.inbox / "album" / "2024")) == ["a.jpg", "b.jpg"]
    assert (chute.inbox / "album" / "2024" / "b.jpg").read_bytes() == b"b"


def test_unlink_frees_the_cache(chute):
    chute.receive("big", os.urandom(1024 * 1024))
    chute.receive("small", b"s")
    rows = chunk_rows(chute)
    assert rows == 16 + 1
    assert "stored: 2" in chute.status()
    os.unlink(chute.inbox / "big")
    assert os.listdir(chute.inbox) == ["small"]
    assert "stored: 1" in chute.status()
    # the chunks go in the background, soon after (lib/cache.c: the reaper)
    wait_until(lambda: chunk_rows(chute) == 1, timeout=10, what="the chunks freed")
    chute.receive("d/inner", b"i")
    with pytest.raises(OSError) as e:
        os.rmdir(chute.inbox / "d")
    assert e.value.errno == errno.ENOTEMPTY
    os.unlink(chute.inbox / "d" / "inner")
    os.rmdir(chute.inbox / "d")



def test_an_unlinked_file_leaves_no_bytes_and_gives_its_space_back(chute):
    """Once the reaper is done, a removed file's plaintext is nowhere in the
    chunk file or its journal (secure_delete; a journal emptied at each
    commit), and its pages went back to the filesystem (incremental
    auto_vacuum): the chunk file shrank by about the file's size."""
    marker = b"chute-marker:51de-c0de"
    size = 8 * 1024 * 1024
    data = (marker * (size // len(marker) + 1))[:size]
    chute.receive("keep", b"k" * 70000)
    chute.receive("big", data)
    chunks = chute.home / "inbox-data.db"
    journal = chute.home / "inbox-data.db-journal"
    full = chunks.stat().st_size
    assert full > size and chunks.read_bytes().count(marker) > 0
    os.unlink(chute.inbox / "big")
    wait_until(lambda: chunk_rows(chute) == 2 and chunks.stat().st_size <= full - size,
               timeout=20, what="the chunk file to shrink")
    assert chunks.read_bytes().count(marker) == 0
    assert not journal.exists() or journal.read_bytes().count(marker) == 0
    assert (chute.inbox / "keep").read_bytes() == b"k" * 70000

def test_an_unlinked_file_leaves_no_name_in_the_index(chute):
    """The index (inbox.db) holds names, sizes and times: from the moment
    rm returns, a removed file's name is nowhere in it or its journal (a
    PERSIST journal kept the page as it was before the delete)."""
    name = b"diagnosis-ward7-2026.pdf"
    chute.receive(name.decode(), b"x" * 5000)
    chute.receive("keep.txt", b"k" * 100)
    index = chute.home / "inbox.db"
    journal = chute.home / "inbox.db-journal"
    assert name in index.read_bytes()
    os.unlink(chute.inbox / name.decode())
    for when in ("removed", "reaped"):
        if when == "reaped":
            wait_until(lambda: chunk_rows(chute) == 1, timeout=20, what="the reaper")
        assert name not in index.read_bytes(), when
        assert not journal.exists() or name not in journal.read_bytes(), when


def test_a_removed_file_stays_readable_while_open(chute):
    """As on a local disk: rm takes the name at once, but the bytes stay for
    the descriptors already open on the file until the last one closes —
    and a file that arrives meanwhile never shows through them."""
    a = os.urandom(1024 * 1024 + 7)
    chute.receive("a.bin", a)
    with open(chute.inbox / "a.bin", "rb") as f:
        assert f.read(10) == a[:10]
        os.unlink(chute.inbox / "a.bin")
        assert os.listdir(chute.inbox) == []
        b = os.urandom(1024 * 1024 + 7)
        chute.receive("b.bin", b)   # would get a.bin's data row id once that is freed
        time.sleep(0.5)             # the reaper's chance to free a.bin (it must not)
        f.seek(0)
        assert f.read() == a
        with chute.inbox_db() as con:
            assert con.execute("SELECT count(*) FROM doomed").fetchone()[0] == 1
    wait_until(lambda: chunk_rows(chute) == 17, timeout=10, what="a.bin freed at its close")
    assert (chute.inbox / "b.bin").read_bytes() == b


def test_rename_within_the_inbox(chute):
    chute.receive("a.txt", b"A")
    chute.receive("sub/x", b"X")
    os.rename(chute.inbox / "a.txt", chute.inbox / "b.txt")
    assert sorted(os.listdir(chute.inbox)) == ["b.txt", "sub"]
    os.rename(chute.inbox / "b.txt", chute.inbox / "sub" / "b.txt")
    assert (chute.inbox / "sub" / "b.txt").read_bytes() == b"A"
    os.rename(chute.inbox / "sub" / "b.txt", chute.inbox / "sub" / "x")   # replaces
    assert os.listdir(chute.inbox / "sub") == ["x"]
    assert (chute.inbox / "sub" / "x").read_bytes() == b"A"
    with pytest.raises(OSError) as e:
        os.rename(chute.inbox / "sub" / "x", chute.outbox / "x")
    assert e.value.errno == errno.EXDEV
    # mv falls back to copy + delete
    run("mv", chute.inbox / "sub" / "x", chute.tmp / "out")
    assert (chute.tmp / "out").read_bytes() == b"A"
    assert os.listdir(chute.inbox / "sub") == []


def test_changes_are_refused(chute):
    chute.receive("ro.txt", b"read only")
    p = chute.inbox / "ro.txt"
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC):
        with pytest.raises(OSError) as e:
            os.open(p, flags)
        assert e.value.errno == errno.EACCES
    with pytest.raises(OSError) as e:
        os.open(chute.inbox / "new", os.O_CREAT | os.O_WRONLY, 0o644)
    assert e.value.errno == errno.EACCES
    with pytest.raises(OSError) as e:
        os.mkdir(chute.inbox / "newdir")
    assert e.value.errno == errno.EACCES
    with pytest.raises(OSError) as e:
        os.truncate(p, 0)
    assert e.value.errno == errno.EACCES
    for call in (lambda: os.chmod(p, 0o777), lambda: os.utime(p, (1, 1))):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EPERM
    with pytest.raises(OSError) as e:
        os.rmdir(chute.inbox)
    assert e.value.errno == errno.EPERM
    for call in (lambda: os.symlink("ro.txt", chute.inbox / "ln"),
                 lambda: os.link(p, chute.inbox / "ln"),
                 lambda: os.mkfifo(chute.inbox / "fifo"),
                 lambda: os.mknod(chute.inbox / "node", stat.S_IFREG | 0o644)):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EACCES, call
    assert p.read_bytes() == b"read only"


def test_links_and_special_files_are_refused_in_the_outbox(chute):
    (chute.outbox / "real.txt").write_bytes(b"real")
    for call in (lambda: os.symlink("real.txt", chute.outbox / "ln"),
                 lambda: os.link(chute.outbox / "real.txt", chute.outbox / "hard"),
                 lambda: os.mkfifo(chute.outbox / "fifo")):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EPERM      # only files and folders travel
    assert sorted(os.listdir(chute.outbox)) == ["real.txt"]
    # mknod(2) of a plain file is a create: an empty file, queued as touch does
    os.mknod(chute.outbox / "empty", stat.S_IFREG | 0o600)
    assert (chute.outbox / "empty").read_bytes() == b""
    assert sorted(chute.active_paths()) == ["empty", "real.txt"]


def test_hostile_names_are_sanitized(chute):
    cases = {
        b"../etc/passwd": b"_../etc/passwd",
        b"/abs": b"abs",
        b"a\nb": b"a_b",
        b"bad\xffutf8": b"bad_utf8",
        b"": b"unnamed",
        b".": b"unnamed (2)",      # "." components vanish: the name is empty
        b"\x1b[31mred": b"_[31mred",
    }
    for given, want in cases.items():
        assert chute.receive(given, b"x") == want, given
    long = chute.receive(b"L" * 10000, b"x")
    assert long == b"L" * 240
    listing = os.listdir(os.fsencode(chute.inbox))
    assert b"_.." in listing and b"abs" in listing and b"a_b" in listing
    assert all(b"/" not in n and b"\n" not in n for n in listing)
    assert not os.path.exists("/etc/passwd.chute")
    assert os.listdir(chute.inbox / "_.." / "etc") == ["passwd"]


def test_collisions_get_new_names(chute):
    assert chute.receive("x.pdf", b"1") == b"x.pdf"
    assert chute.receive("x.pdf", b"2") == b"x (2).pdf"
    assert chute.receive("x.pdf", b"3") == b"x (3).pdf"
    assert (chute.inbox / "x.pdf").read_bytes() == b"1"
    assert (chute.inbox / "x (3).pdf").read_bytes() == b"3"


def test_other_peers_inbox_is_separate(chute):
    run(chute.fixture, "add-peer", chute.home, "office", chute.peer_recipient)
    chute.receive("mine", b"m")
    assert os.listdir(chute.mnt / "inbox" / "office") == []
    assert os.listdir(chute.inbox) == ["mine"]


def test_a_file_unlinked_right_before_unmount_is_freed_after_the_next_mount(chute):
    """Unlink only dooms a file's chunks; whatever the reaper had not freed
    when the mount went away is freed by the next mount, and nothing else."""
    chute.receive("keep", b"k" * 70000)
    chute.receive("big", os.urandom(48 * 1024 * 1024))
    assert chunk_rows(chute) == 2 + 768
    os.unlink(chute.inbox / "big")
    chute.unmount()
    chute.mount()
    assert os.listdir(chute.inbox) == ["keep"]
    wait_until(lambda: chunk_rows(chute) == 2, timeout=20, what="the doomed chunks freed")
    assert (chute.inbox / "keep").read_bytes() == b"k" * 70000
    with chute.inbox_db() as con:
        assert con.execute("SELECT count(*) FROM doomed").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM data").fetchone()[0] == 1
