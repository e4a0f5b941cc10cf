"""Interop of lib/age (through tests/tools/agetool) with the stock `age`.

Files Chute encrypts must decrypt with `age -d -i`, and files `age -r`
makes must decrypt with lib/age; both ways for sizes around the 64 KiB
chunk boundary and a file of several MiB, with one and three recipients
whose keys come from both agetool and age-keygen. Damaged files must be
refused loudly. Self-contained: fixtures live here, not in a conftest.
"""
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BUILD = Path(os.environ.get("CHUTE_BUILD", HERE / ".." / ".." / "build"))
AGETOOL = BUILD / "tools" / "agetool"

SIZES = [0, 1, 65535, 65536, 65537, 5 * 1024 * 1024 + 7]
CHUNK_CT = 65536 + 16


def run(args, stdin=b"", check=True):
    p = subprocess.run(args, input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({p.returncode}): "
                             f"{p.stderr.decode(errors='replace')}")
    return p


@pytest.fixture(scope="module")
def tools():
    assert AGETOOL.is_file(), f"{AGETOOL} missing: run make first"
    for name in ("age", "age-keygen"):
        assert shutil.which(name), f"the stock `{name}` command is required"
    return AGETOOL


class Key:
    def __init__(self, path, recipient):
        self.path = path
        self.recipient = recipient


@pytest.fixture(scope="module")
def keys(tools, tmp_path_factory):
    """Two agetool keys and two age-keygen keys."""
    d = tmp_path_factory.mktemp("keys")
    out = []
    for i in range(2):
        p = d / f"agetool{i}.txt"
        p.write_bytes(run([str(tools), "keygen"]).stdout)
        rcpt = run([str(tools), "recipient", "-i", str(p)]).stdout
        out.append(Key(p, rcpt.decode().strip()))
    for i in range(2):
        p = d / f"agekeygen{i}.txt"
        run(["age-keygen", "-o", str(p)])
        rcpt = run(["age-keygen", "-y", str(p)]).stdout
        out.append(Key(p, rcpt.decode().strip()))
    return out


def plaintext(size):
    # Deterministic but not repetitive at any small period.
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def agetool_encrypt(tools, recipients, data):
    args = [str(tools), "encrypt"]
    for r in recipients:
        args += ["-r", r]
    return run(args, data).stdout


def age_encrypt(recipients, data):
    args = ["age"]
    for r in recipients:
        args += ["-r", r]
    return run(args, data).stdout


def test_agetool_and_age_keygen_agree_on_the_recipient_of_a_key(keys):
    for k in keys:
        assert run(["age-keygen", "-y", str(k.path)]).stdout.decode().strip() \
            == k.recipient
        assert k.recipient.startswith("age1") and len(k.recipient) == 62


@pytest.mark.parametrize("size", SIZES)
def test_files_lib_encrypts_decrypt_with_stock_age(tools, keys, size):
    data = plaintext(size)
    blob = agetool_encrypt(tools, [keys[0].recipient], data)
    out = run(["age", "-d", "-i", str(keys[0].path)], blob).stdout
    assert out == data


@pytest.mark.parametrize("size", SIZES)
def test_files_stock_age_encrypts_decrypt_with_lib(tools, keys, size):
    data = plaintext(size)
    blob = age_encrypt([keys[2].recipient], data)
    out = run([str(tools), "decrypt", "-i", str(keys[2].path)], blob).stdout
    assert out == data


@pytest.mark.parametrize("size", [0, 65537, 3 * 1024 * 1024])
def test_three_recipients_from_both_keygens_each_decrypt_both_ways(
        tools, keys, size):
    data = plaintext(size)
    three = [keys[0], keys[2], keys[3]]
    by_lib = agetool_encrypt(tools, [k.recipient for k in three], data)
    by_age = age_encrypt([k.recipient for k in three], data)
    for k in three:
        assert run(["age", "-d", "-i", str(k.path)], by_lib).stdout == data
        assert run([str(tools), "decrypt", "-i", str(k.path)],
                   by_age).stdout == data
    # a key that is not among the recipients gets nothing
    p = run([str(tools), "decrypt", "-i", str(keys[1].path)], by_age,
            check=False)
    assert p.returncode == 1 and p.stdout == b""
    assert b"no identity matches" in p.stderr


def refused(tools, key, blob):
    p = run([str(tools), "decrypt", "-i", str(key.path)], blob, check=False)
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith(b"agetool: decrypt: ")
    return p


def test_flipped_payload_byte_is_refused(tools, keys):
    blob = bytearray(age_encrypt([keys[2].recipient], plaintext(200000)))
    blob[-100] ^= 0x01
    p = refused(tools, keys[2], bytes(blob))
    assert b"authentication failed" in p.stderr


def test_flipped_header_mac_is_refused_before_any_plaintext(tools, keys):
    blob = bytearray(age_encrypt([keys[2].recipient], plaintext(1000)))
    at = blob.index(b"\n--- ") + 5
    blob[at] = ord("B") if blob[at] != ord("B") else ord("C")
    p = refused(tools, keys[2], bytes(blob))
    assert b"header MAC does not verify" in p.stderr
    assert p.stdout == b""


def test_file_cut_at_a_chunk_boundary_is_refused_as_truncated(tools, keys):
    data = plaintext(3 * 65536 + 10)
    blob = age_encrypt([keys[2].recipient], data)
    header_len = blob.index(b"\n--- ") + 1 + 48
    cut = blob[:header_len + 16 + 2 * CHUNK_CT]
    p = refused(tools, keys[2], cut)
    assert b"truncated" in p.stderr
    # what came out before the error is a prefix of the plaintext only
    assert data.startswith(p.stdout)


def test_file_cut_inside_a_chunk_or_header_is_refused(tools, keys):
    blob = age_encrypt([keys[3].recipient], plaintext(100000))
    for cut in (len(blob) - 1, len(blob) - 40000, 100, 0):
        refused(tools, keys[3], blob[:cut])


def test_trailing_garbage_after_the_last_chunk_is_refused(tools, keys):
    blob = age_encrypt([keys[2].recipient], plaintext(65536))
    refused(tools, keys[2], blob + b"\x00")


def test_armored_files_are_refused_cleanly(tools, keys):
    armored = run(["age", "-a", "-r", keys[2].recipient], b"hi").stdout
    assert armored.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    p = refused(tools, keys[2], armored)
    assert b"malformed" in p.stderr
