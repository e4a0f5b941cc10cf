"""DESIGN §6, PROTOCOL §6.9: chuted's command line. Exit codes: 0 success,
1 failure, 2 usage."""

import re
import socket
import subprocess

import pytest

from conftest import RelayStartError, binary


def chuted(*args, timeout=20):
    return subprocess.run([str(binary("chuted")), *map(str, args)], capture_output=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_help_describes_the_options_and_exits_0():
    r = chuted("--help")
    assert r.returncode == 0, r
    out = r.stdout.decode()
    for opt in ("--listen", "--data", "--tls-cert", "--tls-key", "--access-token",
                "--insecure", "--port-file"):
        assert opt in out, f"{opt} missing from --help"


def test_version_prints_the_version_and_exits_0():
    r = chuted("--version")
    assert r.returncode == 0, r
    assert re.search(rb"\b0\.1\.0\b", r.stdout), r.stdout


@pytest.mark.parametrize("args", [
    ["--no-such-option"],
    ["--listen"],
    ["--listen", "not-an-address", "--data", "{data}"],
    ["--listen", "127.0.0.1:99999", "--data", "{data}"],
    ["--listen", "127.0.0.1:0", "--data", "{data}", "--item-ttl", "soon"],
    ["--listen", "127.0.0.1:0", "--data", "{data}", "--max-item-size", "-1"],
    ["--listen", "127.0.0.1:0", "--data", "{data}", "--max-conns-per-ip", "lots"],
    ["--listen", "127.0.0.1:0", "--data", "{data}", "stray-argument"],
])
def test_bad_usage_exits_2_with_a_message(tmp_path, args):
    r = chuted(*(a.replace("{data}", str(tmp_path)) for a in args))
    assert r.returncode == 2, (args, r)
    assert r.stderr.strip(), "no message on stderr"


def test_non_loopback_listen_without_tls_is_refused(tmp_path):
    r = chuted("--listen", "0.0.0.0:0", "--data", tmp_path)
    assert r.returncode == 2, r
    assert b"insecure" in r.stderr.lower() or b"tls" in r.stderr.lower(), r.stderr


def test_insecure_allows_plain_http_beyond_loopback(relay_factory):
    relay = relay_factory("--insecure", listen="0.0.0.0:0")
    assert relay.api().health().status == 200  # through 127.0.0.1 only


def test_ipv6_loopback_is_served(relay_factory):
    try:
        socket.socket(socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6")
    relay = relay_factory(listen="[::1]:0")
    assert relay.url.startswith("http://[::1]:")
    assert relay.api().health().status == 200


def test_ready_message_and_port_file_agree(relay):
    assert relay.port_file.read_text().strip() == str(relay.port)
    assert f"chuted: listening on http://127.0.0.1:{relay.port}" in relay.stderr()


def test_a_port_in_use_is_a_failure_not_a_hang(relay, relay_factory):
    second = relay_factory(listen=f"127.0.0.1:{relay.port}", start=False)
    with pytest.raises(RelayStartError):
        second.start(timeout=10)
    assert second.proc.returncode == 1
    assert relay.api().health().status == 200


def test_unusable_data_folder_is_a_failure(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    proc = chuted("--listen", "127.0.0.1:0", "--data", not_a_dir, timeout=20)
    assert proc.returncode in (1, 2), proc
    assert proc.stderr.strip()


def test_data_folder_is_created_if_missing(tmp_path, relay_factory):
    relay = relay_factory(start=False)
    relay.data_dir = tmp_path / "new" / "data"
    relay.start()
    assert relay.api().create_inbox()
    assert relay.data_dir.is_dir()
