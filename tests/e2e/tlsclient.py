"""tlsclient: a raw TLS client for the certificate tests, built on Python's ssl module, so that
a test controls exactly what the client offers (certificate, protocol version) and can read
what the sidecar served (protocol version, certificate serial).

    ok, detail, serial = tlsclient.attempt(port, tlsclient.client_context(ca_file))
"""

import socket
import ssl

import certgen
import harness


def client_context(ca_file, certificate=None, password=None, version=None):
    """A client context that verifies the server against `ca_file` (host name included),
    presents `certificate` (a PEM file, certificate then key) when given, and speaks only
    `version` (an ssl.TLSVersion) when given."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    if certificate is not None:
        ctx.load_cert_chain(str(certificate), password=password)
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
        if version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            # OpenSSL 3 refuses TLS 1.0/1.1 and their SHA-1 suites above security level 0.
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def hello_round_trip(sock, request_id=1):
    """Sends a hello through `sock` and returns the reply document (raises when the sidecar
    closed the connection or the TLS layer failed)."""
    sock.sendall(harness.op_msg({"hello": 1, "$db": "admin"}, request_id=request_id))
    _, reply = harness.read_reply(sock)
    return reply


def tls_connect(port, ctx):
    """An established TLS connection to the sidecar on 127.0.0.1:`port` (the test
    certificates name localhost)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def attempt(port, ctx):
    """Handshake and one hello round trip. Returns (True, protocol version, served serial)
    or (False, error text, None). With TLS 1.3 the server judges the client certificate
    after the client's handshake has completed, so a refusal shows up on the first read."""
    try:
        with tls_connect(port, ctx) as sock:
            reply = hello_round_trip(sock)
            assert reply.get("ok") == 1, reply
            return True, sock.version(), certgen.serial_of_der(sock.getpeercert(True))
    except (ssl.SSLError, ConnectionError, OSError) as exc:
        return False, f"{type(exc).__name__}: {exc}", None


def served_serial(port, ca_file):
    ok, detail, serial = attempt(port, client_context(ca_file))
    assert ok, detail
    return serial


