#!/usr/bin/python3
"""Load generator for bench_relay.sh: small uploads with many concurrent
clients, the same lean HTTP/1.1 client code against chuted and nginx.

  relay_load.py chuted URL   create + one PATCH per item (one inbox, a sender per client)
  relay_load.py nginx URL    one WebDAV PUT per item

Options: --clients 64 --seconds 5 --max-items 200000 --size 4096.
Prints one number on stdout: completed items per second. Bounded in
count and time; talks only to the loopback URL it is given."""

import argparse
import base64
import json
import multiprocessing as mp
import os
import secrets
import socket
import sys
import threading
import time
import urllib.parse


class Conn:
    """A kept-alive HTTP/1.1 connection with just enough parsing."""

    def __init__(self, host, port):
        self.addr = (host, port)
        self.sock = None
        self.buf = b""

    def _connect(self):
        self.sock = socket.create_connection(self.addr, timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock = None

    def _fill(self):
        b = self.sock.recv(65536)
        if not b:
            raise ConnectionError("closed by server")
        self.buf += b

    def request(self, method, path, headers, body=b""):
        if self.sock is None:
            self._connect()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.addr[0]}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        self.sock.sendall(head.encode() + body)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if "content-length" in hdrs:
            n = int(hdrs["content-length"])
            while len(self.buf) < n:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n:]
        elif hdrs.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                n = int(size_line.split(b";")[0], 16)
                while len(self.buf) < n + 2:
                    self._fill()
                data += self.buf[:n]
                self.buf = self.buf[n + 2:]
                if n == 0:
                    break
        elif status in (204, 304) or 100 <= status < 200:
            data = b""
        else:
            data = self.buf
            try:
                while True:
                    self._fill()
            except ConnectionError:
                pass
            data, self.buf = self.buf, b""
            self.close()
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, data


def setup_chuted(host, port, clients):
    c = Conn(host, port)
    st, _, body = c.request("POST", "/v1/inboxes", {}, b"")
    assert st == 201, (st, body)
    inbox = json.loads(body)
    senders = []
    for _ in range(clients):
        st, _, body = c.request("POST", f"/v1/inboxes/{inbox['inbox']}/senders",
                                {"Authorization": "Bearer " + inbox["owner_token"]}, b"")
        assert st == 201, (st, body)
        senders.append(json.loads(body)["send_token"])
    c.close()
    return inbox["inbox"], senders


def client(kind, host, port, arg, size, deadline, quota, counter, errors):
    conn = Conn(host, port)
    payload = os.urandom(size)
    meta = json.dumps({"size": size, "meta": base64.b64encode(b"m" * 64).decode()}).encode()
    done = 0
    try:
        while time.monotonic() < deadline and done < quota:
            name = secrets.token_urlsafe(24)
            if kind == "nginx":
                st, _, _ = conn.request("PUT", f"/dav/{name}", {}, payload)
                if st not in (201, 204):
                    errors.append(st)
                    return
            else:
                inbox, token = arg
                path = f"/v1/inboxes/{inbox}/items/{name}"
                auth = {"Authorization": "Bearer " + token}
                st, _, _ = conn.request("PUT", path, dict(auth, **{"Content-Type": "application/json"}), meta)
                if st != 201:
                    errors.append(st)
                    return
                st, _, _ = conn.request("PATCH", path, dict(auth, **{
                    "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}), payload)
                if st != 204:
                    errors.append(st)
                    return
            done += 1
    except OSError as e:
        errors.append(repr(e))
    finally:
        conn.close()
        counter.append(done)


def worker(kind, host, port, args, size, start_at, seconds, quota, q):
    """One process running a thread per client."""
    counter, errors = [], []
    while time.time() < start_at:
        time.sleep(0.005)
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=client, args=(kind, host, port, a, size, deadline,
                                                     quota, counter, errors))
               for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    q.put((sum(counter), errors[:5]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["chuted", "nginx"])
    ap.add_argument("url")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--max-items", type=int, default=200000)
    ap.add_argument("--size", type=int, default=4096)
    o = ap.parse_args()
    u = urllib.parse.urlsplit(o.url)
    assert u.hostname in ("127.0.0.1", "::1"), "loopback only"
    if o.kind == "chuted":
        inbox, tokens = setup_chuted(u.hostname, u.port, o.clients)
        args = [(inbox, t) for t in tokens]
    else:
        args = [None] * o.clients
    nproc = max(1, min(4, os.cpu_count() or 1, o.clients))
    per_client = max(1, o.max_items // o.clients)
    q = mp.Queue()
    start_at = time.time() + 0.5
    procs = [mp.Process(target=worker, args=(o.kind, u.hostname, u.port, args[i::nproc],
                                             o.size, start_at, o.seconds, per_client, q))
             for i in range(nproc)]
    for p in procs:
        p.start()
    results = [q.get(timeout=o.seconds + 120) for _ in procs]
    for p in procs:
        p.join(10)
    elapsed = time.time() - start_at
    total = sum(r[0] for r in results)
    errs = [e for r in results for e in r[1]]
    if errs:
        print(f"relay_load: {o.kind}: errors: {errs[:5]}", file=sys.stderr)
    print(f"{total / elapsed:.0f}")
    print(f"relay_load: {o.kind}: {total} items in {elapsed:.2f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
