"""Packaging: man pages, systemd units, `make install` and `make deb`.

- Every unit passes `systemd-analyze verify` (a copy whose ExecStart names
  the built binary, since /usr/sbin/chuted is not installed here; man:
  references are resolved against the man pages `make install` put in a
  DESTDIR). This needs no systemd as PID 1.
- Every man page renders with groff -man -ww without a warning, has the
  sections a man page needs, and names every long option that the built
  program's --help (and pairtool's COMMAND --help) prints.
- `make install DESTDIR=... PREFIX=/usr` puts each file where the units,
  the man pages and the deb expect it.
- `make deb` (about 25 s here, so it is part of `make check`; deselect it
  with PYTEST_ARGS="-m 'not deb'") builds the two packages and lintian
  finds no error in them.
"""

import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD, REPO, binary

MAN = REPO / "packaging" / "man"
UNITS = REPO / "packaging" / "systemd"
PAGES = {"chuted": MAN / "chuted.8", "chutefs": MAN / "chutefs.1",
         "pairtool": MAN / "pairtool.1"}
PAIRTOOL_COMMANDS = ["init", "invite", "join", "peers", "unpair", "status",
                     "export-identity", "recipient"]


def make_env():
    """The environment for a nested make: no jobserver of the outer make."""
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(k, None)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`make install` of the build under test into a fresh DESTDIR."""
    dest = tmp_path_factory.mktemp("destdir")
    san = "1" if BUILD.name == "san" else "0"
    r = subprocess.run(
        ["make", "-s", "-C", str(REPO), "install", f"DESTDIR={dest}",
         "PREFIX=/usr", f"BUILD={BUILD}", f"SANITIZE={san}",
         "CHUTE_DEPS_DONE=1"],
        env=make_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return dest


def man_text(page):
    """The roff source with escapes that matter for searching undone."""
    t = page.read_text()
    t = t.replace("\\-", "-").replace("\\e", "\\")
    return re.sub(r"\\f[BIRP]", "", t)


def help_text(*args):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"{args}: exit {r.returncode}: {r.stderr}"
    return r.stdout + r.stderr


def long_options(text):
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]", text))


# --- man pages -------------------------------------------------------------

@pytest.mark.parametrize("prog", sorted(PAGES))
def test_man_page_renders_without_warnings(prog):
    if not shutil.which("groff"):
        pytest.skip("groff is missing (apt-get install groff-base)")
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(PAGES[prog])],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    if shutil.which("man"):
        r = subprocess.run(["man", "--warnings", "-l", str(PAGES[prog])],
                           capture_output=True, text=True, timeout=30,
                           env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat",
                                "PAGER": "cat"})
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert prog in r.stdout and "EXIT STATUS" in r.stdout


@pytest.mark.parametrize("prog", sorted(PAGES))
def test_man_page_has_the_sections(prog):
    text = PAGES[prog].read_text()
    heads = re.findall(r'^\.SH "?([^"\n]+)"?$', text, re.M)
    for want in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "FILES",
                 "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
        assert want in heads, f"{PAGES[prog].name} has no {want} section"
    if prog != "chuted":
        assert "ENVIRONMENT" in heads
        body = man_text(PAGES[prog])
        assert "CHUTE_HOME" in body and "XDG_DATA_HOME" in body
    # Exit statuses of DESIGN §6: 0 success, 1 failure, 2 usage.
    section = text.split(".SH EXIT STATUS", 1)[1].split(".SH ", 1)[0]
    for code in ("0", "1", "2"):
        assert f".B {code}\n" in section


@pytest.mark.parametrize("prog", sorted(PAGES))
def test_man_page_names_every_long_option_of_help(prog):
    exe = str(binary(prog))
    opts = long_options(help_text(exe, "--help"))
    if prog == "pairtool":
        for cmd in PAIRTOOL_COMMANDS:
            opts |= long_options(help_text(exe, cmd, "--help"))
    assert "--help" in opts and len(opts) >= 3, opts
    body = man_text(PAGES[prog])
    missing = sorted(o for o in opts if not re.search(re.escape(o) + r"(?![\w-])", body))
    assert not missing, f"{PAGES[prog].name} does not mention {missing}"


def test_pairtool_man_page_has_every_command():
    body = man_text(PAGES["pairtool"])
    for cmd in PAIRTOOL_COMMANDS:
        assert re.search(r"^\.SS \"?" + re.escape(cmd) + r"\b", body, re.M), cmd


def test_chutefs_man_page_covers_the_mount():
    body = man_text(PAGES["chutefs"])
    for want in ("outbox/", "inbox/", "/status", "user.chute.state", ".part",
                 ".crdownload", ".tmp", "fstab", "fuse.chutefs", "writing",
                 "queued", "on relay", "delivered"):
        assert want in body, want


# --- the example relay configuration ---------------------------------------

def test_example_config_names_every_chuted_option():
    opts = long_options(help_text(str(binary("chuted")), "--help"))
    opts -= {"--help", "--version", "--config"}
    conf = (REPO / "packaging" / "chuted.conf.example").read_text()
    keys = set(re.findall(r"^#?([a-z][a-z0-9-]*)\s*(?:=|$)", conf, re.M))
    missing = sorted(o for o in opts if o[2:] not in keys)
    assert not missing, f"chuted.conf.example lacks {missing}"
    body = man_text(PAGES["chuted"])
    assert "CONFIGURATION FILE" in body


def test_example_config_with_every_setting_starts_a_relay(tmp_path):
    """Uncomment every limit and the common settings: chuted takes them all,
    listens on loopback, and stops cleanly."""
    src = (REPO / "packaging" / "chuted.conf.example").read_text()
    lines = []
    for line in src.splitlines():
        m = re.match(r"^#([a-z][a-z0-9-]*\s*=.*)$", line)
        if m and not m.group(1).startswith(("tls-", "listen", "access-token", "port-file", "data")):
            line = m.group(1)
        lines.append(line)
    conf = tmp_path / "chuted.conf"
    conf.write_text("\n".join(lines) + "\n")
    port_file = tmp_path / "port"
    p = subprocess.Popen([str(binary("chuted")), "--config", str(conf),
                          "--listen", "127.0.0.1:0", "--data", str(tmp_path / "data"),
                          "--port-file", str(port_file)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert port_file.exists(), p.stderr.read1(65536) if p.poll() is not None else "no port file"
        assert int(port_file.read_text()) > 0
    finally:
        p.send_signal(signal.SIGTERM)
        err = p.communicate(timeout=30)[1]
    assert p.returncode == 0, err.decode(errors="replace")
    # the file as shipped (loopback 127.0.0.1:8443) passes validation too
    r = subprocess.run([str(binary("chuted")), "--config",
                        str(REPO / "packaging" / "chuted.conf.example"),
                        "--data", str(tmp_path / "d2"), "--threads", "0"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "threads" in r.stderr, r.stderr


# --- chutefs as mount(8) runs it --------------------------------------------

def test_chutefs_takes_the_fstab_source_as_state_folder(tmp_path):
    """fstab's fuse.chutefs runs `chutefs SOURCE MOUNTPOINT -o OPTS`: the
    source is the state folder (checked before any mount is tried)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    state = tmp_path / "no-such-state"
    r = subprocess.run([str(binary("chutefs")), str(state), str(mnt), "-o", "rw,nosuid"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and f"no device state in {state}" in r.stderr, r.stderr
    env = {**os.environ, "CHUTE_HOME": str(tmp_path / "home-from-env")}
    r = subprocess.run([str(binary("chutefs")), "none", str(mnt), "-o", "rw"],
                       capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 1 and "home-from-env" in r.stderr, r.stderr
    r = subprocess.run([str(binary("chutefs"))], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2


# --- make install and the units ---------------------------------------------

INSTALLED = {
    "usr/bin/chutefs": 0o755,
    "usr/bin/pairtool": 0o755,
    "usr/sbin/chuted": 0o755,
    "usr/share/man/man1/chutefs.1": 0o644,
    "usr/share/man/man1/pairtool.1": 0o644,
    "usr/share/man/man8/chuted.8": 0o644,
    "usr/lib/systemd/system/chuted.service": 0o644,
    "usr/lib/systemd/user/chutefs.service": 0o644,
    "usr/share/doc/chute/chuted.conf.example": 0o644,
}


def test_make_install_puts_every_file_in_place(installed):
    for rel, mode in INSTALLED.items():
        path = installed / rel
        assert path.is_file(), f"{rel} not installed"
        assert stat.S_IMODE(path.stat().st_mode) == mode, rel
    got = {str(p.relative_to(installed)) for p in installed.rglob("*") if p.is_file()}
    assert got == set(INSTALLED), sorted(got ^ set(INSTALLED))
    assert (installed / "usr/share/man/man8/chuted.8").read_bytes() == PAGES["chuted"].read_bytes()


def exec_paths(unit_text):
    return re.findall(r"^Exec\w+=[-@:+!]*(/\S+)", unit_text, re.M)


@pytest.mark.parametrize("unit,prog", [("chuted.service", "chuted"),
                                       ("chutefs.service", "chutefs")])
def test_unit_runs_the_installed_program(unit, prog, installed):
    text = (UNITS / unit).read_text()
    main = re.search(r"^ExecStart=(\S+)", text, re.M).group(1)
    assert main.endswith("/" + prog)
    assert (installed / main.lstrip("/")).is_file(), f"{unit} runs {main}, not installed"


@pytest.mark.parametrize("unit,scope", [("chuted.service", "system"),
                                        ("chutefs.service", "user")])
def test_unit_passes_systemd_analyze_verify(unit, scope, installed, tmp_path):
    sa = shutil.which("systemd-analyze")
    if not sa:
        pytest.skip("systemd-analyze is missing (apt-get install systemd; "
                    "packaging/deps.sh check installs it)")
    text = (UNITS / unit).read_text()
    # /usr/sbin/chuted and /usr/bin/chutefs are not installed on this
    # machine: point the copy at the binaries under test. Other Exec paths
    # (mkdir, fusermount3) must exist as they are.
    for prog in ("chuted", "chutefs"):
        text = re.sub(r"(?<==)(/usr/s?bin/)" + prog + r"\b", str(binary(prog)), text)
    for p in exec_paths(text):
        assert os.access(p, os.X_OK), f"{unit}: {p} is not executable here"
    copy = tmp_path / unit
    copy.write_text(text)
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "MANPATH": f"{installed}/usr/share/man:",
           "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
    cmd = [sa] + (["--user"] if scope == "user" else []) + ["verify", str(copy)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and out == "", out


# --- make deb ---------------------------------------------------------------

def deb_fields(deb):
    return subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True,
                          text=True, check=True).stdout


def deb_files(deb):
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True,
                         text=True, check=True).stdout
    return {line.split()[-1].lstrip(".") for line in out.splitlines()
            if not line.startswith("d")}


@pytest.mark.deb
def test_make_deb_builds_both_packages():
    if not shutil.which("git") or not (REPO / ".git").exists():
        pytest.skip("make deb copies the tree with git ls-files: not a git checkout")
    have = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", "debhelper"],
                          capture_output=True, text=True).stdout
    if have != "installed" and os.geteuid() != 0:
        pytest.skip("debhelper is missing and we are not root: "
                    "run packaging/deps.sh deb as root")
    env = make_env()
    env.pop("CHUTE_DEPS_DONE", None)     # let make deb install its group
    r = subprocess.run(["make", "-C", str(REPO), "deb"], env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    out = REPO / "build" / "deb"
    relay = out / "chuted_0.1.0-1_amd64.deb"
    client = out / "chute_0.1.0-1_amd64.deb"
    debs = {p.name for p in out.glob("*.deb")}
    assert relay.name in debs and client.name in debs, debs

    files = deb_files(relay)
    for f in ("/usr/sbin/chuted", "/lib/systemd/system/chuted.service",
              "/usr/share/man/man8/chuted.8.gz", "/etc/chute/chuted.conf",
              "/usr/share/doc/chuted/copyright"):
        assert f in files, (f, sorted(files))
    conffiles = subprocess.run(["dpkg-deb", "-I", str(relay), "conffiles"],
                               capture_output=True, text=True).stdout.split()
    assert "/etc/chute/chuted.conf" in conffiles

    files = deb_files(client)
    for f in ("/usr/bin/chutefs", "/usr/bin/pairtool",
              "/usr/lib/systemd/user/chutefs.service",
              "/usr/share/man/man1/chutefs.1.gz", "/usr/share/man/man1/pairtool.1.gz",
              "/usr/share/doc/chute/copyright"):
        assert f in files, (f, sorted(files))
    assert re.search(r"^Depends:.*\bfuse3\b", deb_fields(client), re.M)

    if shutil.which("lintian"):
        r = subprocess.run(["lintian", "--no-tag-display-limit", str(relay), str(client)],
                           capture_output=True, text=True, timeout=300)
        errors = [l for l in r.stdout.splitlines() if l.startswith("E:")]
        assert not errors, r.stdout
