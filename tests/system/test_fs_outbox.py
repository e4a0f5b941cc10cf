"""The outbox of a real chutefs mount: local-folder behaviour while
writing, sealing at the last close into a durable queue, blobs that stock
age decrypts, temporary names, rename/unlink semantics, xattr states,
crash survival."""

import ctypes
import errno
import json
import mmap
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import binary, failing_disk, faults_env, small_tmpfs, wait_until
from fsfixtures import Chute, chute, header_mac, mounted, run  # noqa: F401  (fixture)


def test_layout(chute):
    assert sorted(os.listdir(chute.mnt)) == ["inbox", "outbox", "status"]
    assert os.listdir(chute.mnt / "outbox") == ["home"]
    assert os.listdir(chute.mnt / "inbox") == ["home"]
    assert os.listdir(chute.outbox) == []
    with pytest.raises(OSError) as e:
        os.mkdir(chute.mnt / "outbox" / "stranger")
    assert e.value.errno == errno.EACCES
    with pytest.raises(OSError) as e:
        os.rmdir(chute.outbox)
    assert e.value.errno == errno.EPERM


@pytest.mark.parametrize("where", ["x", "outbox/x", "inbox/x"])
def test_making_anything_where_only_pairing_makes_folders_is_eacces(chute, where):
    # Not ENOENT: the folder is there, it is not the user's to fill.
    path = chute.mnt / where
    calls = {"create": lambda: open(path, "wb"),
             "mkdir": lambda: os.mkdir(path),
             "mknod": lambda: os.mknod(path, 0o644 | stat.S_IFREG),
             "symlink": lambda: os.symlink("/etc/hostname", path),
             "link": lambda: os.link(chute.mnt / "status", path)}
    for name, call in calls.items():
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno in (errno.EACCES, errno.EPERM) if name == "link" \
            else e.value.errno == errno.EACCES, (name, e.value)
    assert not path.exists()


def test_the_fixed_folders_date_from_the_mount(chute):
    started = os.stat(chute.mnt / "outbox").st_mtime
    assert time.time() - 600 < started <= time.time()
    for folder in (chute.mnt / "inbox", chute.outbox, chute.mnt / "inbox" / "home"):
        assert os.stat(folder).st_mtime >= started - 1, folder


def test_cp_queues_and_stock_age_decrypts(chute, tmp_path):
    data = os.urandom(300 * 1024 + 17)
    src = tmp_path / "photo.jpg"
    src.write_bytes(data)
    os.chmod(src, 0o640)
    run("cp", src, chute.outbox / "photo.jpg")
    # close() returned: the row is already there
    it = chute.item("photo.jpg")
    assert it["state"] == 0 and it["size"] == len(data)
    assert it["blob_size"] == chute.age_file(it["id"]).stat().st_size
    assert chute.decrypt(it["id"]) == data
    meta = chute.open_meta(it["id"])
    assert meta["path"] == "photo.jpg" and meta["size"] == len(data)
    assert meta["mode"] == 0o640
    assert meta["header_mac"] == header_mac(chute.age_file(it["id"]).read_bytes())
    assert len(it["id"]) == 22
    # reads back like a local file, and stays listed
    assert (chute.outbox / "photo.jpg").read_bytes() == data
    assert os.listdir(chute.outbox) == ["photo.jpg"]


def test_a_big_file_is_queued_without_staying_in_memory(chute, tmp_path):
    # The outbox writes behind and drops behind (lib/pagecache.h): after a
    # 40 MiB cp most of the queued plaintext is on disk only, and stock age
    # still decrypts its blob to the very bytes.
    size = 40 << 20
    data = os.urandom(size)
    src = tmp_path / "video.mkv"
    src.write_bytes(data)
    run("cp", src, chute.outbox / "video.mkv")
    it = chute.item("video.mkv")

    def cached(path):
        out = run("fincore", "--bytes", "--noheadings", "--output", "RES", path).stdout
        return int(out.split()[0])
    assert cached(chute.blob(it["id"])) < size // 2
    assert chute.decrypt(it["id"]) == data


class Mapping:
    """A read-only shared mapping of fd (libc mmap): which of its pages are
    in the page cache (mincore), and their bytes."""

    def __init__(self, fd, length):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.mmap.restype = ctypes.c_void_p
        self.libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                                   ctypes.c_int, ctypes.c_long]
        self.length = length
        self.addr = self.libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert self.addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()

    def resident(self):
        page = os.sysconf("SC_PAGE_SIZE")
        vec = (ctypes.c_ubyte * (self.length // page))()
        assert self.libc.mincore(ctypes.c_void_p(self.addr), ctypes.c_size_t(self.length),
                                 vec) == 0
        return sum(page for v in vec if v & 1)

    def read(self, n):
        return ctypes.string_at(self.addr, n)

    def close(self):
        self.libc.munmap(ctypes.c_void_p(self.addr), ctypes.c_size_t(self.length))


def test_a_write_only_handle_leaves_nothing_in_the_mounts_page_cache(chute, tmp_path):
    # Written through the kernel's page cache of the mount, every byte cp
    # sent also took a page there, kept until the next open of the file.
    size = 16 << 20
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(size))
    dst = chute.outbox / "video.mkv"
    run("cp", src, dst)
    with open(dst, "rb") as f:
        m = Mapping(f.fileno(), size)
        try:
            assert m.resident() == 0
            run("cp", src, dst)                   # over it, while it is mapped
            assert m.resident() == 0
            assert m.read(4096) == src.read_bytes()[:4096]
        finally:
            m.close()


def test_a_reader_sees_what_a_write_only_handle_writes(chute):
    # The write-only handle bypasses the mount's page cache; a handle open
    # for reading meanwhile must still read the new bytes, not its cache.
    p = chute.outbox / "shared.bin"
    p.write_bytes(b"a" * 100000)
    with open(p, "rb") as r:
        assert r.read() == b"a" * 100000          # now in the reader's cache
        with open(p, "r+b") as w:                 # kept open: no seal in between
            with open(p, "wb", buffering=0) as wo:
                wo.write(b"b" * 150000)
            r.seek(0)
            assert r.read() == b"b" * 150000
            w.seek(0)
            assert w.read(3) == b"bbb"
    # three handles closed at once: the seal may come at the last release,
    # which close() does not wait for
    wait_until(lambda: [r["size"] for r in chute.active()] == [150000], timeout=10,
               what="the rewritten file queued")
    assert chute.decrypt(chute.item("shared.bin")["id"]) == b"b" * 150000


def test_shutil_copy_sendfile_into_a_write_only_handle(chute, tmp_path):
    # shutil.copyfile sends with os.sendfile into its "wb" handle: a splice
    # into a direct_io file, 1 MiB and odd sizes alike
    for name, size in (("a.bin", 1 << 20), ("b.bin", 3 * 65536 + 17), ("c.bin", 1)):
        data = os.urandom(size)
        src = tmp_path / name
        src.write_bytes(data)
        shutil.copyfile(src, chute.outbox / name)
        assert (chute.outbox / name).read_bytes() == data
        assert chute.decrypt(chute.item(name)["id"]) == data


def test_cp_r_tree(chute, tmp_path):
    tree = tmp_path / "tree"
    files = {}
    for rel in ["a.txt", "sub/b.bin", "sub/deeper/c.md", "other/d"]:
        p = tree / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        files[rel] = os.urandom(1000 + len(rel))
        p.write_bytes(files[rel])
    run("cp", "-r", tree, chute.outbox)
    assert chute.active_paths() == sorted("tree/" + r for r in files)
    for rel, data in files.items():
        assert chute.decrypt(chute.item("tree/" + rel)["id"]) == data
        assert (chute.outbox / "tree" / rel).read_bytes() == data


def test_mv_from_another_filesystem(chute, tmp_path):
    src = tmp_path / "moved.txt"
    src.write_bytes(b"moving day\n")
    run("mv", src, chute.outbox)
    assert not src.exists()
    assert chute.decrypt(chute.item("moved.txt")["id"]) == b"moving day\n"


def test_rsync_queues_once_with_the_final_name(chute, tmp_path):
    src = tmp_path / "report.pdf"
    src.write_bytes(os.urandom(200000))
    run("rsync", "-a", src, str(chute.outbox) + "/")
    rows = chute.rows()
    assert [r["path"] for r in rows] == ["report.pdf"], rows
    assert rows[0]["state"] == 0
    assert chute.decrypt(rows[0]["id"]) == src.read_bytes()
    # rsync -a sets the mtime after the rename: it reaches the meta
    assert chute.open_meta(rows[0]["id"])["mtime"] == int(src.stat().st_mtime)


def test_rsync_delay_updates_queues_each_file_once_under_its_name(chute, tmp_path):
    # rsync keeps each finished file in .~tmp~/ and renames them all into
    # place at the end: sent from there, they would leave before that.
    src = tmp_path / "docs"
    src.mkdir()
    files = {f"f{i}.txt": os.urandom(20000) for i in range(5)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    run("rsync", "-a", "--delay-updates", str(src) + "/", str(chute.outbox / "docs") + "/")
    assert chute.active_paths() == sorted(f"docs/{n}" for n in files)
    assert [r for r in chute.rows() if ".~tmp~" in r["path"]] == []
    for name, data in files.items():
        assert chute.decrypt(chute.item(f"docs/{name}")["id"]) == data


def test_a_queued_file_shows_one_link_so_gzip_takes_it(chute, tmp_path):
    # Its second link is the queue's (sealed/<id>.plain), not the user's.
    (tmp_path / "nums.txt").write_bytes(b"".join(b"%d\n" % i for i in range(1000)))
    run("cp", tmp_path / "nums.txt", chute.outbox / "nums.txt")
    assert chute.active_paths() == ["nums.txt"]
    assert os.stat(chute.outbox / "nums.txt").st_nlink == 1
    with open(chute.outbox / "nums.txt", "rb") as f:
        assert os.fstat(f.fileno()).st_nlink == 1
    run("gzip", "-k", chute.outbox / "nums.txt")
    assert chute.active_paths() == ["nums.txt", "nums.txt.gz"]


def a_folder(tmp_path):
    """A folder with two files and a subfolder, mode 0750, an old mtime."""
    src = tmp_path / "photos"
    (src / "2026").mkdir(parents=True)
    files = {"a.jpg": os.urandom(30000), "2026/b.jpg": os.urandom(20000)}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    os.chmod(src, 0o750)
    os.utime(src, (1600000000, 1600000000))
    return src, files


def test_rsync_a_of_a_folders_contents_into_the_peer_folder(chute, tmp_path):
    # The trailing slash gives the peer folder the source folder's mode
    # and times: that must not fail the copy (rsync exited 23).
    src, files = a_folder(tmp_path)
    r = run("rsync", "-a", f"{src}/", f"{chute.outbox}/", check=False)
    assert r.returncode == 0, r.stderr
    assert chute.active_paths() == sorted(files)
    for rel, data in files.items():
        assert chute.decrypt(chute.item(rel)["id"]) == data
    st = os.stat(chute.outbox)
    assert st.st_mode & 0o777 == 0o750 and st.st_mtime == 1600000000


def test_cp_a_of_a_folders_contents_into_the_peer_folder(chute, tmp_path):
    src, files = a_folder(tmp_path)
    r = run("cp", "-a", f"{src}/.", f"{chute.outbox}/", check=False)
    assert r.returncode == 0, r.stderr
    assert chute.active_paths() == sorted(files)
    assert chute.decrypt(chute.item("2026/b.jpg")["id"]) == files["2026/b.jpg"]


def test_a_read_only_source_leaves_the_outbox_folders_writable(chute, tmp_path):
    # rsync -a from read-only media gives the peer folder and subfolders
    # mode 0555; the mount (running as the user) must still make files in
    # them and remove the delivered ones. Folders' modes do not travel.
    src, files = a_folder(tmp_path)
    os.chmod(src / "2026", 0o555)
    os.chmod(src, 0o555)
    try:
        r = run("rsync", "-a", f"{src}/", f"{chute.outbox}/", check=False)
        assert r.returncode == 0, r.stderr
    finally:
        os.chmod(src, 0o755)
        os.chmod(src / "2026", 0o755)
    for folder in (chute.outbox, chute.outbox / "2026"):
        assert os.stat(folder).st_mode & 0o777 == 0o755
        assert os.stat(chute.home / "spool" / "staging" / "home" /
                       folder.relative_to(chute.outbox)).st_mode & 0o700 == 0o700
    os.chmod(chute.outbox / "a.jpg", 0o444)              # a file's mode is its own
    assert os.stat(chute.outbox / "a.jpg").st_mode & 0o777 == 0o444


def test_rsync_X_into_the_outbox_and_cp_a_out_of_it(chute, tmp_path):
    # The state xattrs are read by name, never listed: rsync -X does not
    # try to remove them, and a copy out of the outbox does not carry a
    # stale "queued" along.
    src, files = a_folder(tmp_path)
    r = run("rsync", "-aX", f"{src}/", f"{chute.outbox}/", check=False)
    assert r.returncode == 0, r.stderr
    assert chute.active_paths() == sorted(files)
    assert os.getxattr(chute.outbox / "a.jpg", "user.chute.state") == b"queued"
    assert os.listxattr(chute.outbox / "a.jpg") == []
    back = tmp_path / "back"
    run("cp", "-a", chute.outbox / "a.jpg", back)
    assert back.read_bytes() == files["a.jpg"]
    assert not [x for x in os.listxattr(back) if x.startswith("user.chute.")]
    # a source's own xattrs do not travel: rsync -X says so
    os.setxattr(src / "a.jpg", "user.comment", b"holiday")
    r = run("rsync", "-aX", f"{src}/a.jpg", f"{chute.outbox}/c.jpg", check=False)
    assert r.returncode == 23 and b"Operation not supported" in r.stderr


def test_tar_x_into_outbox(chute, tmp_path):
    srcdir = tmp_path / "pkg"
    (srcdir / "docs").mkdir(parents=True)
    (srcdir / "docs" / "readme").write_bytes(b"read me\n")
    (srcdir / "bin").write_bytes(os.urandom(70000))
    os.utime(srcdir / "bin", (1500000000, 1500000000))
    tarball = tmp_path / "pkg.tar"
    with tarfile.open(tarball, "w") as t:
        t.add(srcdir, arcname="pkg")
    run("tar", "-xf", tarball, "-C", chute.outbox)
    assert chute.active_paths() == ["pkg/bin", "pkg/docs/readme"]
    it = chute.item("pkg/bin")
    assert chute.decrypt(it["id"]) == (srcdir / "bin").read_bytes()
    assert chute.open_meta(it["id"])["mtime"] == 1500000000


def test_dd_odd_block_sizes(chute, tmp_path):
    src = tmp_path / "src"
    src.write_bytes(os.urandom(1_000_003))
    run("dd", f"if={src}", f"of={chute.outbox / 'dd.bin'}", "bs=7777", "status=none")
    run("dd", f"if={src}", f"of={chute.outbox / 'dd2.bin'}", "bs=65537", "status=none")
    assert chute.decrypt(chute.item("dd.bin")["id"]) == src.read_bytes()
    assert chute.decrypt(chute.item("dd2.bin")["id"]) == src.read_bytes()


def test_a_shell_redirection_or_dd_queues_the_file_once_not_empty_first(chute):
    # both open, dup2 onto stdout and close the first fd before any write
    subprocess.run(f"echo hello > '{chute.outbox}/said.txt'", shell=True, check=True)
    run("dd", "if=/dev/zero", f"of={chute.outbox / 'zeros.bin'}", "bs=4096", "count=3",
        "status=none")
    for name, data in (("said.txt", b"hello\n"), ("zeros.bin", bytes(12288))):
        rows = chute.rows("path=?", (name,))
        assert len(rows) == 1, rows   # no empty item sealed (and then replaced) first
        assert chute.decrypt(rows[0]["id"]) == data


@pytest.mark.parametrize("child", [
    {},                                          # closed at its exec (O_CLOEXEC)
    {"pass_fds": True, "cmd": "import os; os.close({fd})"},   # inherited, closed by the child
])
def test_a_child_closing_an_inherited_descriptor_does_not_seal_the_file(chute, child):
    # Each close of a descriptor is a FUSE flush, and a forked child's copy
    # shares the writer's open file: before, that flush sealed the file cut
    # short, and home could get both the partial and the whole file.
    with open(chute.outbox / "log.txt", "wb") as f:
        f.write(b"first half\n")
        f.flush()
        if child.get("pass_fds"):
            fd = f.fileno()
            subprocess.run([sys.executable, "-c", child["cmd"].format(fd=fd)], pass_fds=(fd,),
                           check=True)
        else:
            subprocess.run(["true"], check=True)
        assert chute.rows() == []          # not sealed: its writer is still writing
        f.write(b"second half\n")
    rows = chute.rows("path=?", ("log.txt",))
    assert len(rows) == 1, rows
    assert chute.decrypt(rows[0]["id"]) == b"first half\nsecond half\n"


def test_appends_land_at_the_end_whoever_changed_the_file_before(chute):
    # >> opens write-only with O_APPEND: the kernel picks the offset from
    # the size it knows, also after other handles and a truncate by name
    p = chute.outbox / "log.txt"
    sh = lambda cmd: subprocess.run(cmd, shell=True, check=True, cwd=chute.outbox)  # noqa: E731
    sh("echo one >> log.txt; echo two >> log.txt")
    with open(p, "r+b") as f:            # another handle grows it
        f.seek(0, 2)
        f.write(b"three\n")
    sh("echo four >> log.txt")
    assert p.read_bytes() == b"one\ntwo\nthree\nfour\n"
    os.truncate(p, 4)                    # by name, behind any handle's back
    sh("echo five >> log.txt")
    with open(p, "ab") as f:
        f.write(b"six\n")
    assert p.read_bytes() == b"one\nfive\nsix\n"
    # a close right after another handle's may leave the seal to the
    # release, which close() does not wait for
    wait_until(lambda: [(r["path"], r["size"]) for r in chute.active()] == [("log.txt", 13)],
               timeout=10, what="the last version queued")
    assert chute.decrypt(chute.item("log.txt")["id"]) == b"one\nfive\nsix\n"


def test_python_seek_and_truncate_before_close(chute):
    p = chute.outbox / "edited.bin"
    with open(p, "wb") as f:
        f.write(b"A" * 100000)
        f.seek(10)
        f.write(b"hello")
        f.seek(200000)
        f.write(b"end")
        f.truncate(150000)
        f.flush()
        os.fsync(f.fileno())
        assert chute.rows() == []       # nothing sealed while open
    expect = bytearray(b"A" * 100000 + b"\0" * 50000)
    expect[10:15] = b"hello"
    assert chute.decrypt(chute.item("edited.bin")["id"]) == bytes(expect)
    with open(p, "r+b") as f:            # reopen, append at an offset
        f.seek(0, 2)
        f.write(b"more")
    rows = chute.rows()
    assert [r["state"] for r in rows] == [4, 0]   # replaced: old cancelled
    assert not chute.blob(rows[0]["id"]).exists()
    assert chute.decrypt(rows[1]["id"]) == bytes(expect) + b"more"
    os.truncate(p, 5)                    # truncate(2) by name seals too
    assert chute.decrypt(chute.item("edited.bin")["id"]) == b"AAAAA"


def test_read_only_open_does_not_reseal(chute):
    (chute.outbox / "r.txt").write_bytes(b"x")
    assert (chute.outbox / "r.txt").read_bytes() == b"x"
    assert len(chute.rows()) == 1


def test_zero_byte_file(chute):
    (chute.outbox / "empty").touch()
    # an empty file is sealed at its release, which close() does not wait for
    wait_until(lambda: chute.active_paths() == ["empty"], timeout=5, what="the empty file queued")
    it = chute.item("empty")
    assert it["size"] == 0
    assert chute.decrypt(it["id"]) == b""


def test_thousand_small_files(chute):
    for i in range(1000):
        (chute.outbox / f"f{i:04}.txt").write_bytes(b"%d\n" % i)
    assert len(chute.active()) == 1000
    assert len(os.listdir(chute.outbox)) == 1000
    assert chute.decrypt(chute.item("f0999.txt")["id"]) == b"999\n"


def test_unicode_names(chute):
    names = ["Grüße.txt", "日本語のファイル.pdf", "emoji 😀.png", "space name.doc"]
    for n in names:
        (chute.outbox / n).write_text(n)
    assert chute.active_paths() == sorted(names)
    assert sorted(os.listdir(chute.outbox)) == sorted(names)
    for n in names:
        assert chute.open_meta(chute.item(n)["id"])["path"] == n


def test_temporary_names_stay_local_until_renamed(chute):
    for n in [".x.swp", "a~", "big.part", "dl.crdownload", "t.tmp"]:
        (chute.outbox / n).write_bytes(b"local")
        assert os.getxattr(chute.outbox / n, "user.chute.state") == b"writing"
    assert chute.rows() == []
    os.rename(chute.outbox / "big.part", chute.outbox / "big")
    assert [r["path"] for r in chute.rows()] == ["big"]
    assert os.getxattr(chute.outbox / "big", "user.chute.state") == b"queued"


def test_rename_over_queued_file_replaces_it(chute):
    (chute.outbox / "a").write_bytes(b"old")
    old = chute.item("a")
    (chute.outbox / "b").write_bytes(b"new")
    os.rename(chute.outbox / "b", chute.outbox / "a")
    # the kernel sends b's RELEASE after close() returned: if the rename
    # comes first, "a" is still open and is sealed at that release
    wait_until(lambda: chute.active_paths() == ["a"], timeout=5,
               what="the renamed file to be queued")
    assert chute.decrypt(chute.item("a")["id"]) == b"new"
    assert chute.rows("id=?", (old["id"],))[0]["state"] == 4
    assert not chute.blob(old["id"]).exists()
    # renaming a queued file sends it under its new name instead
    os.rename(chute.outbox / "a", chute.outbox / "c")
    assert chute.active_paths() == ["c"]
    assert chute.open_meta(chute.item("c")["id"])["path"] == "c"
    # renaming to a temporary name takes it out of the queue
    os.rename(chute.outbox / "c", chute.outbox / "c.tmp")
    assert chute.active() == []


def test_cross_peer_or_area_rename_is_exdev(chute):
    (chute.outbox / "x").write_bytes(b"x")
    with pytest.raises(OSError) as e:
        os.rename(chute.outbox / "x", chute.inbox / "x")
    assert e.value.errno == errno.EXDEV


def test_unlink_cancels(chute):
    (chute.outbox / "gone.txt").write_bytes(b"bye")
    it = chute.item("gone.txt")
    assert chute.blob(it["id"]).exists()
    os.unlink(chute.outbox / "gone.txt")
    assert chute.rows("id=?", (it["id"],))[0]["state"] == 4
    assert chute.rows("id=?", (it["id"],))[0]["relay_cancel"] == 0   # never left
    assert not chute.blob(it["id"]).exists()
    assert os.listdir(chute.outbox) == []


def test_a_file_removed_while_open_keeps_its_descriptor_working(chute):
    """Removed while open, a file has no path any more: the calls on its
    descriptor go by the handle (a size check from the kernel, as a seek to
    the end makes, used to take the whole mount down), and at its close
    nothing is sent. (fstat, fchmod and futimens get ESTALE from libfuse's
    high-level API there: it has no path for them and passes no handle.)"""
    p = chute.outbox / "scratch.bin"
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x" * 5000)
        os.unlink(p)
        assert os.lseek(fd, 0, os.SEEK_END) == 5000
        os.ftruncate(fd, 3)
        assert os.lseek(fd, 0, os.SEEK_END) == 3
        os.write(fd, b"more")
        assert os.pread(fd, 10, 0) == b"xxxmore"
    finally:
        os.close(fd)
    assert os.listdir(chute.outbox) == []
    assert chute.active() == []
    # and the mount is still there
    (chute.outbox / "after.txt").write_bytes(b"a")
    assert os.listdir(chute.outbox) == ["after.txt"]


def test_a_file_removed_while_open_in_the_inbox_keeps_answering(chute):
    chute.receive("seen.txt", b"hello")
    with open(chute.inbox / "seen.txt", "rb") as f:
        os.unlink(chute.inbox / "seen.txt")
        assert f.seek(0, os.SEEK_END) == 5
        f.seek(0)
        assert f.read() == b"hello"
    assert os.listdir(chute.inbox) == []
    chute.receive("next.txt", b"n")
    assert os.listdir(chute.inbox) == ["next.txt"]


def test_xattr_states(chute):
    p = chute.outbox / "s.bin"
    with open(p, "wb") as f:
        f.write(b"x" * 1000)
        f.flush()
        assert os.getxattr(p, "user.chute.state") == b"writing"
    assert os.listxattr(p) == []           # read by name, never listed
    assert os.getxattr(p, "user.chute.state") == b"queued"
    it = chute.item("s.bin")
    # what the uploader will do, through the queue
    with chute.db() as con:
        con.execute("UPDATE queue SET state=1, progress=? WHERE id=?",
                    (it["blob_size"] * 42 // 100 + 1, it["id"]))
    assert os.getxattr(p, "user.chute.state") == b"uploading 42%"
    with chute.db() as con:
        con.execute("UPDATE queue SET state=2 WHERE id=?", (it["id"],))
    assert os.getxattr(p, "user.chute.state") == b"on relay"
    with chute.db() as con:   # delivered, the uploader's removal hook not yet run
        con.execute("UPDATE queue SET state=3 WHERE id=?", (it["id"],))
    assert os.getxattr(p, "user.chute.state") == b"delivered"
    with pytest.raises(OSError) as e:
        os.getxattr(p, "user.other")
    assert e.value.errno == errno.ENODATA
    os.mkdir(chute.outbox / "d")
    assert os.listxattr(chute.outbox / "d") == []


def test_chmod_utimens_after_close(chute, tmp_path):
    src = tmp_path / "p.txt"
    src.write_bytes(b"perms")
    os.chmod(src, 0o600)
    os.utime(src, (1234567890, 1234567890))
    run("cp", "-p", src, chute.outbox)
    meta = chute.open_meta(chute.item("p.txt")["id"])
    assert meta["mode"] == 0o600 and meta["mtime"] == 1234567890
    # once an upload began the meta is fixed; the change stays local but
    # never fails
    it = chute.item("p.txt")
    with chute.db() as con:
        con.execute("UPDATE queue SET state=1 WHERE id=?", (it["id"],))
    os.chmod(chute.outbox / "p.txt", 0o644)
    os.utime(chute.outbox / "p.txt", (1000, 1000))
    os.chown(chute.outbox / "p.txt", 0, 0)
    assert (chute.outbox / "p.txt").stat().st_mtime == 1000
    assert chute.open_meta(it["id"])["mode"] == 0o600


def test_touch_d_and_fchmod_on_a_queued_file_reach_its_meta(chute):
    # touch opens the file to set its times (futimens), and nothing is
    # written: no close seals, so the change is taken at once, as by name.
    (chute.outbox / "t.txt").write_bytes(b"times")
    run("touch", "-d", "2001-01-01 00:00:00 UTC", chute.outbox / "t.txt")
    it = chute.item("t.txt")
    assert it["mtime_sec"] == 978307200
    assert chute.open_meta(it["id"])["mtime"] == 978307200
    with open(chute.outbox / "t.txt", "rb") as f:
        os.fchmod(f.fileno(), 0o640)
        assert chute.open_meta(chute.item("t.txt")["id"])["mode"] == 0o640
    assert chute.item("t.txt")["id"] == it["id"]          # the same item, not a new one


def test_folders_and_misc_ops(chute):
    d = chute.outbox / "dir"
    os.mkdir(d)
    os.mkdir(d / "sub")
    (d / "sub" / "f").write_bytes(b"1")
    with pytest.raises(OSError) as e:
        os.rmdir(d / "sub")
    assert e.value.errno == errno.ENOTEMPTY
    os.rename(d, chute.outbox / "dir2")          # folder moves, items follow
    assert chute.active_paths() == ["dir2/sub/f"]
    os.mkdir(chute.outbox / "empty")
    os.rmdir(chute.outbox / "empty")
    st = os.statvfs(chute.outbox)
    assert st.f_bsize > 0
    fd = os.open(chute.outbox / "ft", os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b"0123456789")
    os.ftruncate(fd, 4)
    os.fsync(fd)
    assert os.pread(fd, 100, 0) == b"0123"
    os.close(fd)
    assert chute.decrypt(chute.item("ft")["id"]) == b"0123"


def test_kill9_then_remount_keeps_queue_and_blobs(chute):
    datas = {f"k{i}": os.urandom(5000 * (i + 1)) for i in range(3)}
    for n, d in datas.items():
        (chute.outbox / n).write_bytes(d)
    before = chute.active()
    chute.kill9()
    chute.mount()
    assert chute.active() == before
    for r in before:
        assert chute.decrypt(r["id"]) == datas[r["path"]]
    assert sorted(os.listdir(chute.outbox)) == sorted(datas)
    assert os.getxattr(chute.outbox / "k0", "user.chute.state") == b"queued"


def test_unmount_keeps_queue(chute):
    (chute.outbox / "u").write_bytes(b"u")
    chute.unmount()
    chute.mount()
    assert chute.active_paths() == ["u"]


def test_peers_appear_and_go_without_remount(chute):
    out = run(chute.fixture, "add-peer", chute.home, "office", chute.peer_recipient)
    assert out.stdout.decode().strip() == "office"
    assert sorted(os.listdir(chute.mnt / "outbox")) == ["home", "office"]
    (chute.mnt / "outbox" / "office" / "memo").write_bytes(b"memo")
    run(chute.fixture, "remove-peer", chute.home, "office")
    assert os.listdir(chute.mnt / "outbox") == ["home"]
    assert not (chute.mnt / "outbox" / "office").exists()
    # its queued file is kept and reported
    assert "office/memo\tqueued" in chute.status()


def test_command_line(tmp_path):
    exe = binary("chutefs")
    r = subprocess.run([str(exe)], capture_output=True)
    assert r.returncode == 2 and b"usage" in r.stderr
    (tmp_path / "m").mkdir()
    r = subprocess.run([str(exe), "-H", str(tmp_path / "none"), str(tmp_path / "m"), "-f"],
                       capture_output=True, timeout=10)
    assert r.returncode == 1 and b"pairtool init" in r.stderr


def test_exit_statuses_say_usage_failure_or_a_clean_stop(tmp_path):
    c = Chute(tmp_path)
    exe = str(c.exe)
    env = dict(os.environ, CHUTE_UPLOADER="off")
    r = subprocess.run([exe, "-H", "", str(c.mnt)], capture_output=True, timeout=30)
    assert r.returncode == 2 and b"-H needs a folder" in r.stderr, r.stderr
    r = subprocess.run([exe, "-H", str(c.home), str(c.mnt), "-o", "no_such_option"],
                       capture_output=True, timeout=30, env=env)
    assert r.returncode == 2 and b"no_such_option" in r.stderr, r.stderr
    assert not os.path.ismount(c.mnt)
    # a state written by a newer Chute is named as such
    with sqlite3.connect(c.home / "state.db") as con:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        con.execute(f"PRAGMA user_version = {version + 1}")
    r = subprocess.run([exe, "-H", str(c.home), str(c.mnt), "-f"], capture_output=True,
                       timeout=30, env=env)
    assert r.returncode == 1 and b"written by a newer Chute" in r.stderr, r.stderr
    with sqlite3.connect(c.home / "state.db") as con:
        con.execute(f"PRAGMA user_version = {version}")
    # systemd stops a unit with SIGTERM: a clean stop, not a failure
    c.mount()
    c.proc.send_signal(signal.SIGTERM)
    assert c.proc.wait(timeout=30) == 0
    c.proc = None
    wait_until(lambda: not os.path.ismount(c.mnt), timeout=10, what="unmount")
    c.check_sanitizers()


def test_chute_home_environment(tmp_path):
    c = Chute(tmp_path)
    env = dict(os.environ, CHUTE_HOME=str(c.home))
    proc = subprocess.Popen([str(c.exe), str(c.mnt), "-f"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.ismount(c.mnt), timeout=10, what="mount")
        assert os.listdir(c.mnt / "outbox") == ["home"]
    finally:
        run("fusermount3", "-u", c.mnt, check=False)
        proc.wait(timeout=10)


def mount_pid(mnt):
    """The pid of the chutefs serving mnt (its command line names it)."""
    for d in os.listdir("/proc"):
        try:
            args = (Path("/proc") / d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if d.isdigit() and args[0].endswith(b"chutefs") and str(mnt).encode() in args:
            return int(d)
    raise AssertionError(f"no chutefs process for {mnt}")


def deleted_state_files(pid, home):
    """Files of the state folder the process holds open after they were
    deleted (its threads open and close other descriptors meanwhile)."""
    fds, out = Path(f"/proc/{pid}/fd"), []
    for fd in os.listdir(fds):
        try:
            target = os.readlink(fds / fd)
        except FileNotFoundError:
            continue
        if target.startswith(str(home)) and target.endswith(" (deleted)"):
            out.append(target)
    return out


def test_a_mount_in_the_background_keeps_its_database_locks(tmp_path):
    # Without -f chutefs goes to the background. SQLite's locks belong to
    # a process: taken before the fork, the mount held none, and the next
    # program to close the queue's database (pairtool status) took itself
    # for the last user and deleted the WAL under the mount. What was
    # queued after that was lost on a crash.
    c = Chute(tmp_path)
    env = dict(os.environ, CHUTE_UPLOADER="off")
    r = subprocess.run([str(c.exe), "-H", str(c.home), str(c.mnt)], env=env,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert os.path.ismount(c.mnt)
    pid = mount_pid(c.mnt)
    try:
        (c.outbox / "e1.txt").write_bytes(b"E1")
        run(binary("pairtool"), "-H", c.home, "status")
        (c.outbox / "e2.txt").write_bytes(b"E2")
        assert deleted_state_files(pid, c.home) == []
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=10, what="the kill")
    finally:
        run("fusermount3", "-uz", c.mnt, check=False)
    assert sorted(r["path"] for r in c.rows()) == ["e1.txt", "e2.txt"]


def test_the_request_loop_runs_as_configured(chute):
    # The loop's configuration is ABI-versioned: a 3.12 config handed to
    # the 3.2 entry point read as clone_fd on and no idle workers kept, so
    # every request cloned /dev/fuse and started a thread of its own.
    def fuse_fds():
        fds = Path(f"/proc/{chute.proc.pid}/fd")
        return sum(1 for fd in os.listdir(fds) if os.readlink(fds / fd) == "/dev/fuse")

    def worker():
        for i in range(20):
            (chute.outbox / f"w{threading.get_ident()}-{i}").write_bytes(b"x")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fuse_fds() == 1
    assert len(chute.active()) == 80


def test_a_mount_in_the_background_reports_its_errors_and_exit_status(tmp_path):
    c = Chute(tmp_path)
    (tmp_path / "taken").mkdir()
    first = subprocess.run([str(c.exe), "-H", str(c.home), str(c.mnt)], capture_output=True,
                           timeout=30, env=dict(os.environ, CHUTE_UPLOADER="off"))
    assert first.returncode == 0, first.stderr
    try:
        r = subprocess.run([str(c.exe), "-H", str(c.home), str(tmp_path / "taken")],
                           capture_output=True, timeout=30)
        assert r.returncode == 1 and b"in use by another chutefs" in r.stderr, r.stderr
        assert not os.path.ismount(tmp_path / "taken")
    finally:
        run("fusermount3", "-u", c.mnt, check=False)
    wait_until(lambda: not os.path.ismount(c.mnt), timeout=10, what="unmount")


def test_allow_other_lets_other_users_only_what_the_modes_allow(tmp_path):
    # chutefs does every operation as itself: without the kernel checking
    # modes (default_permissions), -o allow_other let any local user read
    # the owner's files and send files as the owner.
    c = Chute(tmp_path)
    c.mnt = Path(tempfile.mkdtemp(prefix="chute-allow-other-", dir="/tmp"))
    os.chmod(c.mnt, 0o755)
    env = dict(os.environ, CHUTE_UPLOADER="off")
    r = subprocess.run([str(c.exe), "-H", str(c.home), str(c.mnt), "-o", "allow_other"],
                       env=env, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    try:
        secret = c.outbox / "private.txt"
        secret.write_bytes(b"secret")
        os.chmod(secret, 0o600)
        as_nobody = dict(user=65534, group=65534, extra_groups=[], capture_output=True,
                         timeout=30)
        r = subprocess.run(["cat", str(secret)], **as_nobody)
        assert r.returncode != 0 and b"Permission denied" in r.stderr
        r = subprocess.run(["sh", "-c", f"echo injected > '{c.outbox}/from-nobody.txt'"],
                           **as_nobody)
        assert r.returncode != 0 and b"Permission denied" in r.stderr
        assert c.active_paths() == ["private.txt"]
        assert secret.read_bytes() == b"secret"          # the owner still can
    finally:
        run("fusermount3", "-u", c.mnt, check=False)
        wait_until(lambda: not os.path.ismount(c.mnt), timeout=10, what="unmount")
        c.mnt.rmdir()


def test_o_direct_writes_and_reads_work_as_on_a_local_folder(chute, tmp_path):
    # dd oflag=direct, qemu-img, backup tools: O_DIRECT passed on to the
    # staging file made every write EINVAL (libfuse's buffers are not
    # aligned) and marked the file as a failed write.
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(16384))
    run("dd", f"if={src}", f"of={chute.outbox / 'direct.bin'}", "bs=4096", "oflag=direct",
        "status=none")
    assert os.getxattr(chute.outbox / "direct.bin", "user.chute.state") == b"queued"
    r = run("dd", f"if={chute.outbox / 'direct.bin'}", "bs=4096", "iflag=direct", "status=none")
    assert r.stdout == src.read_bytes()
    assert chute.decrypt(chute.item("direct.bin")["id"]) == src.read_bytes()


def test_the_callers_umask_applies_once(chute):
    # The kernel applies the caller's umask before asking chutefs to
    # create; chutefs's own umask on top took group write from files made
    # under umask 002, and the mode travels to the peer.
    run("sh", "-c", "umask 002 && touch f && mkdir d", cwd=chute.outbox)
    assert oct(os.stat(chute.outbox / "f").st_mode & 0o777) == oct(0o664)
    assert oct(os.stat(chute.outbox / "d").st_mode & 0o777) == oct(0o775)
    assert chute.item("f")["mode"] & 0o777 == 0o664


def test_a_handle_on_a_replaced_file_cannot_change_its_queued_item(chute):
    # b.txt is queued and open; a file still being written is renamed over
    # it. The old item stays queued until the new file is sealed, its
    # plaintext a hard link to the inode the old handle still writes to:
    # those writes must go to a private copy, never into the item.
    c = chute
    (c.outbox / "b.txt").write_bytes(b"version-1")
    old = c.item("b.txt")["id"]
    h = os.open(c.outbox / "b.txt", os.O_WRONLY)        # write-only: no reading its inode
    reader = os.open(c.outbox / "b.txt", os.O_RDONLY)
    new = os.open(c.outbox / "new.tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(new, b"version-2")
        os.rename(c.outbox / "new.tmp", c.outbox / "b.txt")
        os.pwrite(h, b"GARBAGE!!", 0)
        os.ftruncate(h, 4)
        # both handles of the replaced file see its writes, as on a local disk
        assert os.pread(reader, 100, 0) == b"GARB"
        assert c.blob(old).read_bytes() == b"version-1"
        assert c.decrypt(old) == b"version-1"
    finally:
        os.close(h)
        os.close(reader)
        os.close(new)
    (item,) = c.active()
    assert item["path"] == "b.txt" and c.decrypt(item["id"]) == b"version-2"


def test_a_path_too_long_to_travel_is_refused_when_made(chute):
    # A path travels in the sealed meta, 3072 bytes at most. Accepted at
    # create and refused only at the seal, the file stayed "writing" for
    # good (a shell's > ignores the close's error), and a rename to such a
    # path moved the file, cancelled its item, then said EIO.
    c = chute
    deep = "/".join(["d" * 250] * 12)                     # 3011 bytes
    os.makedirs(c.outbox / deep)
    with pytest.raises(OSError) as e:
        os.mkdir(c.outbox / deep / ("e" * 61))             # 3072 + 1
    assert e.value.errno == errno.ENAMETOOLONG
    r = run("sh", "-c", f"echo hello > '{c.outbox / deep / ('f' * 61)}'", check=False)
    assert r.returncode != 0 and b"File name too long" in r.stderr
    fits = deep + "/" + "g" * 58                           # 3070 bytes
    (c.outbox / fits).write_bytes(b"fits")
    (c.outbox / "short.txt").write_bytes(b"short")
    with pytest.raises(OSError) as e:
        os.rename(c.outbox / "short.txt", c.outbox / deep / ("h" * 61))
    assert e.value.errno == errno.ENAMETOOLONG
    assert (c.outbox / "short.txt").read_bytes() == b"short"
    # a folder's rename counts the longest path below it
    with pytest.raises(OSError) as e:
        os.rename(c.outbox / ("d" * 250), c.outbox / ("d" * 253))
    assert e.value.errno == errno.ENAMETOOLONG
    os.rename(c.outbox / ("d" * 250), c.outbox / ("d" * 252))   # exactly 3072
    assert c.active_paths() == sorted(["short.txt", "d" * 252 + fits[250:]])


def test_the_last_close_of_two_writers_returns_with_the_file_queued(chute):
    # The kernel sends a release without waiting for it: when A's close
    # returned, its release could still be on the way, B's flush then saw
    # two writers, and the file was queued only at a release after B's
    # close had returned — a crash in between lost it. Timing-dependent:
    # with the CPU busy, the old code missed about 1 file in 20 here.
    c = chute
    os.mkdir(c.outbox / "two")
    missed = []
    busy = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(3)]
    try:
        con = c.db()
        for i in range(300):
            p = f"two/f{i}"
            a = os.open(c.outbox / p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            b = os.open(c.outbox / p, os.O_WRONLY)
            os.write(a, b"hello ")
            os.pwrite(b, b"world\n", 6)
            os.close(a)
            os.close(b)
            if not con.execute("SELECT 1 FROM queue WHERE path=? AND state=0", (p,)).fetchone():
                missed.append(p)
        con.close()
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    assert missed == []
    assert len(c.active()) == 300
    assert c.decrypt(c.item("two/f7")["id"]) == b"hello world\n"


def test_the_mounts_own_files_are_private_whatever_the_umask(tmp_path):
    # The inbox's chunk file holds received files in plaintext: chutefs
    # makes its databases 0600 even under umask 022 and in a state folder
    # others may list, while outbox files keep the modes asked for.
    c = Chute(tmp_path)
    os.chmod(c.home, 0o755)
    old = os.umask(0o022)
    try:
        c.mount()
    finally:
        os.umask(old)
    try:
        (c.outbox / "shared.txt").write_bytes(b"x")
        assert os.stat(c.outbox / "shared.txt").st_mode & 0o777 == 0o644
        c.receive("got.txt", b"received")
        assert (c.inbox / "got.txt").read_bytes() == b"received"
    finally:
        c.unmount()
        c.check_sanitizers()
    own = [p for p in c.home.iterdir() if p.is_file()]
    assert any(p.name.startswith("inbox") for p in own), own
    loose = {p.name: oct(p.stat().st_mode & 0o777) for p in own if p.stat().st_mode & 0o077}
    assert loose == {}


def test_a_writer_whose_dup_was_closed_still_holds_the_seal(chute):
    # Closing a dup of writer A flushes A, but A is still open and writes
    # on: writer C's close must not take A for closed and seal the file
    # half-written (that would send it, then the rest as a replacement).
    c = chute
    a = os.open(c.outbox / "d.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    w = os.open(c.outbox / "d.txt", os.O_WRONLY)
    os.write(a, b"first ")
    os.pwrite(w, b"half ", 6)
    os.close(os.dup(a))
    os.close(w)
    assert c.active() == []
    os.pwrite(a, b"and the rest", 11)
    os.close(a)
    assert c.decrypt(c.item("d.txt")["id"]) == b"first half and the rest"
    assert len(c.rows()) == 1


def test_second_mount_of_the_same_state_is_refused(chute, tmp_path):
    other = tmp_path / "other-mnt"
    other.mkdir()
    r = subprocess.run([str(chute.exe), "-H", str(chute.home), str(other), "-f"],
                       capture_output=True, timeout=10)
    assert r.returncode == 1 and b"in use" in r.stderr
    assert not os.path.ismount(other)


def test_outbox_files_ask_for_one_mib_writes(chute):
    """cp and most copy loops size their writes from st_blksize; each write
    is one FUSE round trip, so the outbox asks for 1 MiB ones."""
    p = chute.outbox / "big-writes.bin"
    with open(p, "wb") as f:
        f.write(b"x")
        assert os.fstat(f.fileno()).st_blksize == 1 << 20
    assert os.stat(p).st_blksize == 1 << 20


@pytest.fixture
def small_chute(tmp_path):
    """A device whose state folder (staging, queue) is an 8 MiB tmpfs."""
    with small_tmpfs(tmp_path / "state", "8m"), mounted(Chute(tmp_path)) as c:
        yield c


def test_full_disk_in_the_outbox_fails_the_copy_and_queues_nothing(small_chute, tmp_path):
    c = small_chute
    src = tmp_path / "big.iso"
    src.write_bytes(os.urandom(12 << 20))        # more than the state folder holds
    r = run("cp", src, c.outbox / "big.iso", check=False)
    assert r.returncode != 0
    assert b"No space left on device" in r.stderr
    # nothing half-written is queued: the entry stays local, unsent
    assert c.active() == []
    assert "outgoing: 0\n" in c.status()
    assert os.getxattr(c.outbox / "big.iso", "user.chute.state") == b"write failed"
    # deleting it frees the room; the next file goes as usual
    os.unlink(c.outbox / "big.iso")
    small = os.urandom(100_000)
    (tmp_path / "note.txt").write_bytes(small)
    run("cp", tmp_path / "note.txt", c.outbox / "note.txt")
    assert c.active_paths() == ["note.txt"]
    assert c.decrypt(c.item("note.txt")["id"]) == small


def test_a_file_whose_write_failed_is_never_sent_cut_short(small_chute, tmp_path):
    # The disk fills mid-write, then room comes back before the close: the
    # seal could succeed, but what the file holds is not what was written.
    c = small_chute
    ballast = c.home / "ballast"
    ballast.write_bytes(b"\0" * (3 << 20))
    block = os.urandom(1 << 20)
    fd = os.open(c.outbox / "cut.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with pytest.raises(OSError) as e:
            for _ in range(16):
                os.write(fd, block)
        assert e.value.errno == errno.ENOSPC
        ballast.unlink()
    finally:
        os.close(fd)
    assert c.active() == []
    assert os.getxattr(c.outbox / "cut.bin", "user.chute.state") == b"write failed"
    # written anew from the start (O_TRUNC), it goes
    data = os.urandom(200_000)
    with open(c.outbox / "cut.bin", "wb") as f:
        f.write(data)
    assert c.active_paths() == ["cut.bin"]
    assert c.decrypt(c.item("cut.bin")["id"]) == data


@pytest.mark.parametrize("how", ["close", "fsync"])
def test_a_file_whose_fsync_failed_is_never_sent(tmp_path, how):
    # Linux reports a writeback error once and drops the lost pages: the
    # next fsync passes. So a file whose fsync failed — the seal's at close,
    # or the writer's own — is kept local as a failed write, not sealed by
    # a retry at the release or the next close, whatever that fsync says.
    c = Chute(tmp_path)
    c.mount(env=faults_env(fsync="victim.bin:1"))
    try:
        fd = os.open(c.outbox / "victim.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, os.urandom(300_000))
        if how == "fsync":
            with pytest.raises(OSError) as e:
                os.fsync(fd)
            assert e.value.errno == errno.EIO
            os.close(fd)
        else:
            with pytest.raises(OSError) as e:
                os.close(fd)
            assert e.value.errno == errno.EIO
        assert os.getxattr(c.outbox / "victim.bin", "user.chute.state") == b"write failed"
        # closed again, from another handle: still not sent
        with open(c.outbox / "victim.bin", "ab") as f:
            f.write(b"more")
    finally:
        c.unmount()                         # every release has run
    assert c.active() == []
    c.mount()
    try:
        assert os.getxattr(c.outbox / "victim.bin", "user.chute.state") == b"write failed"
        os.rename(c.outbox / "victim.bin", c.outbox / "renamed.bin")
        assert c.active() == []
        # written anew from the start, it goes
        data = os.urandom(1000)
        (c.outbox / "renamed.bin").write_bytes(data)
        assert c.active_paths() == ["renamed.bin"]
        assert c.decrypt(c.item("renamed.bin")["id"]) == data
    finally:
        c.unmount()
        c.check_sanitizers()


def test_rsync_partial_after_a_full_disk_sends_nothing_cut(small_chute, tmp_path):
    # rsync --partial renames its cut temporary file to the real name when a
    # write fails: the rename must not send what was never wholly written.
    c = small_chute
    ballast = c.home / "ballast"
    ballast.write_bytes(b"\0" * (3 << 20))
    src = tmp_path / "src"
    src.mkdir()
    (src / "movie.mkv").write_bytes(os.urandom(12 << 20))   # more than the state folder holds
    r = run("rsync", "--partial", src / "movie.mkv", str(c.outbox) + "/", check=False)
    assert r.returncode != 0
    assert b"No space left on device" in r.stderr
    assert os.path.exists(c.outbox / "movie.mkv")       # rsync kept the partial file
    assert c.active() == []
    assert os.getxattr(c.outbox / "movie.mkv", "user.chute.state") == b"write failed"
    # with room again, a rename of it or a truncate by name does not send it
    ballast.unlink()
    os.rename(c.outbox / "movie.mkv", c.outbox / "movie2.mkv")
    assert c.active() == []
    os.truncate(c.outbox / "movie2.mkv", 1000)
    assert c.active() == []
    # emptied, then written anew, it goes
    os.truncate(c.outbox / "movie2.mkv", 0)
    data = os.urandom(300_000)
    with open(c.outbox / "movie2.mkv", "ab") as f:
        f.write(data)
    assert c.active_paths() == ["movie2.mkv"]
    assert c.decrypt(c.item("movie2.mkv")["id"]) == data


def test_fallocate_reserves_and_changes_like_a_local_file(chute, tmp_path):
    # Downloaders and torrent clients reserve a file's size first; without
    # fallocate, glibc's posix_fallocate falls back to a write per block.
    run("fallocate", "-l", "1M", chute.outbox / "reserved.bin")
    assert os.path.getsize(chute.outbox / "reserved.bin") == 1 << 20
    assert chute.decrypt(chute.item("reserved.bin")["id"]) == b"\0" * (1 << 20)
    # a hole punched in a queued file changes a new item, never the queued one
    data = os.urandom(3 * 4096)
    (chute.outbox / "holey.bin").write_bytes(data)
    first = chute.item("holey.bin")["id"]
    run("fallocate", "--punch-hole", "--offset", "4096", "--length", "4096",
        chute.outbox / "holey.bin")
    punched = data[:4096] + b"\0" * 4096 + data[8192:]
    assert (chute.outbox / "holey.bin").read_bytes() == punched
    assert chute.decrypt(chute.item("holey.bin")["id"]) == punched
    assert chute.item("holey.bin")["id"] != first
    # only reserving room past the end (KEEP_SIZE) changes no byte: nothing new to send
    before = chute.item("holey.bin")["id"]
    run("fallocate", "--keep-size", "--offset", "0", "--length", "1M", chute.outbox / "holey.bin")
    assert os.path.getsize(chute.outbox / "holey.bin") == len(data)
    assert chute.item("holey.bin")["id"] == before
    # posix_fallocate takes the same road, not glibc's write per block
    fd = os.open(chute.outbox / "p.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.posix_fallocate(fd, 0, 8192)
    finally:
        os.close(fd)
    assert chute.decrypt(chute.item("p.bin")["id"]) == b"\0" * 8192


def fill_disk(path):
    """A ballast file at path that takes the last free byte of its disk."""
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC


def close_on_a_full_disk(c, files):
    """Write each of files ({name: data}) whole, then fill the disk under
    the queue before their closes: complete files the queue cannot take."""
    fds = [os.open(c.outbox / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
           for name in files]
    for fd, data in zip(fds, files.values()):
        os.write(fd, data)
    fill_disk(c.home / "ballast")
    for fd in fds:
        with pytest.raises(OSError) as e:
            os.close(fd)
        assert e.value.errno == errno.ENOSPC
    # marked at the release, which the kernel sends after close returned
    for name in files:
        wait_until(lambda: os.getxattr(c.outbox / name, "user.chute.state") == b"not queued",
                   what=f"{name} marked not queued")


def pairtool_status(c):
    """pairtool status of c's state folder: (text, the --json queue)."""
    pairtool = binary("pairtool")
    text = run(pairtool, "-H", c.home, "status").stdout.decode()
    q = json.loads(run(pairtool, "-H", c.home, "status", "--json").stdout)["queue"]
    return text, q


def test_a_file_the_full_queue_refused_is_queued_once_room_returns(small_chute):
    c = small_chute
    data = os.urandom(100_000)
    close_on_a_full_disk(c, {"photo.jpg": data})
    # it stays, says why, and the status lists it: not silently "writing"
    assert (c.outbox / "photo.jpg").read_bytes() == data
    assert os.getxattr(c.outbox / "photo.jpg", "user.chute.state") == b"not queued"
    assert b"no space left" in os.getxattr(c.outbox / "photo.jpg", "user.chute.error")
    status = c.status()
    assert "not queued" in status and "home/photo.jpg\tnot queued\t100000 bytes" in status
    assert c.active() == []
    # pairtool status, which reads the queue, lists it too
    text, q = pairtool_status(c)
    assert "  home/photo.jpg  not queued, 100000 bytes\n" in text
    assert q["not_queued"] == [{"peer": "home", "path": "photo.jpg", "size": 100000}]
    # room again: no close, no touch, it goes by itself
    (c.home / "ballast").unlink()
    wait_until(lambda: c.active_paths() == ["photo.jpg"], timeout=15, what="the retried seal")
    assert c.decrypt(c.item("photo.jpg")["id"]) == data
    assert os.getxattr(c.outbox / "photo.jpg", "user.chute.state") == b"queued"
    assert "not queued" not in c.status()
    text, q = pairtool_status(c)
    assert "not queued" not in text and q["not_queued"] == []
    assert [p["path"] for p in q["pending"]] == ["photo.jpg"]


def test_a_refused_file_moved_or_deleted_is_retried_as_it_is_now(small_chute):
    c = small_chute
    (c.outbox / "trip").mkdir()
    data = os.urandom(40_000)
    close_on_a_full_disk(c, {"trip/day1.jpg": data, "gone.txt": b"x" * 1000})
    os.rename(c.outbox / "trip", c.outbox / "holiday")
    os.unlink(c.outbox / "gone.txt")
    status = c.status()
    assert "home/holiday/day1.jpg\tnot queued" in status
    assert "trip/" not in status and "gone.txt" not in status
    (c.home / "ballast").unlink()
    wait_until(lambda: c.active_paths() == ["holiday/day1.jpg"], timeout=15,
               what="the retried seal under the new name")
    assert c.decrypt(c.item("holiday/day1.jpg")["id"]) == data


def test_a_refused_file_whose_next_change_failed_is_still_sent_at_its_close(small_chute):
    # The change through a handle takes the mark off (the close seals from
    # then on); a change that fails on the full disk must not leave the
    # file with neither the mark nor a seal at its close.
    c = small_chute
    data = os.urandom(30_000)
    close_on_a_full_disk(c, {"clip.mov": data})
    fd = os.open(c.outbox / "clip.mov", os.O_RDWR)
    try:
        with pytest.raises(OSError) as e:
            os.posix_fallocate(fd, 0, 64 << 20)      # the disk is still full
        assert e.value.errno == errno.ENOSPC
    finally:
        with pytest.raises(OSError):
            os.close(fd)                            # its seal: still no room
    (c.home / "ballast").unlink()
    wait_until(lambda: c.active_paths() == ["clip.mov"], timeout=15, what="the seal owed")
    assert c.decrypt(c.item("clip.mov")["id"])[:len(data)] == data


def test_a_file_the_disk_failed_to_write_back_is_never_sealed(tmp_path):
    # The disk under the state folder fails the writeback of [16, 24) MiB
    # and works again before the copy ends. The outbox's drop-behind waits
    # for that writeback, which takes the error from the seal's fsync: the
    # write must fail, and the file must not go with what the disk lost.
    MiB = 1 << 20
    data = os.urandom(40 * MiB)
    with failing_disk(tmp_path / "disk", root=tmp_path / "state") as disk, \
            mounted(Chute(tmp_path)) as c:
        failed = None
        fd = os.open(c.outbox / "film.mkv", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data[:16 * MiB + 256 * 1024])
            disk.starve()
            try:
                os.write(fd, data[16 * MiB + 256 * 1024:24 * MiB + 256 * 1024])
                time.sleep(2)               # the writeback fails meanwhile
            finally:
                disk.feed()
            for off in range(24 * MiB + 256 * 1024, len(data), MiB):
                os.write(fd, data[off:off + MiB])
        except OSError as e:
            failed = e
        finally:
            try:
                os.close(fd)
            except OSError as e:
                failed = failed or e
        assert failed is not None and failed.errno == errno.EIO
        assert c.active() == []
        assert os.getxattr(c.outbox / "film.mkv", "user.chute.state") == b"write failed"


def test_a_file_the_full_queue_refused_is_queued_after_a_remount(tmp_path):
    with small_tmpfs(tmp_path / "state", "8m"):
        c = Chute(tmp_path)
        c.mount()
        try:
            data = os.urandom(50_000)
            close_on_a_full_disk(c, {"notes.txt": data})
        finally:
            c.unmount()
        # unmounted, pairtool still finds it by its mark
        text, q = pairtool_status(c)
        assert "  home/notes.txt  not queued, 50000 bytes\n" in text
        assert q["not_queued"] == [{"peer": "home", "path": "notes.txt", "size": 50000}]
        (c.home / "ballast").unlink()
        with mounted(c):
            wait_until(lambda: c.active_paths() == ["notes.txt"], timeout=15,
                       what="the seal the earlier mount owed")
            assert c.decrypt(c.item("notes.txt")["id"]) == data


def test_a_refused_file_written_again_is_never_sealed_half_rewritten(tmp_path):
    # After the failed close, a program rewrites the file in place and the
    # mount is killed mid-way: the next mount must not send that mix.
    with small_tmpfs(tmp_path / "state", "8m"):
        c = Chute(tmp_path)
        c.mount()
        try:
            close_on_a_full_disk(c, {"half.bin": os.urandom(60_000),
                                     "whole.bin": os.urandom(60_000)})
            fd = os.open(c.outbox / "half.bin", os.O_WRONLY)
            os.pwrite(fd, b"new bytes, not all of them", 0)   # in place: no new room needed
            c.kill9()
            with pytest.raises(OSError):
                os.close(fd)                # the mount is gone
        finally:
            c.unmount()
        (c.home / "ballast").unlink()
        with mounted(c):
            # whole.bin shows the retries ran; half.bin was changed since its close
            wait_until(lambda: "whole.bin" in c.active_paths(), timeout=15, what="the retry")
            time.sleep(0.5)
            assert c.active_paths() == ["whole.bin"]
            assert os.getxattr(c.outbox / "half.bin", "user.chute.state") == b"writing"
            # and a close of it sends it whole, as written
            with open(c.outbox / "half.bin", "r+b") as f:
                f.write(b"done")
            wait_until(lambda: "half.bin" in c.active_paths(), timeout=5, what="the close")


def test_a_reader_open_does_not_hold_up_the_writers_seal(chute):
    # A preview or `tail -f` has the file open while it is written: the
    # writer's close seals it all the same.
    data = os.urandom(70_000)
    with open(chute.outbox / "log.txt", "wb") as w:
        w.write(data[:1000])
        w.flush()
        with open(chute.outbox / "log.txt", "rb") as r:
            w.write(data[1000:])
            w.close()
            assert chute.active_paths() == ["log.txt"]
            assert os.getxattr(chute.outbox / "log.txt", "user.chute.state") != b"writing"
            assert r.read() == data
    assert chute.decrypt(chute.item("log.txt")["id"]) == data
    # a truncate by name while only a reader has it open seals at its close
    with open(chute.outbox / "log.txt", "rb") as r:
        os.truncate(chute.outbox / "log.txt", 100)
        assert chute.item("log.txt")["size"] == 70_000
    wait_until(lambda: chute.item("log.txt")["size"] == 100, timeout=5,
               what="the truncated file queued at the reader's close")
