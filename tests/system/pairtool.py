"""Helpers to drive real pairtool processes in system tests.

- ``Device``: one device's state folder; ``run()`` a pairtool command,
  ``init()``, ``invite()`` (a running process whose code is read from its
  first stdout line), ``join()``, ``peers()``, ``db()`` (the state database
  through Python's sqlite3, read-only, for tokens the CLI never prints).
- ``pair(a, b)``: a whole successful pairing, both sides approving.
- ``FlipProxy``: an HTTP forwarder on 127.0.0.1 that can flip one bit of
  one pairing message body on its way to the relay, store one twice, or
  lose the relay's answer to one.

Every wait is bounded. Every network peer is 127.0.0.1.
"""

import base64
import http.client
import json
import os
import selectors
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

from conftest import SANITIZER_PATTERNS, SLOW, binary


def assert_clean(stderr):
    """No sanitizer report in a pairtool's stderr."""
    data = stderr.encode(errors="replace") if isinstance(stderr, str) else stderr
    for p in SANITIZER_PATTERNS:
        assert not p.search(data), "sanitizer report from pairtool:\n" + \
            data.decode(errors="replace")[-4000:]


class Device:
    def __init__(self, home, name, relay_url):
        self.home = Path(home)
        self.name = name
        self.relay_url = relay_url
        self.exe = str(binary("pairtool"))
        self.wrap = []      # a command every pairtool runs under (faketime)

    def cmd(self, *args):
        return [*self.wrap, self.exe, "-H", str(self.home), *[str(a) for a in args]]

    def clock_off_by(self, offset):
        """Every later pairtool of this device sees the wall clock moved by
        offset (faketime's "+2h", "-90m"); its monotonic clock is left alone."""
        asan = os.environ.get("ASAN_OPTIONS", "")
        self.wrap = ["env", "FAKETIME_DONT_FAKE_MONOTONIC=1",
                     # libfaketime is preloaded ahead of a sanitized build's runtime
                     f"ASAN_OPTIONS={asan + ':' if asan else ''}verify_asan_link_order=0",
                     "faketime", "-f", offset]

    def run(self, *args, input=None, timeout=30, check=False):
        r = subprocess.run(self.cmd(*args), input=input, capture_output=True,
                           text=True, timeout=timeout * SLOW)
        assert_clean(r.stderr)
        if check:
            assert r.returncode == 0, f"pairtool {args} failed {r.returncode}: {r.stderr}"
        return r

    def init(self, *extra):
        return self.run("init", "--relay", self.relay_url, "--name", self.name, *extra,
                        check=True)

    def invite(self, *args):
        return Invite(self, args)

    def join(self, code, *args, input=None, timeout=60):
        return self.run("join", code, *args, input=input, timeout=timeout)

    def join_process(self, code, *args):
        return subprocess.Popen(self.cmd("join", code, *args), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def peers(self):
        r = self.run("peers", "--json", check=True)
        return json.loads(r.stdout)

    def peer_names(self):
        return sorted(p["name"] for p in self.peers())

    def recipient(self):
        return self.run("recipient", check=True).stdout.strip()

    def db(self):
        uri = f"file:{self.home / 'state.db'}?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=5)

    def device_row(self):
        with self.db() as c:
            c.row_factory = sqlite3.Row
            return dict(c.execute("SELECT * FROM device").fetchone())

    def peer_rows(self):
        with self.db() as c:
            c.row_factory = sqlite3.Row
            return [dict(r) for r in c.execute("SELECT * FROM peers ORDER BY name")]


class Invite:
    """A running `pairtool invite`; .code is the first line of its stdout."""

    def __init__(self, device, args):
        self.proc = subprocess.Popen(device.cmd("invite", *args), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._stderr = b""
        self.code = self._read_first_line(10)

    def _read_first_line(self, timeout):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout * SLOW
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                self.proc.kill()
                raise AssertionError("invite printed no code in time")
            chunk = os.read(fd, 4096)
            if not chunk:
                out, err = self.proc.communicate(timeout=5)
                raise AssertionError(f"invite exited {self.proc.returncode} without a code: "
                                     f"{err.decode(errors='replace')}")
            buf += chunk
        sel.close()
        self._rest = buf.split(b"\n", 1)[1]
        return buf.split(b"\n", 1)[0].decode()

    def wait_for_stderr(self, needle, timeout=20):
        """Read stderr until it contains needle (the process keeps running)."""
        fd = self.proc.stderr.fileno()
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout * SLOW
        try:
            while needle.encode() not in self._stderr:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise AssertionError(f"invite never said {needle!r}: {self._stderr!r}")
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise AssertionError(f"invite ended before saying {needle!r}: "
                                         f"{self._stderr!r}")
                self._stderr += chunk
        finally:
            sel.close()

    def answer(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def finish(self, timeout=60):
        """Wait for the end; returns (returncode, stdout after the code, stderr)."""
        try:
            out, err = self.proc.communicate(timeout=timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"invite did not finish: {(self._stderr + err)!r}")
        assert_clean(self._stderr + err)
        return (self.proc.returncode, (self._rest + out).decode(),
                (self._stderr + err).decode(errors="replace"))


def pair(inviter, joiner):
    """Pair two initialised devices, both approving with --yes; returns the
    folder names (the inviter's name for the joiner, the joiner's for the
    inviter)."""
    inv = inviter.invite("--yes")
    j = joiner.join(inv.code, "--yes")
    try:
        rc, out, err = inv.finish()
    except AssertionError as e:
        raise AssertionError(f"{e}\njoin exited {j.returncode}: {j.stderr}") from None
    assert j.returncode == 0, f"join failed: {j.stderr}\ninvite: {err}"
    assert rc == 0, f"invite failed: {err}\njoin: {j.stderr}"
    return out.strip(), j.stdout.strip()


# --- a bit-flipping HTTP forwarder ---------------------------------------------

def _read_http_message(sock, first=b""):
    """One HTTP/1.1 request from sock: (head bytes, body bytes) or None."""
    buf = first
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
        if len(buf) > 1 << 20:
            return None
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head, body


class FlipProxy:
    """Forwards HTTP requests from 127.0.0.1:<port> to the relay, one
    upstream connection per request (Connection: close both ways). When
    flip_type is set, the first pairing message (POST .../messages) whose
    decoded body starts with that type byte gets one bit flipped at
    flip_offset (counted in the decoded body), once. When dup_type is set,
    the first message of that type is stored on the relay twice, as a
    sender's retry after a lost answer would. When lose_type is set, the
    first message of that type reaches the relay but its answer never
    comes back: the connection is closed without it, and only once a
    pairing session was closed through the forwarder (10 s at most), so
    the sender's retry finds the session closed."""

    def __init__(self, upstream_port, flip_type=None, flip_offset=5, dup_type=None,
                 lose_type=None):
        self.upstream_port = upstream_port
        self.flip_type = flip_type
        self.flip_offset = flip_offset
        self.flipped = 0
        self.dup_type = dup_type      # deliver this message type twice, as a retry would
        self.duplicated = 0
        self.lose_type = lose_type    # the relay's answer to this message type is lost
        self.lost = 0
        self.session_closed = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stopping = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _maybe_flip(self, head, body):
        request_line = head.split(b"\r\n", 1)[0]
        if self.flip_type is None or not request_line.startswith(b"POST ") \
                or b"/messages" not in request_line:
            return body
        try:
            doc = json.loads(body)
            raw = bytearray(base64.b64decode(doc["body"]))
        except (ValueError, KeyError):
            return body
        with self.lock:
            if self.flipped or not raw or raw[0] != self.flip_type:
                return body
            raw[self.flip_offset] ^= 0x01
            self.flipped += 1
        return json.dumps({"body": base64.b64encode(bytes(raw)).decode()}).encode()

    @staticmethod
    def _sent_type(head, body):
        """The type byte of a pairing message a POST sends, or None."""
        if b"/messages" not in head.split(b"\r\n", 1)[0] or not head.startswith(b"POST "):
            return None
        try:
            raw = base64.b64decode(json.loads(body)["body"])
        except (ValueError, KeyError):
            return None
        return raw[0] if raw else None

    def _should_duplicate(self, head, body):
        if self.dup_type is None or self._sent_type(head, body) != self.dup_type:
            return False
        with self.lock:
            if self.duplicated:
                return False
            self.duplicated += 1
            return True

    def _should_lose_answer(self, head, body):
        if self.lose_type is None or self._sent_type(head, body) != self.lose_type:
            return False
        with self.lock:
            if self.lost:
                return False
            self.lost += 1
            return True

    def _handle(self, client):
        client.settimeout(120)
        try:
            msg = _read_http_message(client)
            if msg is None:
                return
            head, body = msg
            body = self._maybe_flip(head, body)
            lose = self._should_lose_answer(head, body)
            closes_session = head.startswith(b"DELETE /v1/pair/")
            lines = [l for l in head.split(b"\r\n")
                     if not l.lower().startswith((b"content-length:", b"connection:"))]
            if body or head.startswith((b"POST", b"PUT", b"PATCH")):
                lines.append(b"Content-Length: %d" % len(body))
            lines.append(b"Connection: close")
            request = b"\r\n".join(lines) + b"\r\n\r\n" + body
            if self._should_duplicate(head, body):
                # the first copy: its answer is what a lost answer looks like
                try:
                    with socket.create_connection(("127.0.0.1", self.upstream_port),
                                                  timeout=10) as first:
                        first.sendall(request)
                        while first.recv(65536):
                            pass
                except OSError:
                    pass
            up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=120)
            try:
                up.sendall(request)
                while True:
                    chunk = up.recv(65536)
                    if not chunk:
                        break
                    if not lose:
                        client.sendall(chunk)
            finally:
                up.close()
            if closes_session:
                self.session_closed.set()
            if lose:
                self.session_closed.wait(10)    # then close: the answer is lost
        except OSError:
            pass
        finally:
            client.close()

    def close(self):
        self.stopping = True
        self.sock.close()
