#!/usr/bin/python3
"""fs_bench.py — the drop folder end to end, driven by bench_fs.sh.

One relay (chuted), two devices paired with real pairtool processes
("abroad" sends, "home" receives), both mounted with chutefs, all on this
machine. Prints table rows in run.sh's format:

  (b) ingest: cp + sync of BYTES into abroad's outbox, next to the same
      cp + sync into a gocryptfs mount and onto the plain disk;
  (a) end to end: cp of BYTES into abroad's outbox until the file is whole
      in home's inbox (listed at full size; sha256 checked afterwards,
      outside the timing), next to curl PUT + GET through nginx WebDAV;
      with the sender's phases, sampled from the user.chute.state xattr;
  (c) latency: a 4 KiB file closed in the outbox until it is listed in the
      peer's inbox, median and p95 over N files, 1 ms poll;
  (d) peak RSS (VmHWM) of both chutefs processes and chuted.

Never fails on a number: whatever cannot be measured is a row with "-".
Every wait is bounded. Every process it starts is written to --pids (one
per line) so the shell's trap can clean up after a crash of this driver;
mount points are written to --mounts. Stdlib only.
"""

import argparse
import hashlib
import os
import resource
import selectors
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30
RELAY_ARGS = ["--pair-allocs-per-min", "1000", "--pair-claims-per-min", "1000",
              "--max-conns-per-ip", "256", "--inbox-quota-items", "1000000"]
STATE = "user.chute.state"
TRACE = os.environ.get("CHUTE_BENCH_TRACE") == "1"   # every phase sample on stderr
PERF_CTL = os.environ.get("CHUTE_BENCH_PERF_CTL")    # perf record --control fifo

PHASE_POLL = float(os.environ.get("CHUTE_BENCH_PHASE_POLL", "0.05"))  # xattr sampling
ARRIVAL_POLL = 0.005   # e2e: how often the end is looked for (its resolution)


def perf_ctl(cmd):
    """Switch a `perf record -D -1 --control fifo:PERF_CTL` on or off, so a
    profile holds only the end-to-end transfer."""
    if PERF_CTL:
        with open(PERF_CTL, "w") as f:
            f.write(cmd + "\n")


def row(name, chute, ref, ratio):
    print("%-44s %14s %14s %8s" % (name, chute, ref, ratio), flush=True)


def log(msg):
    print("fs_bench: " + msg, file=sys.stderr, flush=True)


def secs(t):
    return "-" if t is None else "%.2f s" % t


def ms(t):
    return "-" if t is None else "%.1f ms" % (t * 1000)


def ratio(a, b):
    return "-" if a is None or b is None or b <= 0 else "%.2f" % (a / b)


def median_or_none(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v and len(v) == len(values) else None


def seq(values):
    return "/".join("-" if x is None else "%.2f" % x for x in values)


def human(n):
    if n >= GiB and n % GiB == 0:
        return "%d GiB" % (n // GiB)
    if n >= MiB:
        return "%.0f MiB" % (n / MiB)
    return "%d B" % n


def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * MiB), b""):
            h.update(block)
    return h.hexdigest()


def wait_until(pred, timeout, interval=0.01):
    """pred() until truthy or timeout; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = pred()
        except OSError:
            v = None
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


TICK = os.sysconf("SC_CLK_TCK")


def disk_io_bytes():
    """(read, written) bytes of the machine's block devices so far (whole
    disks only, /sys/block/*/stat fields 3 and 7; loop and ram devices
    left out)."""
    rd = wr = 0
    for d in Path("/sys/block").iterdir():
        if d.name.startswith(("loop", "ram", "zram")):
            continue
        try:
            f = (d / "stat").read_text().split()
            rd += int(f[2]) * 512
            wr += int(f[6]) * 512
        except (OSError, IndexError, ValueError):
            pass
    return rd, wr


def disk_io_since(before):
    now = disk_io_bytes()
    return now[0] - before[0], now[1] - before[1]


def read_bytes(pid):
    """Bytes a live process (its threads included) had read from storage."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def cpu_s(pid):
    """User + system CPU seconds of a live process (its threads included)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def children_cpu_s():
    """CPU seconds of this driver's waited-for children (cp, curl)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def nginx_pids(root):
    """nginx's master (nginx.pid beside the served folder) and its workers."""
    try:
        master = int((Path(root).parent / "nginx.pid").read_text())
    except (OSError, ValueError):
        return []
    pids = [master]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == master:
                        pids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def vm_hwm_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class Watcher:
    """Samples, every PHASE_POLL, the sender's user.chute.state of one
    outbox entry, the bytes the receiving chutefs has written (wchar of
    /proc/<pid>/io: what it stores), and the RSS of every process;
    marks[key] is the first time each was seen ("download": the receiver
    wrote its first MiB; "downloaded": the last time it wrote more)."""

    def __init__(self, bench, name, bound):
        self.b, self.name, self.bound = bench, name, bound
        self.marks = {}
        self.stop_ev = threading.Event()
        self.th = threading.Thread(target=self.run, daemon=True)
        home = bench.mounts.get("home")
        self.rx_pid = home[0].pid if home else None
        self.rx_base = self.rx_written()
        self.rx_seen = self.rx_base

    def rx_written(self):
        try:
            with open(f"/proc/{self.rx_pid}/io") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("wchar:"))
        except (OSError, StopIteration, TypeError, ValueError):
            return None

    def mark(self, key):
        self.marks.setdefault(key, time.monotonic())

    def run(self):
        last = None
        for _ in range(int(self.bound / PHASE_POLL) + 1):
            if self.stop_ev.is_set():
                return
            w = self.rx_written()   # the receiver storing what it downloads
            if w is not None and self.rx_base is not None:
                if w - self.rx_base >= MiB:
                    self.mark("download")
                if w > self.rx_seen and "download" in self.marks:
                    self.marks["downloaded"] = time.monotonic()
                self.rx_seen = w
            st = self.b.state(self.name)
            if TRACE:
                log("trace %.3f state=%s rx_written=%s" % (
                    time.monotonic(), st, None if w is None or self.rx_base is None
                    else w - self.rx_base))
            if st != last and st is not None:
                self.mark("uploading" if st.startswith("uploading") else st)
                last = st
            self.b.sample_rss()
            time.sleep(PHASE_POLL)

    def __enter__(self):
        self.th.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.th.join(timeout=5)


class Bench:
    def __init__(self, a):
        self.a = a
        self.build = Path(a.build)
        self.t = Path(a.tmp)
        self.bytes = a.bytes
        self.procs = []
        self.chuted = None
        self.port = None
        self.mounts = {}        # name -> (proc, mnt)
        self.hwm = {}           # label -> KiB, kept at the last sample

    # --- bookkeeping --------------------------------------------------------
    def track(self, proc):
        self.procs.append(proc)
        with open(self.a.pids, "a") as f:
            f.write(f"{proc.pid}\n")
        return proc

    def track_mount(self, mnt):
        with open(self.a.mounts, "a") as f:
            f.write(f"{mnt}\n")

    def sample_rss(self):
        for label, pid in self.rss_pids().items():
            k = vm_hwm_kib(pid)
            if k is not None:
                self.hwm[label] = max(self.hwm.get(label, 0), k)

    def rss_pids(self):
        out = {}
        if self.chuted and self.chuted.poll() is None:
            out["chuted"] = self.chuted.pid
        for name, (p, _) in self.mounts.items():
            if p.poll() is None:
                out[f"chutefs ({name})"] = p.pid
        return out

    # --- the relay and the devices ------------------------------------------
    def start_relay(self):
        data = self.t / "chuted-data"
        data.mkdir(mode=0o700)
        pf = self.t / "chuted.port"
        logf = open(self.t / "chuted.log", "wb")
        self.chuted = self.track(subprocess.Popen(
            [str(self.build / "chuted"), "--listen", "127.0.0.1:0", "--data", str(data),
             "--port-file", str(pf)] + RELAY_ARGS,
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf))
        logf.close()
        text = wait_until(lambda: pf.exists() and pf.read_text().strip(), 10)
        if not text or not text.isdigit():
            raise RuntimeError("chuted did not start (see chuted.log)")
        self.port = int(text)
        self.url = f"http://127.0.0.1:{self.port}"

    def pairtool(self, home, *args, timeout=30):
        return subprocess.run([str(self.build / "pairtool"), "-H", str(home), *args],
                              capture_output=True, text=True, timeout=timeout)

    def pair(self):
        self.homes = {n: self.t / f"{n}-state" for n in ("abroad", "home")}
        for name, h in self.homes.items():
            r = self.pairtool(h, "init", "--relay", self.url, "--name", name)
            if r.returncode != 0:
                raise RuntimeError(f"pairtool init {name}: {r.stderr.strip()}")
        inv = self.track(subprocess.Popen(
            [str(self.build / "pairtool"), "-H", str(self.homes["home"]), "invite", "--yes"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        sel = selectors.DefaultSelector()
        sel.register(inv.stdout, selectors.EVENT_READ)
        buf = b""
        deadline = time.monotonic() + 10
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                inv.kill()
                raise RuntimeError("pairtool invite printed no code")
            chunk = os.read(inv.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError("pairtool invite: " + inv.stderr.read().decode(errors="replace"))
            buf += chunk
        sel.close()
        code = buf.split(b"\n", 1)[0].decode()
        j = self.pairtool(self.homes["abroad"], "join", code, "--yes", timeout=60)
        try:
            out, err = inv.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            inv.kill()
            raise RuntimeError("pairtool invite did not finish")
        if j.returncode != 0 or inv.returncode != 0:
            raise RuntimeError(f"pairing failed: join {j.stderr.strip()} invite {err!r}")
        self.name_at_home = (buf.split(b"\n", 1)[1] + out).decode().strip()   # "abroad"
        self.name_abroad = j.stdout.strip()                                    # "home"

    def mount(self, name):
        mnt = self.t / f"{name}-mnt"
        mnt.mkdir()
        logf = open(self.t / f"chutefs-{name}.log", "wb")
        env = {k: v for k, v in os.environ.items() if k != "CHUTE_UPLOADER"}
        p = self.track(subprocess.Popen(
            [str(self.build / "chutefs"), "-H", str(self.homes[name]), str(mnt), "-f"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env))
        logf.close()
        self.track_mount(mnt)
        wait_until(lambda: os.path.ismount(mnt) or p.poll() is not None, 10)
        if not os.path.ismount(mnt):
            raise RuntimeError(f"chutefs ({name}) did not mount (see chutefs-{name}.log)")
        self.mounts[name] = (p, mnt)
        return mnt

    def unmount_all(self):
        for name, (p, mnt) in list(self.mounts.items()):
            if os.path.ismount(mnt):
                subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
                subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
            del self.mounts[name]

    def stop_all(self):
        self.unmount_all()
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)

    @property
    def outbox(self):
        return self.mounts["abroad"][1] / "outbox" / self.name_abroad

    @property
    def inbox(self):
        return self.mounts["home"][1] / "inbox" / self.name_at_home

    def state(self, name):
        try:
            return os.getxattr(self.outbox / name, STATE).decode()
        except OSError:
            return None

    # --- the source file ----------------------------------------------------
    def make_source(self):
        self.src = self.t / "src.bin"
        h = hashlib.sha256()
        left = self.bytes
        with open(self.src, "wb") as f:
            while left:
                b = os.urandom(min(4 * MiB, left))
                h.update(b)
                f.write(b)
                left -= len(b)
        self.src_sha = h.hexdigest()
        subprocess.run(["sync"])

    def timeout_big(self):
        """A bound for moving BYTES anywhere here: 30 s + 10 s per GiB... x4."""
        return 30 + 40 * self.bytes / GiB

    # --- (b) ingest ---------------------------------------------------------
    def cp_sync(self, dst, parts=None):
        """Seconds for cp + sync of the source to dst; parts (a dict), when
        given, gets the time cp returned ("cp") and t0."""
        subprocess.run(["sync"])
        t0 = time.monotonic()
        r = subprocess.run(["cp", str(self.src), str(dst)], capture_output=True,
                           timeout=self.timeout_big())
        t_cp = time.monotonic()
        subprocess.run(["sync"], timeout=self.timeout_big())
        t = time.monotonic() - t0
        if parts is not None:
            parts.update(t0=t0, cp=t_cp)
        if r.returncode != 0:
            log(f"cp to {dst} failed: {r.stderr.decode(errors='replace').strip()}")
            return None
        return t

    def ingest_plain(self):
        d = self.t / f"plain-{os.urandom(3).hex()}"
        d.mkdir()
        t = self.cp_sync(d / "big")
        shutil.rmtree(d)
        subprocess.run(["sync"])
        return t

    def ingest_gocryptfs(self):
        gc = shutil.which("gocryptfs")
        if not gc:
            return None, "missing (deps.sh bench)"
        tag = os.urandom(3).hex()
        cipher, mnt = self.t / f"gc-cipher-{tag}", self.t / f"gc-mnt-{tag}"
        cipher.mkdir()
        mnt.mkdir()
        r = subprocess.run([gc, "-q", "-init", "-extpass", "echo pw", str(cipher)],
                           capture_output=True, timeout=60)
        if r.returncode != 0:
            log("gocryptfs -init: " + r.stderr.decode(errors="replace").strip())
            return None, "did not init"
        self.track_mount(mnt)
        r = subprocess.run([gc, "-q", "-extpass", "echo pw", str(cipher), str(mnt)],
                           capture_output=True, timeout=60)
        if r.returncode != 0 or not wait_until(lambda: os.path.ismount(mnt), 10):
            log("gocryptfs mount: " + r.stderr.decode(errors="replace").strip())
            return None, "did not mount"
        try:
            t = self.cp_sync(mnt / "big")
        finally:
            subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, timeout=60)
            if os.path.ismount(mnt):
                subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
        shutil.rmtree(cipher, ignore_errors=True)
        subprocess.run(["sync"])
        return t, None

    def drain(self, name, what):
        """Wait (bounded) until name has gone all the way. Returns True when
        it is listed in home's inbox at full size, False when it reached the
        relay but no receiver took it in 10 s (+10 s per GiB), None when it
        did not even reach the relay."""
        on = wait_until(lambda: self.visible(name) or self.state(name) in ("on relay", None),
                        self.timeout_big(), 0.05)
        if not on:
            log(f"{what}: {name} not on the relay after {self.timeout_big():.0f} s "
                f"(sender state: {self.state(name)})")
            return None
        bound = 10 + 10 * self.bytes / GiB
        if wait_until(lambda: self.visible(name), bound, 0.05):
            # and the sender's clean-up (its outbox entry and plaintext go
            # once it sees "delivered"), so that deleting a gigabyte is not
            # inside whatever is timed next
            if not wait_until(lambda: not (self.outbox / name).exists(), bound, 0.05):
                log(f"{what}: {name} still in the outbox after {bound:.0f} s")
            subprocess.run(["sync"])
            return True
        log(f"{what}: {name} on the relay but not in home's inbox after {bound:.0f} s "
            "(no receiver?)")
        return False

    def visible(self, name, size=None):
        size = self.bytes if size is None else size
        try:
            return os.stat(self.inbox / name).st_size == size
        except OSError:
            return False

    # --- (a) end to end -----------------------------------------------------
    def e2e(self, name, receiver=True):
        """Seconds from cp start until name is listed at full size in home's
        inbox, with the sender's phases; None when it never arrives. Without
        a receiver: until the sender says "on relay" (the upload half)."""
        w = Watcher(self, name, self.timeout_big() * 2)
        marks = w.marks
        subprocess.run(["sync"])
        pids = self.rss_pids()
        cpu0 = {k: cpu_s(p) for k, p in pids.items()}
        rd0 = {k: read_bytes(p) for k, p in pids.items()}
        kids0 = children_cpu_s()
        disk0 = disk_io_bytes()
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        perf_ctl("enable")
        t0 = time.monotonic()
        w.__enter__()
        cp = subprocess.Popen(["cp", str(self.src), str(self.outbox / name)],
                              stderr=subprocess.PIPE)
        try:
            cp.wait(timeout=self.timeout_big())
        except subprocess.TimeoutExpired:
            cp.kill()
            cp.wait()
        t_cp = time.monotonic()
        arrived = None
        looks = []   # how long each stat took: does the inbox go on answering?
        if cp.returncode == 0:
            # bounded poll: stat of the inbox entry every ARRIVAL_POLL (each
            # one is a FUSE call into the receiver, which is busy storing:
            # 2 ms polls cost it and this driver about 5 % of a CPU)
            deadline = t_cp + self.timeout_big()
            while time.monotonic() < deadline:
                t_look = time.monotonic()
                there = self.visible(name) if receiver else self.state(name) == "on relay"
                looks.append(time.monotonic() - t_look)
                if there:
                    arrived = time.monotonic()
                    break
                time.sleep(ARRIVAL_POLL)
        else:
            log(f"cp into the outbox failed: {cp.stderr.read().decode(errors='replace')}")
        perf_ctl("disable")
        self.disk = disk_io_since(disk0)
        w.__exit__()
        # CPU of each process over the run; cp's own (the FUSE writes' kernel
        # copies count there) is a child's, known once waited for
        self.cpu = {k: cpu_s(p) - cpu0[k] for k, p in pids.items()}
        log("disk reads by process: " + ", ".join(
            "%s %.0f MiB" % (k, (read_bytes(p) - rd0[k]) / MiB) for k, p in pids.items()))
        self.cpu["cp"] = children_cpu_s() - kids0
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        # not in the total: the driver's own polling, for the record
        self.driver_cpu = (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime)
        if arrived is None:
            log(f"e2e: {name} not whole in home's inbox (sender state: {self.state(name)})")
            return None, None, {}
        # the seal at close is an fsync and a link (encryption happens while
        # uploading): no separate phase to time
        phases = {"cp (write + seal at close)": t_cp - t0}
        if not receiver:
            phases["upload (cp returned → on relay)"] = arrived - t_cp
            return arrived - t0, True, phases
        digest = sha_file(self.inbox / name)   # outside the timing
        ok = digest == self.src_sha
        if not ok:
            log(f"e2e: {name} in home's inbox has sha256 {digest}, sent {self.src_sha}")
        if receiver and looks:
            phases["stat of the inbox entry meanwhile, median/max"] = (
                statistics.median(looks), max(looks))
        rel = marks.get("on relay")
        dl0, dl1 = marks.get("download"), marks.get("downloaded")
        # the stages overlap (the receiver follows the upload): each row is
        # one stage's own span, and they do not add up to the total
        if rel is not None:
            phases["upload (cp returned → on relay)"] = max(0.0, rel - t_cp)
        if dl0 is not None and dl1 is not None and dl0 <= dl1 <= arrived:
            phases["receiver storing (first MiB → last write)"] = dl1 - dl0
            phases["download starts, after cp returned"] = dl0 - t_cp
        if rel is not None:
            phases["on relay → whole in inbox"] = max(0.0, arrived - rel)
        return arrived - t0, ok, phases

    def e2e_nginx(self):
        if not self.a.nginx_url:
            return None, None, None
        curl = shutil.which("curl")
        subprocess.run(["sync"])
        down = self.t / "nginx-down"
        npids = nginx_pids(self.a.nginx_root) if self.a.nginx_root else []
        ncpu0 = sum(cpu_s(p) for p in npids)
        kids0 = children_cpu_s()
        disk0 = disk_io_bytes()
        t0 = time.monotonic()
        r1 = subprocess.run([curl, "-sS", "-f", "-o", "/dev/null", "-T", str(self.src),
                             f"{self.a.nginx_url}/dav/big"], capture_output=True,
                            timeout=self.timeout_big())
        tm = time.monotonic()
        r2 = subprocess.run([curl, "-sS", "-f", "-o", str(down), f"{self.a.nginx_url}/dav/big"],
                            capture_output=True, timeout=self.timeout_big())
        t1 = time.monotonic()
        self.nginx_disk = disk_io_since(disk0)
        self.nginx_cpu = (children_cpu_s() - kids0) + (sum(cpu_s(p) for p in npids) - ncpu0)
        ok = r1.returncode == 0 and r2.returncode == 0 and down.stat().st_size == self.bytes
        if not ok:
            log("nginx PUT/GET failed: " + (r1.stderr + r2.stderr).decode(errors="replace"))
        down.unlink(missing_ok=True)
        if self.a.nginx_root:
            (Path(self.a.nginx_root) / "dav" / "big").unlink(missing_ok=True)
        subprocess.run(["sync"])
        return (t1 - t0, tm - t0, t1 - tm) if ok else (None, None, None)

    def e2e_cleanup(self, name):
        """After a Chute round: the sender's entry gone (delivered), the
        inbox copy deleted (it frees its cache), everything on disk."""
        wait_until(lambda: not (self.outbox / name).exists(), timeout=30)
        try:
            (self.inbox / name).unlink()
        except OSError as e:
            log(f"e2e: cannot delete {name} from home's inbox: {e}")
        # The unlink only dooms the chunks (lib/cache.c): let the reaper
        # free them before the next round, not during it.
        wait_until(lambda: self.doomed_at_home() == 0, timeout=120, interval=0.1)
        subprocess.run(["sync"])

    def doomed_at_home(self):
        try:
            con = sqlite3.connect(f"file:{self.homes['home'] / 'inbox.db'}?mode=ro", uri=True,
                                  timeout=5)
            try:
                return con.execute("SELECT count(*) FROM doomed").fetchone()[0]
            finally:
                con.close()
        except sqlite3.OperationalError as e:
            # a build from before the reaper (an A/B baseline) frees in the unlink
            return 0 if "no such table" in str(e) else -1
        except sqlite3.Error:
            return -1

    # --- (c) latency ----------------------------------------------------------
    def latency(self, n):
        lat = []
        payload = os.urandom(4096)
        for i in range(n):
            name = f"lat-{i:03d}.bin"
            fd = os.open(self.outbox / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, payload)
            t0 = time.monotonic()
            os.close(fd)            # the seal happens here
            deadline = t0 + 10
            seen = None
            while time.monotonic() < deadline:
                try:
                    if name in os.listdir(self.inbox):
                        seen = time.monotonic()
                        break
                except OSError:
                    pass
                time.sleep(0.001)
            if seen is None:
                log(f"latency: {name} not listed in home's inbox within 10 s "
                    f"(sender state: {self.state(name)})")
                return None
            lat.append(seen - t0)
            self.sample_rss()
        return lat

    # --- the run --------------------------------------------------------------
    def run(self):
        size = human(self.bytes)
        self.make_source()
        self.start_relay()
        self.pair()
        self.mount("abroad")
        self.mount("home")
        self.sample_rss()

        # (b) ingest: rounds of plain, gocryptfs and Chute back to back, each
        # right after the one before was deleted (on this VM how long ago
        # memory and disk blocks were freed moves a 1 GiB write by seconds,
        # so none gets a quieter start); medians, every round on a sub-row.
        # Each Chute copy then goes all the way before the next round.
        plains, gcs, chutes, syncs, drained = [], [], [], [], []
        gc_why = None
        for r in range(self.a.ingest_rounds):
            plains.append(self.ingest_plain())
            t_gc, gc_why = self.ingest_gocryptfs()
            gcs.append(t_gc)
            parts = {}
            name = f"ingest-{r}.bin"
            t_chute = self.cp_sync(self.outbox / name, parts)
            chutes.append(t_chute)
            if t_chute is not None:
                syncs.append(parts["t0"] + t_chute - parts["cp"])
            self.sample_rss()
            drained.append(self.drain(name, "ingest") if t_chute is not None else False)
            self.sample_rss()
        # every round listed at home: True; else the first round's outcome
        receiver = True if all(d is True for d in drained) else \
            next(d for d in drained if d is not True)
        t_chute, t_gc, t_plain = (median_or_none(v) for v in (chutes, gcs, plains))
        row(f"fs: {size} ingest cp+sync, vs gocryptfs", secs(t_chute),
            secs(t_gc) if gc_why is None else "-", ratio(t_chute, t_gc))
        if gc_why:
            row(f"fs:   gocryptfs {gc_why}", "-", "-", "-")
        row(f"fs: {size} ingest cp+sync, vs plain disk", secs(t_chute), secs(t_plain),
            ratio(t_chute, t_plain))
        if len(chutes) > 1:
            row(f"fs:   ingest, median of {len(chutes)}: each round", seq(chutes), seq(gcs), "-")
        if syncs:
            row("fs:   ingest sync (after cp returned), max", secs(max(syncs)), "-", "-")

        # (a) end to end: rounds of nginx then Chute, each Chute copy
        # delivered and deleted before the next round; medians, and the
        # phases, CPU and disk writes of the median Chute round. (One pair
        # alone moved by ±25 % from minute to minute on this VM.)
        rounds = []
        for r in range(max(1, self.a.e2e_rounds)):
            ng = self.e2e_nginx()
            ng_extra = (getattr(self, "nginx_cpu", None), getattr(self, "nginx_disk", None))
            if receiver is not None:
                name = f"e2e-{r}.bin"
                res = self.e2e(name, receiver)
                extra = (getattr(self, "cpu", None), getattr(self, "disk", None),
                         getattr(self, "driver_cpu", None))
                self.e2e_cleanup(name)
            else:
                res, extra = (None, None, {}), (None, None, None)
            rounds.append((ng, ng_extra, res, extra))
        self.sample_rss()
        n_tot = median_or_none([x[0][0] for x in rounds])
        n_up = median_or_none([x[0][1] for x in rounds])
        n_down = median_or_none([x[0][2] for x in rounds])
        shown_all = [x[2][0] if x[2][1] else None for x in rounds]
        shown = median_or_none(shown_all)
        # the round whose Chute time is the median one tells the details
        by_time = sorted(range(len(rounds)), key=lambda i: (rounds[i][2][0] is None,
                                                             rounds[i][2][0] or 0))
        mid = rounds[by_time[(len(rounds) - 1) // 2]]
        t_e2e, ok, phases = mid[2]
        self.cpu, self.disk, self.driver_cpu = mid[3]
        by_ng = sorted(range(len(rounds)), key=lambda i: (rounds[i][0][0] is None,
                                                          rounds[i][0][0] or 0))
        self.nginx_cpu, self.nginx_disk = rounds[by_ng[(len(rounds) - 1) // 2]][1]
        if receiver:
            row(f"fs: {size} cp → whole in peer inbox, vs nginx", secs(shown), secs(n_tot),
                ratio(shown, n_tot))
            if len(rounds) > 1:
                row(f"fs:   e2e, median of {len(rounds)}: each round", seq(shown_all),
                    seq([x[0][0] for x in rounds]),
                    "/".join(ratio(a, x[0][0]) for a, x in zip(shown_all, rounds)))
        else:
            row(f"fs: {size} cp → whole in peer inbox, vs nginx", "-", secs(n_tot), "-")
            row("fs:   no receiver (downloader not merged?)", "-", "-", "-")
            row("fs:   upload half: cp → on relay, vs PUT", secs(shown),
                secs(n_up) if n_tot is not None else "-",
                ratio(shown, n_up) if n_tot is not None else "-")
        if t_e2e is not None and not ok:
            row("fs:   arrived with the WRONG sha256", secs(t_e2e), "-", "-")
        for k, v in phases.items():
            if isinstance(v, tuple):   # (median, max) of a latency
                row(f"fs:   {k}", "%.1f/%.0f ms" % (v[0] * 1000, v[1] * 1000), "-", "-")
            else:
                row(f"fs:   {k}", secs(v), "-", "-")
        if n_tot is not None:
            row("fs:   nginx: of which PUT / GET", "-", f"{n_up:.2f}/{n_down:.2f} s", "-")
        cpu = getattr(self, "cpu", None)
        if t_e2e is not None and cpu:
            # the machine's CPUs are shared by every process in the run: their
            # total CPU time, against the reference's, explains much of the ratio
            tot = sum(cpu.values())
            nc = getattr(self, "nginx_cpu", None)
            row(f"fs:   CPU time, all processes ({os.cpu_count()} CPUs)", secs(tot),
                secs(nc) if n_tot is not None else "-",
                ratio(tot, nc) if n_tot is not None else "-")
            for k in sorted(cpu):
                row(f"fs:     CPU {k}", secs(cpu[k]), "-", "-")
            dcpu = getattr(self, "driver_cpu", None)
            if dcpu is not None:
                row("fs:     CPU bench driver (not in the total)", secs(dcpu), "-", "-")
        disk, ndisk = getattr(self, "disk", None), getattr(self, "nginx_disk", None)
        if t_e2e is not None and disk is not None:
            # three durable copies (outbox, relay, inbox) on one disk here;
            # nginx writes one and syncs none of it. Reads: what a stage
            # found gone from the page cache and fetched back from disk.
            for i, what in ((1, "writes"), (0, "reads")):
                row(f"fs:   disk {what} during the run", "%.0f MiB" % (disk[i] / MiB),
                    "-" if ndisk is None or n_tot is None else "%.0f MiB" % (ndisk[i] / MiB),
                    # no ratio against (next to) nothing: nginx moves a few
                    # MiB at most (runs printed 246 and 828 against 2-8 MiB)
                    ratio(disk[i], ndisk[i]) if n_tot is not None and ndisk and
                    ndisk[i] >= 64 * MiB else "-")
        if n_tot is None and not self.a.nginx_url:
            row(f"fs:   nginx {self.a.nginx_why or 'missing'}", "-", "-", "-")

        # (c) latency
        lat = self.latency(self.a.latency_files) if receiver else None
        target = 0.100
        if lat:
            med = statistics.median(lat)
            p95 = sorted(lat)[max(0, -(-95 * len(lat) // 100) - 1)]
            row(f"fs: 4 KiB close → listed, median of {len(lat)}", ms(med), ms(target),
                ratio(med, target))
            row("fs: 4 KiB close → listed, p95", ms(p95), ms(target), ratio(p95, target))
            log("latency ms: " + " ".join("%.1f" % (x * 1000) for x in lat))
        else:
            row("fs: 4 KiB close → listed: not measured", "-", ms(target), "-")

        # (d) peak RSS
        self.sample_rss()
        for label in ("chutefs (abroad)", "chutefs (home)", "chuted"):
            k = self.hwm.get(label)
            row(f"fs: {label} peak RSS (VmHWM)",
                "-" if k is None else "%.1f MiB" % (k / 1024), "64.0 MiB",
                "-" if k is None else "%.2f" % (k / 65536))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--bytes", type=int, default=GiB)
    ap.add_argument("--latency-files", type=int, default=40)
    ap.add_argument("--ingest-rounds", type=int, default=3)
    ap.add_argument("--e2e-rounds", type=int, default=3)
    ap.add_argument("--nginx-url", default="")
    ap.add_argument("--nginx-root", default="")
    ap.add_argument("--nginx-why", default="")
    ap.add_argument("--pids", required=True)
    ap.add_argument("--mounts", required=True)
    a = ap.parse_args()
    # SIGTERM (bench_fs.sh's trap) and SIGINT (even when started in the
    # background, where SIGINT comes ignored) end the run through `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    b = Bench(a)
    try:
        b.run()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        row(f"fs: aborted: {str(e)[:36]}", "-", "-", "-")
        log(f"aborted: {e!r}")
    except (KeyboardInterrupt, SystemExit):
        log("interrupted")
        b.stop_all()
        return 130
    finally:
        b.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
