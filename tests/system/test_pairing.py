"""pairtool and the pairing exchange (PROTOCOL §7) against a real chuted.

Every device is a real pairtool process with its own state folder; the
relay is real; the only thing in between, in the tampering tests, is a
bit-flipping forwarder on 127.0.0.1.
"""

import base64
import hashlib
import json
import os
import re
import selectors
import shutil
import signal
import sqlite3
import stat
import subprocess
import time

import pytest

from conftest import SLOW, Api, metric, wait_until
from pairtool import Device, FlipProxy, assert_clean, pair
from test_relay_tls import cert  # noqa: F401  (the relay tests' self-signed certificate)

# Tests make many codes from 127.0.0.1: lift the per-IP pairing limits.
RELAY_ARGS = ("--pair-allocs-per-min", "1000", "--pair-claims-per-min", "1000")


@pytest.fixture
def prelay(relay_factory):
    return relay_factory(*RELAY_ARGS)


@pytest.fixture
def devices(tmp_path, prelay):
    """devices("home", "laptop", ...) → initialised Devices on the relay."""
    def make(*names, relay_url=None):
        out = []
        for n in names:
            d = Device(tmp_path / f"dev-{n}-{len(os.listdir(tmp_path))}", n,
                       relay_url or prelay.url)
            d.init()
            out.append(d)
        return out
    return make


def owner_api(device):
    row = device.device_row()
    return Api(row["relay_url"], row["owner_token"]), row["inbox"]


def senders_on_inbox(device):
    api, inbox = owner_api(device)
    r = api.get(f"/v1/inboxes/{inbox}")
    assert r.status == 200, r
    return r.json["senders"]


def no_peers(*devs):
    return all(d.peers() == [] and d.peer_rows() == [] for d in devs)


# --- init, identity, usage ---------------------------------------------------------

def test_init_makes_a_private_state_with_identity_and_inbox(tmp_path, prelay):
    d = Device(tmp_path / "s" / "home", "home", prelay.url)
    d.init()
    assert stat.S_IMODE(os.stat(d.home).st_mode) == 0o700
    for f in d.home.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f
    ident = d.run("export-identity", check=True).stdout.strip()
    rcpt = d.recipient()
    assert re.fullmatch(r"AGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}", ident)
    assert re.fullmatch(r"age1[02-9ac-hj-np-z]{58}", rcpt)
    if shutil.which("age-keygen"):
        keyfile = tmp_path / "key.txt"
        keyfile.write_text(ident + "\n")
        y = subprocess.run(["age-keygen", "-y", str(keyfile)], capture_output=True,
                           text=True, timeout=10)
        assert y.stdout.strip() == rcpt
    assert senders_on_inbox(d) == 0


def test_init_twice_with_the_same_relay_is_a_no_op(tmp_path, prelay):
    d = Device(tmp_path / "home", "home", prelay.url)
    d.init()
    before = d.device_row()
    r = d.run("init", "--relay", prelay.url + "/", "--name", "home")
    assert r.returncode == 0, r.stderr
    assert "nothing to do" in r.stderr
    assert d.device_row() == before
    other = d.run("init", "--relay", "http://127.0.0.1:1", "--name", "home")
    assert other.returncode == 1 and "already set up" in other.stderr
    assert d.device_row() == before



def test_init_again_refuses_options_it_would_ignore(tmp_path, prelay):
    d = Device(tmp_path / "home", "home", prelay.url)
    d.init()
    before = d.device_row()
    ca = tmp_path / "ca.pem"
    ca.write_text("not used\n")
    for args, named in ((("--cacert", str(ca)), "--cacert"),
                        (("--pin", "sha256//" + "B" * 43 + "="), "--pin"),
                        (("--name", "office", "--pin", "sha256//x"), "--pin"),
                        (("--cacert", str(ca), "--pin", "sha256//x"), "--cacert, --pin")):
        r = d.run("init", "--relay", prelay.url, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert f"refuses {named}" in r.stderr and '"home"' in r.stderr, r.stderr
        assert d.device_row() == before
    # the same settings again are no change, and fine
    r = d.run("init", "--relay", prelay.url, "--name", "home")
    assert r.returncode == 0 and "nothing to do" in r.stderr


def test_init_again_with_another_name_renames_the_device(tmp_path, prelay):
    d = Device(tmp_path / "home", "home", prelay.url)
    d.init()
    before = d.device_row()
    r = d.run("init", "--relay", prelay.url, "--name", "office")
    assert r.returncode == 0, r.stderr
    assert 'Renamed this device from "home" to "office"' in r.stderr
    after = d.device_row()
    assert after["name"] == "office"
    assert {k: v for k, v in after.items() if k != "name"} == \
        {k: v for k, v in before.items() if k != "name"}      # identity, inbox kept
    r = d.run("init", "--relay", prelay.url, "--name", "../bad")
    assert r.returncode == 2 and d.device_row()["name"] == "office"


def test_a_device_whose_stored_name_breaks_the_rules_is_told_to_rename(tmp_path, prelay):
    # A name stored before the rules grew (here a no-break space) would
    # fail the pairing half-way at the other device.
    d = Device(tmp_path / "home", "home", prelay.url)
    d.init()
    con = sqlite3.connect(str(d.home / "state.db"))
    con.execute("UPDATE device SET name = ?", ("my\u00a0laptop",))
    con.commit()
    con.close()
    for cmd in (("invite", "--yes"), ("join", "12-abcd-efgh", "--yes")):
        r = d.run(*cmd)
        assert r.returncode == 1, (cmd, r.stderr)
        assert "characters other devices refuse" in r.stderr and "--name NEW" in r.stderr
    assert d.run("init", "--relay", prelay.url, "--name", "my laptop").returncode == 0
    assert d.device_row()["name"] == "my laptop"


@pytest.mark.parametrize("url", ["http://192.0.2.10:8080", "http://relay.example",
                                 "http://[2001:db8::1]:80", "ftp://127.0.0.1:21"])
def test_init_refuses_plain_http_to_a_non_loopback_relay(tmp_path, url):
    home = tmp_path / "home"
    r = subprocess.run([str(Device(home, "x", url).exe), "-H", str(home), "init",
                        "--relay", url, "--name", "x"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1
    assert "refusing relay" in r.stderr
    assert not (home / "state.db").exists()


def test_init_fails_cleanly_when_the_relay_is_down(tmp_path, prelay):
    url = prelay.url
    prelay.stop()
    d = Device(tmp_path / "home", "home", url)
    r = d.run("init", "--relay", url, "--name", "home")
    assert r.returncode == 1 and "cannot create an inbox" in r.stderr
    assert not d.home.exists()          # no folder, no empty state.db
    # nothing half-stored: a later init with a live relay works
    prelay.start()
    d.relay_url = prelay.url
    d.init()


def test_init_leaves_the_mode_of_an_existing_folder_alone(tmp_path, prelay):
    home = tmp_path / "shared"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    url = prelay.url
    prelay.stop()
    d = Device(home, "home", url)
    r = d.run("init", "--relay", url, "--name", "home")
    assert r.returncode == 1
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o755
    assert list(home.iterdir()) == []   # a failed init leaves nothing behind
    prelay.start()
    d.relay_url = prelay.url
    d.init()
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(home / "state.db").st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770])
def test_init_refuses_a_folder_others_can_write(tmp_path, prelay, mode):
    home = tmp_path / "open"
    home.mkdir()
    os.chmod(home, mode)
    d = Device(home, "home", prelay.url)
    r = d.run("init", "--relay", prelay.url, "--name", "home")
    assert r.returncode == 1 and "other users can write" in r.stderr, r.stderr
    assert stat.S_IMODE(os.stat(home).st_mode) == mode
    assert list(home.iterdir()) == []
    # refused before the relay was asked: no inbox made and left behind
    assert metric(prelay.api().metrics(), "chute_http_requests_total", code="201") is None


@pytest.mark.parametrize("name", ["home\U000E0020", "home\uFE0F", "home\u00A0", " home",
                                  "\u3164", "\u0301home"],
                         ids=["tag-space", "variation-selector", "no-break-space",
                              "leading-space", "hangul-filler", "leading-mark"])
def test_init_refuses_a_name_that_reads_as_another_or_as_nothing(tmp_path, prelay, name):
    """A second "home" with an invisible character after it would get a
    folder that reads "home" at its peers, not "home-2" (PROTOCOL §7.4)."""
    d = Device(tmp_path / "home", name, prelay.url)
    r = d.run("init", "--relay", prelay.url, "--name", name)
    assert r.returncode == 2 and "not a usable device name" in r.stderr, r.stderr
    assert not (d.home / "state.db").exists()
    # refused before the relay was asked: no inbox made and left behind
    assert metric(prelay.api().metrics(), "chute_http_requests_total", code="201") is None


def test_usage_errors_exit_2_and_help_exits_0(tmp_path):
    d = Device(tmp_path / "home", "home", "http://127.0.0.1:1")
    assert d.run("--help").returncode == 0
    for c in ("init", "invite", "join", "peers", "unpair", "status",
              "export-identity", "recipient"):
        r = d.run(c, "--help")
        assert r.returncode == 0 and "Usage: pairtool" in r.stdout, c
    assert d.run().returncode == 2
    assert d.run("frobnicate").returncode == 2
    assert d.run("join").returncode == 2
    assert d.run("peers", "--bogus").returncode == 2
    assert d.run("invite", "--ttl", "soon").returncode == 2
    assert d.run("init").returncode == 2
    # commands need an initialised device
    r = d.run("peers")
    assert r.returncode == 1 and "pairtool init" in r.stderr


def test_an_empty_home_is_a_usage_error(tmp_path):
    exe = Device(tmp_path / "x", "x", "http://127.0.0.1:1").exe
    env = dict(os.environ, CHUTE_HOME=str(tmp_path / "default"))
    for args in (["-H", "", "init", "--relay", "http://127.0.0.1:1", "--name", "x"],
                 ["--home=", "status"], ["-H", "", "recipient"]):
        r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=10, env=env)
        assert r.returncode == 2 and "-H" in r.stderr, (args, r.stderr)
    assert not (tmp_path / "default").exists()


def test_usage_texts_name_every_option_and_the_program(tmp_path):
    d = Device(tmp_path / "home", "home", "http://127.0.0.1:1")
    top = d.run("--help").stdout
    assert "unpair PEER [--force]" in top and top.count("--timeout DURATION") == 2
    for c in ("invite", "join"):
        first = d.run(c, "--help").stdout.splitlines()[0]
        assert "--timeout DURATION" in first, first
    r = d.run("join", "--bogus", "12-abcd-efgh")
    assert r.returncode == 2 and r.stderr.startswith("pairtool join: "), r.stderr


@pytest.mark.parametrize("ttl,says", [("1d", "for 1 day."), ("2h", "for 2 hours."),
                                      ("90m", "for 90 minutes."), ("60s", "for 1 minute.")])
def test_invite_says_the_codes_life_in_its_unit(devices, ttl, says):
    (a,) = devices("home")
    inv = a.invite("--yes", "--ttl", ttl)
    inv.wait_for_stderr("Waiting")
    inv.proc.send_signal(signal.SIGINT)
    rc, _, err = inv.finish()
    assert says in err, err


def test_status_text_has_the_counters_of_json(devices):
    (a,) = devices("home")
    (a.home / "chutefs.db").touch()    # a mount's queue, as its first start leaves it
    text = a.run("status", check=True).stdout
    queue = json.loads(a.run("status", "--json", check=True).stdout)["queue"]
    for key in ("outgoing", "on_relay", "delivered", "incoming", "stored", "quarantined"):
        label = key.replace("_", " ") + ":"
        assert re.search(rf"^{label}\s+{queue[key]}$", text, re.M), (key, text)


def test_join_with_a_malformed_code_is_a_usage_error(devices):
    (b,) = devices("laptop")
    r = b.join("this is not a code", "--yes")
    assert r.returncode == 2 and "not a pair code" in r.stderr


# --- pairing that works ---------------------------------------------------------------

def test_two_devices_pair(devices):
    a, b = devices("home", "laptop")
    a_name_for_b, b_name_for_a = pair(a, b)
    assert a_name_for_b == "laptop" and b_name_for_a == "home"
    (pa,), (pb,) = a.peers(), b.peers()
    assert pa["name"] == "laptop" and pa["recipient"] == b.recipient()
    assert pb["name"] == "home" and pb["recipient"] == a.recipient()
    # each side holds a working send token for the other's inbox
    for sender, receiver in ((a, b), (b, a)):
        (row,) = sender.peer_rows()
        assert row["inbox"] == receiver.device_row()["inbox"]
        assert len(row["link_key"]) == 32
        up = Api(row["relay_url"], row["send_token"])
        r = up.put(f"/v1/inboxes/{row['inbox']}/items/probe-{'x' * 20}",
                   {"size": 0, "meta": "bWV0YQ=="})
        assert r.status == 201, r
    # both derived the same link key, and granted each other one sender
    assert a.peer_rows()[0]["link_key"] == b.peer_rows()[0]["link_key"]
    assert senders_on_inbox(a) == 1 and senders_on_inbox(b) == 1


def test_peers_json_shape(devices):
    a, b = devices("home", "laptop")
    pair(a, b)
    (p,) = a.peers()
    assert set(p) >= {"name", "recipient"}
    assert p["device_name"] == "laptop" and p["state"] == "paired"
    assert isinstance(p["paired_at"], int) and abs(p["paired_at"] - time.time()) < 300
    text = json.dumps(p)
    row = a.peer_rows()[0]
    assert row["send_token"] not in text  # no secrets in the listing
    st = json.loads(a.run("status", "--json", check=True).stdout)
    assert st["name"] == "home" and st["peers"] == 1 and st["relay_reachable"] is True
    assert st["recipient"] == a.recipient()


def test_three_devices_each_list_the_right_peers(devices):
    a, b, c = devices("home", "laptop", "phone")
    pair(a, b)
    pair(c, a)   # C invites this time, A joins
    assert a.peer_names() == ["laptop", "phone"]
    assert b.peer_names() == ["home"]
    assert c.peer_names() == ["home"]
    by_name = {p["name"]: p["recipient"] for p in a.peers()}
    assert by_name == {"laptop": b.recipient(), "phone": c.recipient()}


def test_a_second_peer_with_the_same_name_gets_its_own_folder(devices):
    a, b1, b2 = devices("home", "laptop", "laptop")
    pair(a, b1)
    name_for_b2, _ = pair(a, b2)
    assert name_for_b2 == "laptop-2"
    assert a.peer_names() == ["laptop", "laptop-2"]
    recips = {p["name"]: p["recipient"] for p in a.peers()}
    assert recips["laptop"] == b1.recipient() and recips["laptop-2"] == b2.recipient()


# --- codes that do not work ---------------------------------------------------------

def test_a_device_cannot_pair_with_itself(devices):
    (a,) = devices("home")
    inv = a.invite("--yes")
    j = a.join(inv.code, "--yes")
    rc, out, err = inv.finish()
    assert rc == 1 and j.returncode == 1, (err, j.stderr)
    assert "cannot pair with itself" in err, err
    assert "cancelled" in j.stderr or "itself" in j.stderr, j.stderr
    assert out.strip() == "" and j.stdout == ""
    assert no_peers(a)
    assert senders_on_inbox(a) == 0     # both grants it made are revoked


def test_pairing_the_same_two_devices_again_warns_and_names_the_folder(devices):
    a, b = devices("home", "laptop")
    assert pair(a, b) == ("laptop", "home")
    inv = a.invite("--yes")
    j = b.join(inv.code, "--yes")
    rc, out, err = inv.finish()
    assert rc == 0 and j.returncode == 0, (err, j.stderr)
    assert "already paired with that device" in err and '"laptop"' in err, err
    assert "already paired with that device" in j.stderr and '"home"' in j.stderr
    assert a.peer_names() == ["laptop", "laptop-2"]


def test_wrong_code_burns_the_nameplate(devices):
    a, b = devices("home", "laptop")
    inv = a.invite("--yes")
    nameplate, secret = inv.code.split("-", 1)
    wrong = nameplate + "-" + ("2222-2222" if secret != "2222-2222" else "3333-3333")
    r = b.join(wrong, "--yes")
    assert r.returncode == 1 and "code is wrong" in r.stderr
    rc, _, err = inv.finish()
    assert rc == 1 and "wrong code" in err and "new code" in err
    # the right code is used up now
    r = b.join(inv.code, "--yes")
    assert r.returncode == 1 and "already been used" in r.stderr
    assert no_peers(a, b)
    assert senders_on_inbox(a) == 0 and senders_on_inbox(b) == 0


def test_a_used_code_does_not_work_again(devices):
    a, b, c = devices("home", "laptop", "intruder")
    inv = a.invite("--yes")
    assert b.join(inv.code, "--yes").returncode == 0
    assert inv.finish()[0] == 0
    r = c.join(inv.code, "--yes")
    assert r.returncode == 1 and "already been used" in r.stderr
    assert a.peer_names() == ["laptop"] and no_peers(c)


def test_an_expired_code_does_not_work(devices):
    a, b = devices("home", "laptop")
    inv = a.invite("--yes", "--ttl", "2s")
    rc, _, err = inv.finish(timeout=20)
    assert rc == 1 and "expired" in err
    r = b.join(inv.code, "--yes")
    assert r.returncode == 1
    assert "expired" in r.stderr or "no such code" in r.stderr
    assert no_peers(a, b)


@pytest.mark.parametrize("offset", ["+2h", "-2h"])
def test_a_device_whose_clock_is_hours_off_still_pairs(devices, offset):
    # The code's time comes from the seconds the relay says it has left,
    # not from the relay's absolute expiry read on another clock: ahead,
    # the inviter gave up after a second; behind, it would wait 3 hours.
    a, b = devices("home", "laptop")
    a.clock_off_by(offset)
    b.clock_off_by(offset)
    inv = a.invite("--yes")
    time.sleep(2)                          # past the second a clock ahead left it
    r = b.join(inv.code, "--yes")
    rc, _, err = inv.finish(timeout=30)
    assert rc == 0, err
    assert r.returncode == 0, r.stderr
    assert "for 60 minutes" in err
    assert a.peer_names() == ["laptop"] and b.peer_names() == ["home"]


def test_a_code_whose_inviter_gave_up_says_so_to_the_joiner(devices):
    a, b = devices("home", "laptop")
    inv = a.invite("--yes")
    inv.proc.send_signal(signal.SIGINT)
    rc, _, err = inv.finish()
    assert rc == 1 and "Stopped" in err
    r = b.join(inv.code, "--yes")
    assert r.returncode == 1
    assert "cancelled this code" in r.stderr, r.stderr
    assert "already been used" not in r.stderr
    assert no_peers(a, b)


@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_closed_pipe_does_not_kill_the_inviter(devices, closed):
    """`pairtool invite --yes | (read code; ...)`: the reader leaves after
    the code; a closed stderr likewise. No SIGPIPE: the pairing completes
    and the exit status is its outcome."""
    a, b = devices("home", "laptop")
    inv = a.invite("--yes")
    getattr(inv.proc, closed).close()
    j = b.join(inv.code, "--yes")
    rc = inv.proc.wait(timeout=60 * SLOW)
    assert rc == 0, (rc, j.stderr)
    assert j.returncode == 0, j.stderr
    assert a.peer_names() == ["laptop"] and b.peer_names() == ["home"]


def test_an_unknown_code_is_not_found(devices):
    (b,) = devices("laptop")
    r = b.join("999999-abcd-efgh", "--yes")
    assert r.returncode == 1 and "no such code" in r.stderr


# --- people saying no ---------------------------------------------------------------

def test_the_inviter_refuses_the_joiner(devices):
    a, b = devices("home", "laptop")
    inv = a.invite()                     # no --yes: the prompt reads stdin
    j = b.join_process(inv.code, "--yes")
    inv.wait_for_stderr("[y/N]")
    assert "laptop" in inv._stderr.decode()
    inv.answer("n\n")
    rc, _, err = inv.finish()
    out, jerr = j.communicate(timeout=60 * SLOW)
    assert_clean(jerr)
    assert rc == 1 and "refused" in err
    assert j.returncode == 1 and "refused" in jerr
    assert no_peers(a, b)
    assert senders_on_inbox(a) == 0 and senders_on_inbox(b) == 0


def pair_approved_on_stdin(a, b):
    """b joins a's code with --yes and a's person approves on stdin: the
    inviter's stderr up to its prompt, then all of it, and the joiner's."""
    inv = a.invite()
    j = b.join_process(inv.code, "--yes")
    inv.wait_for_stderr("[y/N]")
    shown = inv._stderr.decode()
    inv.answer("y\n")
    rc, _, err = inv.finish()
    _, jerr = j.communicate(timeout=60 * SLOW)
    assert_clean(jerr)
    assert rc == 0 and j.returncode == 0, (err, jerr)
    return shown, err, jerr


def test_the_inviter_approves_on_stdin_and_both_see_the_same_check(devices):
    a, b = devices("home", "laptop")
    _, err, jerr = pair_approved_on_stdin(a, b)
    sas_a = re.search(r"both screens show:\s+(\d{3} \d{3})", err).group(1)
    sas_b = re.search(r"both screens show:\s+(\d{3} \d{3})", jerr).group(1)
    assert sas_a == sas_b
    assert a.peer_names() == ["laptop"] and b.peer_names() == ["home"]


def test_a_name_cannot_pass_for_the_check_number(devices):
    """A joiner's chosen name holding a fake check is shown quoted and
    escaped; the real check number stands alone on its own line."""
    (a,) = devices("home")
    fake = 'laptop" Check that both screens show: 482 913'
    (b,) = devices(fake)
    shown, _, jerr = pair_approved_on_stdin(a, b)
    real = re.search(r"Both screens should show (\d{3} \d{3})", jerr).group(1)
    alone = [l.strip() for l in shown.splitlines() if re.fullmatch(r"\s*\d{3} \d{3}\s*", l)]
    assert alone == [real], shown
    # the name: in quotes, its own quote escaped, on a line of its own kind
    assert '"laptop\\" Check that both screens show: 482 913"' in shown, shown
    name_line = next(l for l in shown.splitlines() if "482 913" in l)
    assert real not in name_line
    assert "Pair with \"laptop\\\"" in shown
    assert a.peers()[0]["device_name"] == fake


def test_the_joiner_declines(devices):
    a, b = devices("home", "laptop")
    inv = a.invite("--yes")
    r = b.join(inv.code, input="n\n")
    assert r.returncode == 1 and "declined" in r.stderr
    rc, _, err = inv.finish()
    assert rc == 1 and "declined" in err
    assert no_peers(a, b)
    assert senders_on_inbox(a) == 0 and senders_on_inbox(b) == 0


def stderr_until(proc, needle, timeout=20):
    """Read a running process's stderr until it holds needle; returns it all."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    fd = proc.stderr.fileno()
    buf = b""
    deadline = time.monotonic() + timeout * SLOW
    try:
        while needle.encode() not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"never said {needle!r}: {buf!r}")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(f"ended before saying {needle!r}: {buf!r}")
            buf += chunk
    finally:
        sel.close()
    return buf.decode(errors="replace")


def test_an_accept_after_the_inviter_gave_up_stores_nothing(devices):
    # The inviter waits for the joiner's person for a while, then gives up
    # and closes the session: a "y" typed after that must not pair one side.
    a, b = devices("home", "laptop")
    inv = a.invite("--yes", "--timeout", "1s")          # 10 s for a person's answer
    j = b.join_process(inv.code)
    stderr_until(j, "[y/N]")
    rc, _, err = inv.finish(timeout=40)
    assert rc == 1 and "Timed out" in err
    j.stdin.write("y\n")
    j.stdin.flush()
    out, jerr = j.communicate(timeout=60 * SLOW)
    assert j.returncode == 1, jerr
    assert no_peers(a, b)
    assert senders_on_inbox(a) == 0 and senders_on_inbox(b) == 0


def test_no_answer_in_time_is_no_pairing_and_the_other_side_is_told(devices):
    a, b = devices("home", "laptop")
    inv = a.invite("--yes")                              # waits 600 s for B's person
    j = b.join_process(inv.code, "--timeout", "1s")      # asks for 10 s; nobody answers
    stderr_until(j, "[y/N]")
    j.wait(timeout=40 * SLOW)                            # stdin stays open, unanswered
    jerr = j.stderr.read()
    assert j.returncode == 1 and "No answer within 10 s" in jerr, jerr
    rc, _, err = inv.finish(timeout=30)                  # told, not left waiting
    assert rc == 1 and "cancelled" in err, err
    assert no_peers(a, b)
    assert senders_on_inbox(a) == 0 and senders_on_inbox(b) == 0


@pytest.mark.parametrize("who", ["inviter", "joiner"])
def test_a_person_who_answers_after_the_codes_ttl_still_pairs(devices, who):
    """The code's --ttl bounds the time to use it; a used code's session
    lasts for the run (§6.7), whose people each get 600 s to compare the
    check number (§7.5)."""
    a, b = devices("home", "laptop")
    ttl = int(6 * SLOW)
    t0 = time.monotonic()
    if who == "inviter":
        inv = a.invite("--ttl", f"{ttl}s")
        j = b.join_process(inv.code, "--yes")
        inv.wait_for_stderr("[y/N]")
    else:
        inv = a.invite("--yes", "--ttl", f"{ttl}s")
        j = b.join_process(inv.code)
        stderr_until(j, "[y/N]")
    time.sleep(max(0.0, t0 + ttl + 2 - time.monotonic()))   # the code's time is over
    if who == "inviter":
        inv.answer("y\n")
    else:
        j.stdin.write("y\n")
        j.stdin.flush()
    rc, _, err = inv.finish()
    _, jerr = j.communicate(timeout=60 * SLOW)
    assert_clean(jerr)
    assert rc == 0 and j.returncode == 0, (err, jerr)
    assert a.peer_names() == ["laptop"] and b.peer_names() == ["home"]


def test_a_run_longer_than_the_relay_allows_says_the_codes_time_ran_out(tmp_path,
                                                                        relay_factory):
    """A relay whose max_pair_ttl is shorter than a person takes ends the
    session mid-run (§6.7): both sides say the code's time ran out, not
    that the relay failed."""
    ttl = f"{int(5 * SLOW)}s"
    relay = relay_factory(*RELAY_ARGS, "--pair-ttl", ttl, "--max-pair-ttl", ttl)
    a = Device(tmp_path / "a", "home", relay.url)
    b = Device(tmp_path / "b", "laptop", relay.url)
    a.init()
    b.init()
    inv = a.invite()
    t0 = time.monotonic()
    j = b.join_process(inv.code, "--yes")
    inv.wait_for_stderr("[y/N]")
    time.sleep(max(0.0, t0 + 6 * SLOW - time.monotonic()))
    inv.answer("y\n")
    rc, _, err = inv.finish()
    _, jerr = j.communicate(timeout=60 * SLOW)
    assert_clean(jerr)
    assert rc == 1 and "time ran out" in err and "--ttl" in err, err
    assert j.returncode == 1 and "time ran out" in jerr, jerr
    assert no_peers(a, b)
    assert senders_on_inbox(a) == 0 and senders_on_inbox(b) == 0


@pytest.mark.parametrize("who", ["inviter", "joiner"])
def test_a_signal_mid_pairing_stops_it_cleanly_and_revokes_its_grant(devices, who):
    a, b = devices("home", "laptop")
    if who == "inviter":
        # A approved and waits for B's person; A is stopped.
        inv = a.invite("--yes")
        j = b.join_process(inv.code)
        stderr_until(j, "[y/N]")
        assert senders_on_inbox(a) == 1
        t0 = time.monotonic()
        inv.proc.send_signal(signal.SIGTERM)
        rc, _, err = inv.finish(timeout=30)
        assert rc == 1 and "Stopped" in err
        assert time.monotonic() - t0 < 15 * SLOW
        j.stdin.write("y\n")
        j.stdin.flush()
        out, jerr = j.communicate(timeout=60 * SLOW)
        assert j.returncode == 1, jerr
    else:
        # B sent its details and waits for A's person; B is stopped.
        inv = a.invite()
        j = b.join_process(inv.code, "--yes")
        inv.wait_for_stderr("[y/N]")
        assert senders_on_inbox(b) == 1
        j.send_signal(signal.SIGTERM)
        out, jerr = j.communicate(timeout=30 * SLOW)
        assert j.returncode == 1 and "Stopped" in jerr, jerr
        inv.answer("y\n")
        rc, _, err = inv.finish(timeout=30)
        assert rc == 1 and "cancelled" in err, err
    assert no_peers(a, b)
    assert senders_on_inbox(a) == 0 and senders_on_inbox(b) == 0


def test_a_code_claimed_and_left_says_so(devices, prelay):
    (a,) = devices("home")
    inv = a.invite("--yes", "--ttl", "6s")
    nameplate = inv.code.split("-", 1)[0]
    r = prelay.api().post(f"/v1/pair/{nameplate}/claim", {})   # and no HELLO
    assert r.status == 200, r
    rc, _, err = inv.finish(timeout=40)
    assert rc == 1 and "Someone used the code but went no further" in err, err
    assert no_peers(a) and senders_on_inbox(a) == 0


# --- the relay failing or lying -------------------------------------------------------

def test_relay_killed_mid_exchange_leaves_no_peer(devices, prelay):
    a, b = devices("home", "laptop")
    inv = a.invite()
    j = b.join_process(inv.code, "--yes")
    inv.wait_for_stderr("[y/N]")          # A has B's details, B waits for A
    prelay.kill(signal.SIGKILL)
    inv.answer("y\n")
    rc, _, err = inv.finish()
    out, jerr = j.communicate(timeout=60 * SLOW)
    assert_clean(jerr)
    assert rc == 1 and j.returncode == 1, (err, jerr)
    assert "relay" in err and "relay" in jerr
    assert no_peers(a, b)


def test_a_stalled_relay_is_reported_within_a_poll_and_the_grace(devices, prelay):
    """A relay that stops answering (SIGSTOP: connections are still
    accepted) while the joiner long-polls is the relay unreachable after
    the poll's wait and the 5 s grace of §7.7, not after several whole
    request timeouts."""
    a, b = devices("home", "laptop")
    inv = a.invite()
    j = b.join_process(inv.code, "--yes")
    inv.wait_for_stderr("[y/N]")          # B long-polls for A's decision
    prelay.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        _, jerr = j.communicate(timeout=90 * SLOW)
        took = time.monotonic() - t0
    finally:
        prelay.proc.send_signal(signal.SIGCONT)
    assert_clean(jerr)
    assert j.returncode == 1 and "unreachable" in jerr, jerr
    # 25 s poll + 5 s grace, then best-effort cleanup of a few seconds each
    assert took < 50 * SLOW, took
    inv.answer("n\n")
    rc, _, err = inv.finish()
    assert rc == 1
    assert no_peers(a, b)


def test_relay_down_before_invite(devices, prelay):
    (a,) = devices("home")
    prelay.kill(signal.SIGKILL)
    r = a.run("invite", "--yes")
    assert r.returncode == 1 and r.stdout == "" and "relay" in r.stderr
    st = json.loads(a.run("status", "--json", check=True).stdout)
    assert st["relay_reachable"] is False


@pytest.mark.parametrize("flip_type,offset,who", [
    (0x02, 20, "Ya"),        # CPACE1: inviter's element
    (0x02, 60, "commit"),    # CPACE1: the SAS commitment (ADa)
    (0x03, 5, "Yb"),         # CPACE2: joiner's element
    (0x03, 40, "Tb"),        # CPACE2: joiner's confirmation tag
    (0x04, 5, "Ta"),         # CONFIRM: inviter's confirmation tag
    (0x04, 40, "nonce"),     # CONFIRM: the SAS nonce
    (0x05, 30, "sealed"),    # JOINER_INFO: a sealed payload
])
def test_a_flipped_bit_in_a_pairing_message_fails_both_sides(tmp_path, prelay, flip_type,
                                                             offset, who):
    proxy = FlipProxy(prelay.port, flip_type=flip_type, flip_offset=offset)
    try:
        a = Device(tmp_path / "a", "home", proxy.url)
        b = Device(tmp_path / "b", "laptop", proxy.url)
        a.init()
        b.init()
        inv = a.invite("--yes")
        r = b.join(inv.code, "--yes")
        rc, _, err = inv.finish()
        assert proxy.flipped == 1
        assert rc == 1 and r.returncode == 1, (err, r.stderr)
        assert no_peers(a, b)
        wait_until(lambda: senders_on_inbox(a) == 0 and senders_on_inbox(b) == 0,
                   timeout=5, what="granted tokens revoked")
    finally:
        proxy.close()


def test_the_forwarder_alone_does_not_break_pairing(tmp_path, prelay):
    proxy = FlipProxy(prelay.port)
    try:
        a = Device(tmp_path / "a", "home", proxy.url)
        b = Device(tmp_path / "b", "laptop", proxy.url)
        a.init()
        b.init()
        pair(a, b)
        assert a.peer_names() == ["laptop"] and b.peer_names() == ["home"]
    finally:
        proxy.close()


@pytest.mark.parametrize("dup_type", [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07])
def test_a_message_stored_twice_by_a_retried_send_is_read_once(tmp_path, prelay, dup_type):
    proxy = FlipProxy(prelay.port, dup_type=dup_type)
    try:
        a = Device(tmp_path / "a", "home", proxy.url)
        b = Device(tmp_path / "b", "laptop", proxy.url)
        a.init()
        b.init()
        pair(a, b)
        assert proxy.duplicated == 1
        assert a.peer_names() == ["laptop"] and b.peer_names() == ["home"]
    finally:
        proxy.close()


def test_a_lost_answer_to_the_joiners_accept_still_pairs_both(tmp_path, prelay):
    """The relay stores the joiner's M6 accept but its answer is lost; the
    inviter reads the accept, stores and closes the session, so the
    joiner's retry gets 410. The accept may be on the relay (§7.5): the
    joiner stores too, keeps the send token it granted, and says what to
    check."""
    proxy = FlipProxy(prelay.port, lose_type=0x07)
    try:
        a = Device(tmp_path / "a", "home", proxy.url)
        b = Device(tmp_path / "b", "laptop", proxy.url)
        a.init()
        b.init()
        inv = a.invite("--yes")
        j = b.join(inv.code, "--yes")
        rc, out, err = inv.finish()
        assert proxy.lost == 1
        assert rc == 0 and j.returncode == 0, (err, j.stderr)
        assert out.strip() == "laptop" and j.stdout.strip() == "home"
        assert a.peer_names() == ["laptop"] and b.peer_names() == ["home"]
        assert "answer" in j.stderr and "pairtool peers" in j.stderr, j.stderr
        # nothing revoked: each side's token for the other's inbox works
        for sender, receiver in ((a, b), (b, a)):
            (row,) = sender.peer_rows()
            assert row["inbox"] == receiver.device_row()["inbox"]
            up = Api(prelay.url, row["send_token"])
            r = up.put(f"/v1/inboxes/{row['inbox']}/items/probe-{'x' * 20}",
                       {"size": 0, "meta": "bWV0YQ=="})
            assert r.status == 201, r
        assert a.peer_rows()[0]["link_key"] == b.peer_rows()[0]["link_key"]
        assert senders_on_inbox(a) == 1 and senders_on_inbox(b) == 1
    finally:
        proxy.close()


def test_relay_files_hold_no_code_secret_or_name(devices, prelay):
    a, b = devices("home-zebra-7", "laptop-quokka-9")
    inv = a.invite("--yes")
    j = b.join(inv.code, "--yes")
    rc, _, err = inv.finish()
    assert rc == 0 and j.returncode == 0
    secret = inv.code.split("-", 1)[1]
    needles = [inv.code, secret, secret.replace("-", ""), "home-zebra-7",
               "laptop-quokka-9", a.recipient(), b.recipient(),
               a.device_row()["owner_token"], b.peer_rows()[0]["send_token"],
               a.peer_rows()[0]["send_token"]]
    sas = re.search(r"both screens show:\s+(\d{3} \d{3})", err).group(1)
    needles.append(sas)
    prelay.stop()    # flush everything the relay keeps to its files
    files = [p for p in prelay.data_dir.rglob("*") if p.is_file()]
    assert files
    for f in files:
        data = f.read_bytes()
        for n in needles:
            for form in {n, n.upper(), n.lower()}:
                assert form.encode() not in data, f"{n!r} found in relay file {f}"


# --- unpair --------------------------------------------------------------------------

def test_unpair_revokes_the_peers_send_token(devices):
    a, b = devices("home", "laptop")
    pair(a, b)
    (b_row,) = b.peer_rows()     # what B holds for A's inbox
    up = Api(b_row["relay_url"], b_row["send_token"])
    item = f"/v1/inboxes/{b_row['inbox']}/items/" + "before-unpair-xxxxxxxx"
    assert up.put(item, {"size": 0, "meta": "bWV0YQ=="}).status == 201

    r = a.run("unpair", "laptop")
    assert r.returncode == 0, r.stderr
    assert a.peers() == [] and a.peer_rows() == []
    assert senders_on_inbox(a) == 0

    # B's next upload to A is refused, exactly like a missing inbox
    item2 = f"/v1/inboxes/{b_row['inbox']}/items/" + "after-unpair-xxxxxxxxx"
    r2 = up.put(item2, {"size": 0, "meta": "bWV0YQ=="})
    assert r2.status == 404 and r2.json == {"error": "not found"}
    # B still lists A until it learns (lazily, PROTOCOL §7.9); unpairing
    # there works too
    assert b.peer_names() == ["home"]
    assert b.run("unpair", "home").returncode == 0
    assert b.peers() == []


def test_unpair_of_an_unknown_peer_fails(devices):
    (a,) = devices("home")
    r = a.run("unpair", "nobody")
    assert r.returncode == 1 and "no peer called" in r.stderr


def test_unpair_with_the_relay_down_changes_nothing_unless_forced(devices, prelay):
    a, b = devices("home", "laptop")
    pair(a, b)
    prelay.kill(signal.SIGKILL)
    r = a.run("unpair", "laptop")
    assert r.returncode == 1 and "nothing changed" in r.stderr
    assert a.peer_names() == ["laptop"]
    r = a.run("unpair", "laptop", "--force")
    assert r.returncode == 0 and a.peers() == []
    # the truth: forgotten, but not revoked
    assert "revoked" in r.stderr and "NOT revoked" in r.stderr, r.stderr
    assert "access to this device is revoked" not in r.stderr
    assert "cannot be retried" in r.stderr


# --- silence ---------------------------------------------------------------------------

def test_inviter_times_out_when_the_joiner_goes_silent(devices, prelay):
    (a,) = devices("home")
    inv = a.invite("--yes", "--timeout", "2s")
    nameplate = inv.code.split("-", 1)[0]
    api = prelay.api()
    r = api.post(f"/v1/pair/{nameplate}/claim", {})
    assert r.status == 200, r
    side = api.with_token(r.json["token"])
    # a HELLO, then nothing: someone who claimed the code and stopped
    assert side.post(f"/v1/pair/{r.json['session']}/messages",
                     {"body": "AQE="}).status == 201
    t0 = time.monotonic()
    rc, _, err = inv.finish(timeout=30)
    assert rc == 1 and "Timed out" in err
    assert time.monotonic() - t0 < 20 * SLOW
    assert no_peers(a) and senders_on_inbox(a) == 0


def test_joiner_times_out_when_the_inviter_goes_silent(devices, prelay):
    (b,) = devices("laptop")
    r = prelay.api().post("/v1/pair", {})
    assert r.status == 201, r
    code = r.json["nameplate"] + "-abcd-efgh"
    j = b.join(code, "--yes", "--timeout", "2s", timeout=30)
    assert j.returncode == 1 and "Timed out" in j.stderr
    assert no_peers(b) and senders_on_inbox(b) == 0


@pytest.mark.parametrize("body", [b"\x02" + b"\0" * 10,       # CPACE1 is 81 bytes
                                  b"\x02" + b"\0" * 3000],     # the relay takes 4096
                         ids=["short", "longer-than-any-pairing-message"])
def test_a_key_message_of_the_wrong_length_is_a_protocol_error(devices, prelay, body):
    """§7.3: a wrong length ends the run with ABORT 02, not 01 (a wrong
    code); the test plays the inviter through the relay API."""
    (b,) = devices("laptop")
    r = prelay.api().post("/v1/pair", {})
    assert r.status == 201, r
    session = r.json["session"]
    me = prelay.api().with_token(r.json["token"])
    j = b.join_process(r.json["nameplate"] + "-abcd-efgh", "--yes")
    def first_message():
        got = me.get(f"/v1/pair/{session}/messages?after=0&wait=2")   # a claim wakes it too
        assert got.status == 200, got
        return got.json["messages"]
    hello = wait_until(first_message, timeout=20, what="the joiner's HELLO")[0]
    assert base64.b64decode(hello["body"])[0] == 0x01
    assert me.post(f"/v1/pair/{session}/messages",
                   {"body": base64.b64encode(body).decode()}).status == 201
    out, err = j.communicate(timeout=30 * SLOW)
    assert j.returncode == 1 and "malformed" in err and "relay" not in err, err
    after = [m for m in me.get(f"/v1/pair/{session}/messages?after={hello['seq'] + 1}"
                               ).json["messages"]]
    assert [base64.b64decode(m["body"]) for m in after] == [b"\x7f\x02"]
    assert no_peers(b) and senders_on_inbox(b) == 0


def test_an_oversized_message_from_the_joiner_is_a_protocol_error(devices, prelay):
    """§7.3: a message longer than any pairing message is one of the wrong
    length: the inviter says the joining device sent a malformed message,
    not that the relay failed, and answers ABORT 02. The test plays the
    joiner through the relay API."""
    (a,) = devices("home")
    inv = a.invite("--yes")
    api = prelay.api()
    r = api.post(f"/v1/pair/{inv.code.split('-', 1)[0]}/claim", {})
    assert r.status == 200, r
    path = f"/v1/pair/{r.json['session']}/messages"
    me = api.with_token(r.json["token"])
    assert me.post(path, {"body": base64.b64encode(b"\x01\x01").decode()}).status == 201
    (cpace1,) = me.get(f"{path}?after=0&wait=10").json["messages"]
    assert base64.b64decode(cpace1["body"])[0] == 0x02
    big = b"\x03" + b"\0" * 3000           # CPACE2 is 65 bytes; the relay takes 4096
    assert me.post(path, {"body": base64.b64encode(big).decode()}).status == 201
    got = me.get(f"{path}?after={cpace1['seq']}&wait=10")
    assert got.status == 200, got
    assert [base64.b64decode(m["body"]) for m in got.json["messages"]] == [b"\x7f\x02"]
    rc, _, err = inv.finish()
    assert rc == 1 and "malformed" in err and "relay" not in err.splitlines()[-1], err
    assert no_peers(a) and senders_on_inbox(a) == 0


# --- TLS: --cacert and --pin are kept and used --------------------------------------------

def public_key_pin(crt):
    """curl's sha256//BASE64 pin of a certificate's public key."""
    if shutil.which("certtool"):
        info = subprocess.run(["certtool", "-i", "--infile", str(crt)], check=True,
                              capture_output=True, text=True, timeout=30).stdout
        return "sha256//" + re.search(r"pin-sha256:(\S+)", info).group(1)
    pub = subprocess.run(["openssl", "x509", "-in", str(crt), "-pubkey", "-noout"],
                         check=True, capture_output=True, timeout=30).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         check=True, capture_output=True, timeout=30).stdout
    return "sha256//" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_pairing_over_tls_with_a_ca_file_and_with_a_pin(tmp_path, relay_factory, cert):
    crt, key = cert
    pin = public_key_pin(crt)
    relay = relay_factory(*RELAY_ARGS, tls=(crt, key))
    assert relay.url.startswith("https://")
    a = Device(tmp_path / "a", "home", relay.url)
    b = Device(tmp_path / "b", "laptop", relay.url)
    # the self-signed certificate is not trusted without being told
    r = a.run("init", "--relay", relay.url, "--name", "home")
    assert r.returncode == 1 and "cannot create an inbox" in r.stderr
    wrong = "sha256//" + "A" * 43 + "="
    r = b.run("init", "--relay", relay.url, "--name", "laptop", "--pin", wrong)
    assert r.returncode == 1
    a.init("--cacert", str(crt))
    b.init("--pin", pin)
    assert a.device_row()["cacert"] == str(crt.resolve())
    assert b.device_row()["pin"] == pin
    pair(a, b)
    assert a.peer_names() == ["laptop"] and b.peer_names() == ["home"]
    for d in (a, b):
        assert json.loads(d.run("status", "--json", check=True).stdout)["relay_reachable"]


# --- a private relay (PROTOCOL §6.1) -----------------------------------------------------

def shows_no_secret(device, secret):
    """No pairtool output of device contains secret."""
    for args in (("status",), ("status", "--json"), ("peers",), ("peers", "--json"),
                 ("recipient",)):
        r = device.run(*args, check=True)
        assert secret not in r.stdout + r.stderr, args
    return True


def test_a_private_relay_needs_its_access_token_to_init_and_pair(tmp_path, relay_factory):
    token = "relay-access-7f3a9c"
    relay = relay_factory(*RELAY_ARGS, access_token=token)
    a = Device(tmp_path / "a", "home", relay.url)
    b = Device(tmp_path / "b", "laptop", relay.url)
    r = a.run("init", "--relay", relay.url, "--name", "home")
    assert r.returncode == 1
    assert "private" in r.stderr and "--access-token-file" in r.stderr, r.stderr
    r = a.run("init", "--relay", relay.url, "--name", "home", "--access-token", "nope-42")
    assert r.returncode == 1 and "refused the access token" in r.stderr, r.stderr
    assert "nope-42" not in r.stderr
    a.init("--access-token", token)
    # from a file, so that it need not show in ps: only its first line counts
    token_file = tmp_path / "token"
    token_file.write_text(token + "\nnot part of it\n")
    b.init("--access-token-file", str(token_file))
    assert b.device_row()["access_token"] == token
    assert pair(a, b) == ("laptop", "home")
    for d in (a, b):
        assert shows_no_secret(d, token)
        assert "access token is set" in d.run("status", check=True).stdout


def test_a_new_access_token_is_stored_by_init_again(tmp_path, relay_factory):
    relay = relay_factory(*RELAY_ARGS, access_token="old-token")
    a = Device(tmp_path / "a", "home", relay.url)
    b = Device(tmp_path / "b", "laptop", relay.url)
    a.init("--access-token", "old-token")
    b.init("--access-token", "old-token")
    relay.access_token = "new-token"
    relay.listen = f"127.0.0.1:{relay.port}"   # the devices know it by its URL
    relay.restart()
    r = a.run("invite", "--yes", timeout=20)
    assert r.returncode == 1 and "private" in r.stderr and "access-token" in r.stderr, r.stderr
    assert r.stdout == ""
    for d in (a, b):
        r = d.run("init", "--relay", relay.url, "--access-token", "new-token", check=True)
        assert "stored the new access token" in r.stderr
        assert shows_no_secret(d, "new-token")
    assert pair(a, b) == ("laptop", "home")


def test_malformed_access_tokens_are_usage_errors(tmp_path):
    d = Device(tmp_path / "home", "home", "http://127.0.0.1:1")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for args in (("--access-token", ""), ("--access-token", "a\tb"),
                 ("--access-token", "x" * 200), ("--access-token-file", str(empty)),
                 ("--access-token", "t", "--access-token-file", str(empty))):
        r = d.run("init", "--relay", d.relay_url, *args)
        assert r.returncode == 2, (args, r.stderr)
    r = d.run("init", "--relay", d.relay_url, "--access-token-file", str(tmp_path / "none"))
    assert r.returncode == 1 and "cannot read an access token" in r.stderr
    assert not (d.home / "state.db").exists()
