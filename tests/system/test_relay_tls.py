"""DESIGN §3/§5, PROTOCOL §6.9: TLS from a given certificate and key; plain
HTTP only on loopback."""

import subprocess

import pytest

from conftest import RelayStartError, binary, new_item_id


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A self-signed P-256 certificate for 127.0.0.1 and localhost."""
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True, timeout=30)
    return crt, key


@pytest.fixture
def tls_relay(relay_factory, cert):
    return relay_factory(tls=cert)


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args],
                          capture_output=True, timeout=20)


def test_ready_message_names_https(tls_relay):
    assert f"listening on https://127.0.0.1:{tls_relay.port}" in tls_relay.stderr()


def test_curl_with_the_ca_certificate_gets_health(tls_relay, cert):
    r = curl("--cacert", str(cert[0]), f"{tls_relay.url}/v1/health")
    assert r.returncode == 0, r.stderr
    assert b'"status"' in r.stdout and b'"ok"' in r.stdout


def test_curl_without_trusting_the_certificate_fails(tls_relay):
    r = curl(f"{tls_relay.url}/v1/health")
    assert r.returncode == 60, (r.returncode, r.stderr)  # peer certificate not trusted


def test_plain_http_to_the_tls_port_gets_no_answer(tls_relay):
    r = curl(f"http://127.0.0.1:{tls_relay.port}/v1/health")
    assert b'"ok"' not in r.stdout
    assert r.returncode != 0 or not r.stdout.startswith(b"{"), (r.returncode, r.stdout[:100])
    # and the relay still serves TLS afterwards
    assert tls_relay.api().health().status == 200


def test_a_whole_item_round_trip_over_tls(tls_relay):
    inbox = tls_relay.api().create_inbox()
    sender = inbox.add_sender()
    data = bytes(range(256)) * 1000
    item = sender.upload(data, pieces=3)
    assert inbox.download(item).body == data
    assert inbox.ack(item).status == 204


def test_curl_uploads_over_tls(tls_relay, cert):
    inbox = tls_relay.api().create_inbox()
    sender = inbox.add_sender()
    item = new_item_id()
    sender.create(item, 5)
    r = curl("--cacert", str(cert[0]), "-X", "PATCH", "-o", "/dev/null", "-w", "%{http_code}",
             "-H", f"Authorization: Bearer {sender.token}", "-H", "Upload-Offset: 0",
             "-H", "Content-Type: application/offset+octet-stream", "--data-binary", "hello",
             f"{tls_relay.url}{inbox.item_path(item)}")
    assert r.stdout == b"204", (r.stdout, r.stderr)
    assert inbox.download(item).body == b"hello"


def test_tls_relay_may_listen_beyond_loopback(relay_factory, cert):
    relay = relay_factory(tls=cert, listen="0.0.0.0:0")
    # traffic only through loopback
    assert relay.api().health().status == 200


def test_tls_cert_without_key_is_a_usage_error(tmp_path, cert):
    r = subprocess.run([str(binary("chuted")), "--listen", "127.0.0.1:0", "--data",
                        str(tmp_path), "--tls-cert", str(cert[0])],
                       capture_output=True, timeout=20)
    assert r.returncode == 2, r


def test_unreadable_certificate_fails_to_start(relay_factory, tmp_path, cert):
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    for pair in ((tmp_path / "missing.pem", cert[1]), (bogus, cert[1]), (cert[0], bogus)):
        relay = relay_factory(tls=pair, start=False)
        with pytest.raises(RelayStartError) as e:
            relay.start(timeout=10)
        assert relay.proc.returncode in (1, 2), e.value


def test_mismatched_key_fails_to_start(relay_factory, cert, tmp_path):
    other = tmp_path / "other.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-out", str(other)],
                   check=True, capture_output=True, timeout=30)
    relay = relay_factory(tls=(cert[0], other), start=False)
    with pytest.raises(RelayStartError):
        relay.start(timeout=10)
    assert relay.proc.returncode in (1, 2)
