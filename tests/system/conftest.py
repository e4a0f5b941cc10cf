"""Shared fixtures for Chute's system tests.

Real binaries on loopback, no mocks. What lives here:

- ``binary(name)``: the path of a built program under ``$CHUTE_BUILD``
  (default ``../../build`` from this file).
- ``Relay``: one ``chuted`` process on 127.0.0.1 port 0 with its own data
  folder; ``kill(sig)``, ``stop()``, ``restart()`` on the same folder; its
  stderr is kept in a file and scanned for sanitizer reports at teardown.
- ``relay`` / ``relay_factory`` fixtures.
- ``Api``: a small JSON-over-http.client client with bearer tokens and raw
  requests, plus ``Inbox``/``Sender`` helpers for readable tests.
- ``wait_until``: every poll in the suite is bounded in time and count.

Every network peer is 127.0.0.1 or ::1.
"""

import base64
import contextlib
import hashlib
import http.client
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUILD = Path(os.environ.get("CHUTE_BUILD") or (HERE / "../../build")).resolve()

# The sanitized build is several times slower; bounded waits (never the
# behavioural latency bounds) scale with it.
SLOW = 4.0 if (BUILD.name == "san" or os.environ.get("CHUTE_SLOW")) else 1.0

SANITIZER_PATTERNS = (
    re.compile(rb"ERROR: AddressSanitizer"),
    re.compile(rb"ERROR: LeakSanitizer"),
    re.compile(rb"ERROR: \w+Sanitizer"),
    re.compile(rb"runtime error:"),
)

# Where each program's sources live: a missing binary is a skip only while
# its sources do not exist yet, and a failure once they do.
SOURCES = {"chuted": "server", "chutefs": "fs", "pairtool": "pairtool"}


def binary(name):
    path = BUILD / name
    if path.is_file() and os.access(path, os.X_OK):
        return path
    src = SOURCES.get(name)
    if src and not (REPO / src).is_dir():
        pytest.skip(f"{name} not written yet ({src}/ does not exist)")
    pytest.fail(f"{path} is missing: run `make` (CHUTE_BUILD={BUILD})")


def faults_env(**rules):
    """Environment for a process that preloads the fault shim
    (tests/shim/faults.c) with rules, e.g. fsync="item:1" sets
    CHUTE_FAULT_FSYNC=item:1."""
    shim = BUILD / "shim" / "libfaults.so"
    if not shim.is_file():
        pytest.fail(f"{shim} is missing: run `make` (CHUTE_BUILD={BUILD})")
    asan = os.environ.get("ASAN_OPTIONS", "")
    # The shim is preloaded ahead of a sanitized build's runtime.
    env = {"LD_PRELOAD": str(shim),
           "ASAN_OPTIONS": f"{asan + ':' if asan else ''}verify_asan_link_order=0"}
    env.update({f"CHUTE_FAULT_{k.upper()}": str(v) for k, v in rules.items()})
    return env


def wait_until(predicate, timeout=5.0, interval=0.02, what="condition", errors=()):
    """Poll predicate() until it returns a truthy value; bounded in time.
    Exceptions listed in `errors` count as a falsy answer."""
    deadline = time.monotonic() + timeout * SLOW
    last = None
    while True:
        try:
            last = predicate()
        except errors as e:
            last = e  # kept for the timeout's message; an exception is truthy
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout * SLOW:.1f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


@contextlib.contextmanager
def small_tmpfs(path, size):
    """A tmpfs of size (mount's syntax, "8m") on the new folder path, for
    full-disk tests; skips the test without root or tmpfs."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                        str(path)], capture_output=True, timeout=10)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {r.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], timeout=10)


class FailingDisk:
    """An ext4 filesystem on a loop device whose image is a sparse file in
    a small tmpfs: starve() fills the tmpfs, so the device fails every
    write to a block it never held (EIO to ext4's writeback, as a failing
    or thin-provisioned disk does), feed() gives the room back. Blocks
    written before stay writable: the journal and metadata, made at mkfs."""

    def __init__(self, path, root=None):
        self.path = Path(path)
        self.backing = self.path / "backing"
        self.root = Path(root) if root else self.path / "fs"
        self.filler = self.backing / "filler"
        self.device = None

    def run(self, *cmd):
        try:
            r = subprocess.run([str(c) for c in cmd], capture_output=True, timeout=60)
        except subprocess.TimeoutExpired as e:
            raise OSError(f"{cmd[0]}: timed out") from e
        if r.returncode != 0:
            raise OSError(f"{cmd[0]}: {r.stderr.decode().strip()}")
        return r.stdout.decode().strip()

    def make(self, size_mib):
        """The filesystem, mounted; OSError if this machine cannot."""
        image = self.backing / "disk.img"
        self.run("truncate", "-s", f"{size_mib}M", image)
        self.run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0",
                 image)
        self.device = self.run("losetup", "--find", "--show", image)
        self.run("mount", "-o", "discard", self.device, self.root)

    def starve(self):
        """Every block the device has not written yet fails from now."""
        os.sync()
        self.run("fstrim", self.root)          # freed blocks go back to the tmpfs
        vfs = os.statvfs(self.backing)
        self.run("fallocate", "-l", str(vfs.f_bavail * vfs.f_frsize), self.filler)

    def feed(self):
        self.filler.unlink()

    def remount(self):
        """Drop every cached page: what is read next comes from the device."""
        self.run("umount", self.root)
        self.run("mount", "-o", "discard", self.device, self.root)

    def close(self):
        subprocess.run(["umount", "-l", str(self.root)], capture_output=True, timeout=30)
        if self.device:
            subprocess.run(["losetup", "-d", self.device], capture_output=True, timeout=30)


@contextlib.contextmanager
def failing_disk(path, size_mib=256, root=None):
    """A FailingDisk at the new folder path, mounted on root (a new folder;
    path/fs by default); skips the test without root, loop devices or
    mkfs.ext4."""
    if os.geteuid() != 0:
        pytest.skip("a loop device needs root")
    disk = FailingDisk(path, root)
    with small_tmpfs(disk.path, f"{size_mib + 64}m"):
        disk.backing.mkdir()
        disk.root.mkdir()                   # a test's mistake fails, never skips
        try:
            disk.make(size_mib)
        except OSError as e:
            disk.close()
            pytest.skip(f"cannot make a loop filesystem: {e}")
        try:
            yield disk
        finally:
            disk.close()


def inbox_cache(home, timeout=10):
    """A connection to a device's inbox cache: its index (inbox.db), with
    its chunk file (inbox-data.db) attached, so that "chunks" names the
    chunk file's table. Neither file is made here: sqlite3.OperationalError
    until chutefs has made them."""
    con = sqlite3.connect(f"file:{home / 'inbox.db'}?mode=rw", uri=True, timeout=timeout)
    try:
        con.execute("ATTACH DATABASE ? AS data_file", (f"file:{home / 'inbox-data.db'}?mode=rw",))
    except BaseException:
        con.close()
        raise
    return con


def new_item_id():
    """A sender-chosen item id: 128+ random bits, [A-Za-z0-9_-]."""
    return secrets.token_urlsafe(24)  # 32 characters


def b64(data):
    return base64.b64encode(data).decode()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


B64URL_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
B64URL_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
NOT_FOUND = {"error": "not found"}


# --- HTTP client --------------------------------------------------------------

class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    @property
    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"not JSON ({e}): status {self.status} body {self.body[:300]!r}")

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


class Api:
    """A tiny client for the relay: one connection per request, JSON in/out.

    ``body`` may be bytes (sent as is), str (utf-8) or any other value
    (sent as JSON with Content-Type application/json). ``token`` defaults to
    the client's own; pass ``token=None`` explicitly via ``auth=False``."""

    def __init__(self, base_url, token=None, timeout=10.0, cafile=None, access_token=None,
                 source=None):
        u = urllib.parse.urlsplit(base_url)
        self.base_url = base_url.rstrip("/")
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port
        self.token = token
        self.timeout = timeout
        self.cafile = cafile
        self.access_token = access_token
        # another loopback address to connect from (127.0.0.2): the relay
        # counts its per-IP connection slots apart
        self.source = (source, 0) if source else None
        assert self.host in ("127.0.0.1", "::1", "localhost"), base_url

    def with_token(self, token):
        return Api(self.base_url, token, self.timeout, self.cafile, self.access_token,
                   self.source[0] if self.source else None)

    def connection(self, timeout=None):
        t = (timeout if timeout is not None else self.timeout) * SLOW
        if self.scheme == "https":
            ctx = ssl.create_default_context(cafile=self.cafile)
            return http.client.HTTPSConnection(self.host, self.port, timeout=t, context=ctx,
                                               source_address=self.source)
        return http.client.HTTPConnection(self.host, self.port, timeout=t,
                                          source_address=self.source)

    def request(self, method, path, body=None, headers=None, token=..., timeout=None,
                content_type=None):
        hdrs = {}
        if token is ...:
            token = self.token
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        if self.access_token:
            hdrs["Chute-Access-Token"] = self.access_token
        if body is not None and not isinstance(body, (bytes, bytearray, str)):
            body = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif isinstance(body, str):
            body = body.encode()
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, r.reason, r.getheaders(), data)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def head(self, path, **kw):
        return self.request("HEAD", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # -- raw sockets -----------------------------------------------------------

    def raw_socket(self, timeout=5.0):
        s = socket.create_connection((self.host, self.port), timeout=timeout * SLOW)
        if self.scheme == "https":
            ctx = ssl.create_default_context(cafile=self.cafile)
            s = ctx.wrap_socket(s, server_hostname=self.host)
        return s

    def raw(self, data, timeout=5.0, shutdown=False):
        """Send bytes as they are; return everything the server sends back
        until it closes the connection or `timeout` passes with no data."""
        s = self.raw_socket(timeout)
        try:
            try:
                s.sendall(data)
                if shutdown:
                    s.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server closed early; read what it said, if anything
            return read_until_close(s, timeout)
        finally:
            s.close()

    # -- the protocol, spelled out -----------------------------------------------

    def create_inbox(self):
        r = self.post("/v1/inboxes", b"", token=None)
        assert r.status == 201, r
        j = r.json
        return Inbox(self, j["inbox"], j["owner_token"])

    def health(self):
        return self.get("/v1/health", token=None)

    def metrics(self):
        r = self.get("/metrics", token=None)
        assert r.status == 200, r
        return parse_prometheus(r.body.decode())


def read_until_close(s, timeout):
    """Read from a socket until EOF, a reset, or `timeout` without data."""
    chunks = []
    s.settimeout(timeout * SLOW)
    deadline = time.monotonic() + 4 * timeout * SLOW  # a bound on a trickling peer too
    try:
        while time.monotonic() < deadline:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    except (socket.timeout, ConnectionResetError, ssl.SSLError):
        pass
    return b"".join(chunks)


def patch_head(path, token, offset, length, extra=""):
    """The request line and headers of a raw PATCH (an append, §6.5)."""
    return (f"PATCH {path} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token}\r\nUpload-Offset: {offset}\r\n"
            "Content-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


def status_line(raw):
    """The status code of the first response in raw bytes, or None."""
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


class Inbox:
    def __init__(self, api, inbox_id, owner_token):
        self.id = inbox_id
        self.owner_token = owner_token
        self.owner = api.with_token(owner_token)
        self.path = f"/v1/inboxes/{inbox_id}"

    def add_sender(self):
        r = self.owner.post(f"{self.path}/senders", b"")
        assert r.status == 201, r
        j = r.json
        return Sender(self, j["sender"], j["send_token"])

    def item_path(self, item):
        return f"{self.path}/items/{item}"

    def info(self):
        r = self.owner.get(self.path)
        assert r.status == 200, r
        return r.json

    def list(self, after=0, wait=0, partial=False, timeout=None, api=None):
        q = f"after={after}&wait={wait}" + ("&partial=1" if partial else "")
        r = (api or self.owner).get(f"{self.path}/items?{q}",
                                    timeout=timeout if timeout is not None else 10 + wait)
        return r

    def listed(self, **kw):
        r = self.list(**kw)
        assert r.status == 200, r
        return r.json["items"]

    def listed_ids(self, **kw):
        return [i["item"] for i in self.listed(**kw)]

    def all_listed(self, limit_pages=100):
        """Every listed item, following the cursor (bounded pages)."""
        out, after = [], 0
        for _ in range(limit_pages):
            j = self.list(after=after).json
            out.extend(j["items"])
            if not j["items"]:
                return out
            after = j["cursor"]
        raise AssertionError("listing did not end")

    def download(self, item, range_=None, api=None):
        h = {"Range": range_} if range_ else None
        return (api or self.owner).get(f"{self.item_path(item)}/data", headers=h)

    def ack(self, item):
        return self.owner.delete(self.item_path(item))

    def status(self, item, api=None):
        return (api or self.owner).get(f"{self.item_path(item)}/status")


class Sender:
    def __init__(self, inbox, sender_id, token):
        self.inbox = inbox
        self.id = sender_id
        self.token = token
        self.api = inbox.owner.with_token(token)

    def create(self, item, size, meta=b"meta", **kw):
        return self.api.put(self.inbox.item_path(item),
                            {"size": size, "meta": b64(meta)}, **kw)

    def append(self, item, offset, data, content_type="application/offset+octet-stream", **kw):
        headers = {"Upload-Offset": str(offset)}
        headers.update(kw.pop("headers", {}))
        return self.api.patch(self.inbox.item_path(item), bytes(data), headers=headers,
                              content_type=content_type, **kw)

    def offset(self, item):
        r = self.api.head(self.inbox.item_path(item))
        assert r.status == 200, r
        return int(r.header("Upload-Offset")), int(r.header("Upload-Length"))

    def status(self, item):
        return self.api.get(f"{self.inbox.item_path(item)}/status")

    def cancel(self, item):
        return self.api.delete(self.inbox.item_path(item))

    def upload(self, data, item=None, meta=b"meta", pieces=1):
        """Create and append an item completely; returns its id."""
        item = item or new_item_id()
        r = self.create(item, len(data), meta)
        assert r.status == 201, r
        step = max(1, -(-len(data) // pieces))
        off = 0
        while off < len(data):
            chunk = data[off:off + step]
            r = self.append(item, off, chunk)
            assert r.status == 204, r
            off += len(chunk)
            assert int(r.header("Upload-Offset")) == off
        return item


def parse_prometheus(text):
    """Prometheus text format 0.0.4 → {(name, frozenset(labels)): value}.
    Fails on any line that is not a comment, blank, or a valid sample."""
    sample = re.compile(
        r'^([a-zA-Z_:][a-zA-Z0-9_:]*)'
        r'(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,|(?=\})))*)\})?'
        r'[ \t]+([-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|NaN|Inf))'
        r'(?:[ \t]+-?[0-9]+)?$')
    label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            if line.startswith("# TYPE"):
                parts = line.split()
                assert len(parts) == 4 and parts[3] in (
                    "counter", "gauge", "histogram", "summary", "untyped"), line
            continue
        m = sample.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = frozenset(label.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(metrics, name, **labels):
    return metrics.get((name, frozenset(labels.items())))


# What each version of the relay's schema added (server/store.c, migrations),
# and how a test takes it away again to make a database of an older relay.
SCHEMA_UNDO = {
    2: ["ALTER TABLE items DROP COLUMN deferred"],
    3: ["DROP INDEX senders_token"],
    4: ["DROP TRIGGER live_stats_insert", "DROP TRIGGER live_stats_delete",
        "DROP TRIGGER live_stats_update", "DROP TABLE live_stats"],
}


def downgrade_schema(relay, version):
    """Turn the stopped relay's database into one of schema `version`."""
    con = sqlite3.connect(relay.database())
    with con:
        for v in sorted(SCHEMA_UNDO, reverse=True):
            if v > version:
                for sql in SCHEMA_UNDO[v]:
                    con.execute(sql)
        con.execute(f"PRAGMA user_version = {version}")
    con.close()


# --- the relay process -----------------------------------------------------------

class RelayStartError(Exception):
    pass


class Relay:
    """One chuted process. The data folder outlives restarts."""

    def __init__(self, workdir, args=(), listen="127.0.0.1:0", tls=None,
                 access_token=None, env=None, data_dir=None):
        self.exe = binary("chuted")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = Path(data_dir) if data_dir else self.workdir / "data"
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.args = list(args)
        self.listen = listen
        self.tls = tls  # (cert, key) or None
        self.access_token = access_token
        self.env = dict(os.environ, **(env or {}))
        self.log_path = self.workdir / "chuted.stderr"
        self.port_file = self.workdir / "chuted.port"
        self.proc = None
        self.port = None
        self.expected_exit = False
        self.starts = 0

    # -- lifecycle -------------------------------------------------------------------

    def command(self):
        cmd = [str(self.exe), "--listen", self.listen, "--data", str(self.data_dir),
               "--port-file", str(self.port_file)]
        if self.tls:
            cmd += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        if self.access_token:
            cmd += ["--access-token", self.access_token]
        # Tests set up many devices a minute from one address; a test of
        # the limit gives its own value after this one.
        cmd += ["--inbox-creates-per-min", "0"]
        return cmd + [str(a) for a in self.args]

    def start(self, timeout=10.0):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if self.port_file.exists():
            self.port_file.unlink()
        self.starts += 1
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        log.write(f"=== start {self.starts}: {' '.join(self.command())}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, env=self.env)
        log.close()
        self.expected_exit = False
        deadline = time.monotonic() + timeout * SLOW
        while True:
            if self.proc.poll() is not None:
                self.expected_exit = True  # the caller gets the error
                raise RelayStartError(f"chuted exited with {self.proc.returncode} while starting:\n"
                                      + self.stderr()[-3000:])
            try:
                text = self.port_file.read_text().strip()
            except FileNotFoundError:
                text = ""
            if text.isdigit() and self._connectable(int(text)):
                self.port = int(text)
                return self
            if time.monotonic() > deadline:
                self.expected_exit = True
                self.proc.kill()
                self.proc.wait()
                raise RelayStartError("chuted not ready in time:\n" + self.stderr()[-3000:])
            time.sleep(0.01)

    def _connectable(self, port):
        host = "::1" if self.listen.startswith("[::1]") else "127.0.0.1"
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            return False

    @property
    def pid(self):
        return self.proc.pid

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def host(self):
        return "::1" if self.listen.startswith("[::1]") else "127.0.0.1"

    @property
    def url(self):
        scheme = "https" if self.tls else "http"
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{h}:{self.port}"

    def api(self, token=None, **kw):
        kw.setdefault("cafile", str(self.tls[0]) if self.tls else None)
        kw.setdefault("access_token", self.access_token)
        return Api(self.url, token, **kw)

    def kill(self, sig=signal.SIGKILL, timeout=10.0):
        """Send sig and wait for the exit; returns the return code."""
        self.expected_exit = True
        self.proc.send_signal(sig)
        return self.proc.wait(timeout * SLOW)

    def stop(self, timeout=30.0):
        """SIGTERM, then SIGKILL after `timeout` (longer than chuted's own
        10 s grace for running requests); returns the return code."""
        if self.proc is None:
            return None
        self.expected_exit = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("chuted ignored SIGTERM for %.0fs" % (timeout * SLOW))
        return self.proc.returncode

    def restart(self, sig=signal.SIGTERM):
        """Stop (with sig) if running and start again on the same data folder.
        The port may change: read .url again afterwards."""
        if self.running:
            if sig == signal.SIGTERM:
                self.stop()
            else:
                self.kill(sig)
        return self.start()

    # -- diagnostics -----------------------------------------------------------------

    def stderr(self):
        try:
            return self.log_path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def sanitizer_report(self):
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return None
        for p in SANITIZER_PATTERNS:
            m = p.search(data)
            if m:
                return data[max(0, m.start() - 200):m.start() + 4000].decode(errors="replace")
        return None

    def vm(self, field="VmHWM"):
        """A field of /proc/PID/status in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return None

    def data_files(self):
        return sorted(p for p in self.data_dir.rglob("*") if p.is_file())

    def database(self):
        """The SQLite database file under the data folder."""
        dbs = [p for p in self.data_files() if p.stat().st_size >= 16
               and p.open("rb").read(16) == b"SQLite format 3\x00"]
        assert len(dbs) == 1, f"expected one SQLite database under {self.data_dir}, found {dbs}"
        return dbs[0]

    def integrity_check(self, scratch):
        """PRAGMA integrity_check on a copy of the database (and its WAL),
        so the check does not recover or checkpoint the relay's own files."""
        db = self.database()
        scratch = Path(scratch)
        scratch.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal"):
            src = Path(str(db) + suffix)
            if src.exists():
                shutil.copyfile(src, scratch / (db.name + suffix))
        out = subprocess.run(["sqlite3", str(scratch / db.name), "PRAGMA integrity_check;"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip() + out.stderr.strip()

    def finish(self):
        """Teardown: stop, then report what went wrong, if anything."""
        problems = []
        if self.proc is not None:
            died = self.proc.poll() is not None and not self.expected_exit
            if died:
                problems.append(f"chuted died during the test (exit {self.proc.returncode})")
            try:
                self.stop()
            except AssertionError as e:
                problems.append(str(e))
        report = self.sanitizer_report()
        if report:
            problems.append("sanitizer report in chuted's stderr:\n" + report)
        elif problems:
            problems.append("stderr tail:\n" + self.stderr()[-2000:])
        return problems


class GateProxy:
    """A TCP forwarder from a loopback port to the relay that can hold the
    bytes flowing one way (toward="clients": the relay's answers, or
    "relay": the clients' requests): after hold_after(n), it forwards n
    more bytes that way, then none until release(); with rate (bytes per
    second) it forwards them no faster. The relay stays real; the gate
    makes "killed after some of the download" or "while one request is
    being sent" a state a test can wait for instead of a race against a
    fast transfer."""

    def __init__(self, upstream_port, toward="clients", rate=None):
        assert toward in ("clients", "relay")
        self.upstream_port = upstream_port
        self.toward, self.rate = toward, rate
        self.forwarded = 0            # bytes gone the gated way
        self.budget = None            # bytes still allowed that way; None: no limit
        self.cond = threading.Condition()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.closed = False
        self.links = []
        threading.Thread(target=self._serve, daemon=True).start()

    def hold_after(self, n):
        with self.cond:
            self.budget = n

    def held(self):
        """True once the gate has used up its budget."""
        with self.cond:
            return self.budget == 0

    def release(self):
        with self.cond:
            self.budget = None
            self.cond.notify_all()

    def close(self):
        self.closed = True
        self.release()
        self.sock.close()
        for s in list(self.links):
            with contextlib.suppress(OSError):
                s.close()

    def _serve(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            up.settimeout(None)
            self.links += [client, up]
            threading.Thread(target=self._pump, args=(client, up, self.toward == "relay"),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(up, client, self.toward == "clients"),
                             daemon=True).start()

    def _allow(self, want):
        """How many of want bytes may go toward the client now (waits, bounded)."""
        with self.cond:
            self.cond.wait_for(lambda: self.budget != 0 or self.closed, timeout=300)
            if self.budget is None or self.closed:
                return want
            n = min(want, self.budget)
            self.budget -= n
            return n

    def _pump(self, src, dst, gated):
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                while data:
                    n = self._allow(len(data)) if gated else len(data)
                    if n == 0:       # still held after the bound: give up the link
                        return
                    dst.sendall(data[:n])
                    data = data[n:]
                    if gated:
                        with self.cond:
                            self.forwarded += n
                        if self.rate:
                            time.sleep(n / self.rate)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relay_factory(tmp_path):
    """relay_factory(*args, tls=None, access_token=None, listen=..., start=True)
    → a started Relay; all of them are stopped at teardown, and the test fails
    if one crashed or printed a sanitizer report."""
    relays = []

    def make(*args, start=True, **kw):
        r = Relay(tmp_path / f"relay{len(relays)}", args, **kw)
        relays.append(r)
        if start:
            r.start()
        return r

    yield make
    problems = []
    for r in relays:
        problems += r.finish()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def relay(relay_factory):
    return relay_factory()


@pytest.fixture
def api(relay):
    return relay.api()


@pytest.fixture
def inbox(api):
    return api.create_inbox()


@pytest.fixture
def sender(inbox):
    return inbox.add_sender()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "deb: builds the Debian packages (make deb, ~25 s); "
        "deselect with -m 'not deb'")
    config.addinivalue_line(
        "markers", "big: moves a gigabyte end to end; deselect with -m 'not big'")


class StatusProxy:
    """An HTTP proxy in front of the real relay: while `refuse` holds a
    status, the requests `match(method, path)` picks get it (with a JSON
    error) instead of the relay's answer; every other request is forwarded
    as it is. It records the DELETEs it forwards (acks, rejects). While
    `hold(method, path)` is true of a request, it waits (60 s at most) for
    `release` to be set before going on; `held` counts those. With
    `drop_range`, the requests `match` picks lose their Range header (the
    relay answers 200 with the whole body, as a proxy may); `ranges_dropped`
    counts those. While `lose(method, path)` is true of a request, it is
    forwarded but its answer is not: the connection closes, as when a
    network drops it on the way back; `lost` counts those."""

    def __init__(self, upstream_port, match):
        self.refuse, self.refused, self.deletes = None, 0, []
        self.lose, self.lost = None, 0
        self.hold, self.held, self.release = None, 0, threading.Event()
        self.drop_range, self.ranges_dropped = False, 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                if proxy.hold and proxy.hold(self.command, self.path.split("?")[0]):
                    proxy.held += 1
                    proxy.release.wait(60)
                if proxy.refuse and match(self.command, self.path.split("?")[0]):
                    proxy.refused += 1
                    msg = b'{"error":"answered by the test proxy"}'
                    self.send_response(proxy.refuse)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                if self.command == "DELETE":
                    proxy.deletes.append(self.path)
                drop = ["host", "connection"]
                if proxy.drop_range and "Range" in self.headers and \
                        match(self.command, self.path.split("?")[0]):
                    proxy.ranges_dropped += 1
                    drop.append("range")
                up = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=120)
                try:
                    up.request(self.command, self.path, body=body, headers={
                        k: v for k, v in self.headers.items() if k.lower() not in drop})
                    r = up.getresponse()
                    data = r.read()
                    if proxy.lose and proxy.lose(self.command, self.path.split("?")[0]):
                        proxy.lost += 1
                        self.close_connection = True
                        return
                    self.send_response(r.status)
                    for k, v in r.getheaders():
                        if k.lower() not in ("content-length", "connection", "transfer-encoding",
                                             "date", "server"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)) if self.command != "HEAD"
                                     else r.getheader("Content-Length", "0"))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    up.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
