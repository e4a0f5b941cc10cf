"""`make demo` (packaging/demo.sh) as CI runs it: stdin not a terminal.

The script sets up a TLS relay, two devices paired by a real code, two real
mounts, and carries one file; with no terminal it stops after the delivery.
It must exit 0, say "delivered", and leave no mount, no process and no
temporary folder behind. Its temporary folder goes under this test's own
TMPDIR, so what it leaves is easy to find.
"""

import os
import re
import subprocess
from pathlib import Path

from conftest import BUILD, REPO, SLOW, binary

SCRIPT = REPO / "packaging" / "demo.sh"


def processes_mentioning(needle):
    """(pid, cmdline) of every process whose command line contains needle."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd:
            out.append((int(d.name), cmd))
    return out


def fuse_mounts_under(path):
    with open("/proc/self/mounts") as f:
        return [line for line in f if line.split()[1].startswith(str(path))]


def run_demo(tmp_path, **env):
    for p in ("chuted", "chutefs", "pairtool"):
        binary(p)
    e = dict(os.environ, TMPDIR=str(tmp_path), CHUTE_BUILD=str(BUILD), **env)
    with open(os.devnull, "rb") as devnull:
        r = subprocess.run([str(SCRIPT)], stdin=devnull, capture_output=True, text=True,
                           env=e, timeout=180 * SLOW)
    return r


def assert_nothing_left(tmp_path):
    assert fuse_mounts_under(tmp_path) == [], "the demo left a mount behind"
    left = [(pid, cmd) for pid, cmd in processes_mentioning(str(tmp_path))
            if pid != os.getpid() and re.search(r"\b(chuted|chutefs|pairtool)\b", cmd)]
    assert left == [], f"the demo left processes behind: {left}"
    assert list(tmp_path.glob("chute-demo.*")) == [], "the demo left its temporary folder"


def test_demo_without_a_terminal_delivers_and_cleans_up(tmp_path):
    r = run_demo(tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"demo exited {r.returncode}:\n{out[-6000:]}"
    assert re.search(r"^\s*delivered: hello-from-abroad\.txt is in home's inbox/abroad/ .*"
                     r"byte-identical$", r.stdout, re.M), r.stdout
    # the steps a reader looks for: a real code, the pin, both status files
    assert re.search(r"code \d+-[0-9a-z]{4}-[0-9a-z]{4}\b", r.stdout), r.stdout
    assert "--pin sha256//" in r.stdout
    assert "cat " in r.stdout and "pairtool -H " in r.stdout
    assert "stopping now" in r.stdout
    assert "removed " in r.stdout
    assert_nothing_left(tmp_path)


def test_demo_failure_exits_non_zero_and_still_cleans_up(tmp_path):
    """A file that never arrives (chutefs without its uploader, documented
    in MOUNT.md) fails the demo after everything is up: a clear message,
    the logs, exit 1, and nothing left mounted or running."""
    r = run_demo(tmp_path, CHUTE_UPLOADER="off", CHUTE_DEMO_TIMEOUT="3")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "chute demo: FAILED: the file did not arrive" in r.stderr
    assert "unmounted " in r.stdout and "relay stopped" in r.stdout
    assert "chuted.log" in r.stderr          # the programs' logs are shown
    assert_nothing_left(tmp_path)
