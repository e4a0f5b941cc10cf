"""A long queue while the relay is down: how long N small files take to
queue, the CPU chutefs uses over the 10 s after (nothing to do but wait
for the relay), and the close time of one more file (median of 20).

    CHUTE_BUILD=build python3 tests/bench/queue_idle.py [N=3000]

Not part of `make bench` (there is no reference to run against); figures
in docs/BENCHMARKS.md, 2026-12-06."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "system"))
import conftest  # noqa: E402
from conftest import Relay  # noqa: E402
from pairtool import Device, pair  # noqa: E402

RELAY_ARGS = ("--pair-allocs-per-min", "1000", "--pair-claims-per-min", "1000")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    tmp = Path(tempfile.mkdtemp(prefix="queue-idle-"))
    relay = Relay(tmp / "relay", args=RELAY_ARGS)
    relay.start()
    abroad = Device(tmp / "abroad", "abroad", relay.url)
    home = Device(tmp / "home", "home", relay.url)
    abroad.init()
    home.init()
    pair(home, abroad)
    relay.stop()
    mnt = tmp / "mnt"
    mnt.mkdir()
    exe = conftest.binary("chutefs")
    proc = subprocess.Popen([str(exe), "-H", str(abroad.home), str(mnt), "-f"],
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if os.path.ismount(mnt):
                break
            time.sleep(0.1)
        outbox = mnt / "outbox" / "home"
        t0 = time.monotonic()
        for i in range(n):
            (outbox / f"f{i:05d}.txt").write_bytes(b"x" * 100)
        queued_s = time.monotonic() - t0
        time.sleep(3)
        c0 = cpu_seconds(proc.pid)
        time.sleep(10)
        idle = (cpu_seconds(proc.pid) - c0) / 10
        closes = []
        for i in range(20):
            t = time.monotonic()
            (outbox / f"late{i:02d}.txt").write_bytes(b"y")
            closes.append(time.monotonic() - t)
        closes.sort()
        print(f"{exe}: {n} files queued in {queued_s:.1f} s; idle CPU {100 * idle:.1f}%; "
              f"close median {1000 * closes[10]:.1f} ms")
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
