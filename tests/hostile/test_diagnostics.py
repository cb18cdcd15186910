"""What the sidecar says about bytes it refuses (issue 12 item 4): first bytes with the high
bit set are unsupported_tls only when they are an SSLv2-format CLIENT-HELLO, and
invalid_first_bytes otherwise; a failed TLS handshake names certificate verification only
when a certificate was verified."""

import os
import socket
import ssl
import time
import urllib.request

import pytest

import harness

# An SSLv2-format CLIENT-HELLO offering SSL 3.0/TLS 1.0, as very old clients sent it.
SSLV2_HELLO = (b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10" +
               bytes.fromhex("000039" "000038" "000035" "000016" "000013" "00000a" "0700c0") +
               os.urandom(16))
HIGH_BIT_GARBAGE = b"\xff\xfe\xfd\xfc" + os.urandom(60)
# A TLS record header announcing a ClientHello, then bytes that are not one.
BROKEN_CLIENT_HELLO = b"\x16\x03\x01\x00\x40\x01" + b"\x00" * 3 + b"not a client hello" * 4


def rejected(metrics_address):
    counts = {}
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("tls_sidecar_connections_rejected_total{"):
                reason = line.split('reason="', 1)[1].split('"', 1)[0]
                counts[reason] = float(line.rsplit(" ", 1)[1])
    return counts


def send_and_wait_for_close(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        try:
            while sock.recv(4096):
                pass
        except ConnectionResetError:
            pass


def wait_for_count(metrics_address, reason, want, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        counts = rejected(metrics_address)
        if counts.get(reason, 0) >= want or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def test_high_bit_bytes_are_invalid_unless_they_are_an_sslv2_hello(procs, pki):
    standin = procs.standin()
    metrics = f"127.0.0.1:{harness.free_port()}"
    sidecar = procs.sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["server"],
                            "--tlsCAFile", pki["ca"], upstream=standin.address, metrics=metrics)
    send_and_wait_for_close(sidecar.port, HIGH_BIT_GARBAGE)
    counts = wait_for_count(metrics, "invalid_first_bytes", 1)
    assert counts.get("invalid_first_bytes") == 1, counts
    assert counts.get("unsupported_tls", 0) == 0, counts
    send_and_wait_for_close(sidecar.port, SSLV2_HELLO)
    counts = wait_for_count(metrics, "unsupported_tls", 1)
    assert counts.get("unsupported_tls") == 1 and counts.get("invalid_first_bytes") == 1, counts


def handshake_failures(sidecar):
    return [line["attr"]["detail"] for line in sidecar.log_lines()
            if line["msg"] == "TLS handshake failed"]


def wait_for_failures(sidecar, count, timeout=10):
    deadline = time.monotonic() + timeout
    while len(handshake_failures(sidecar)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return handshake_failures(sidecar)


def test_a_handshake_failure_names_verification_only_when_it_ran(procs, pki, tmp_path):
    standin = procs.standin()
    sidecar = procs.sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["server"],
                            "--tlsCAFile", pki["ca"], upstream=standin.address)
    send_and_wait_for_close(sidecar.port, BROKEN_CLIENT_HELLO)
    failures = wait_for_failures(sidecar, 1)
    assert len(failures) == 1, failures
    assert "certificate verification" not in failures[0], failures

    # A client certificate from another CA: the sidecar verifies it, and says so.
    other = harness.make_pki(tmp_path / "other-pki")
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.load_cert_chain(str(other["client"]))
    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(harness.op_msg({"ping": 1, "$db": "admin"}))
                tls.recv(1)
    failures = wait_for_failures(sidecar, 2)
    assert len(failures) == 2, failures
    assert "(certificate verification: " in failures[1], failures
