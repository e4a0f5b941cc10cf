"""lib/relay_client against a real chuted: every call of PROTOCOL §6, by the
C probe in tests/tools/relay_client_probe.c (the mount will use the same
client)."""

import subprocess

from conftest import BUILD, SLOW, SANITIZER_PATTERNS


def test_relay_client_speaks_all_of_section_6(relay):
    probe = BUILD / "tools" / "relay_client_probe"
    assert probe.is_file(), f"{probe} missing: run make"
    r = subprocess.run([str(probe), relay.url], capture_output=True, text=True,
                       timeout=60 * SLOW)
    for p in SANITIZER_PATTERNS:
        assert not p.search(r.stderr.encode()), r.stderr
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.rstrip().endswith("0 failed")
