"""Byte-level behaviour of the data path (SPEC §3 and §10) seen from raw sockets: nothing is
lost or reordered, half-close travels both ways, the sniffer copes with bytes arriving one
at a time, and what is not MongoDB or TLS is closed, counted, and does not stop the next
client."""

import hashlib
import os
import socket
import struct
import threading
import time

import bson
import pymongo
import pytest

import harness
import streams

TRANSPORTS = ("plaintext", "tls")

# A real first message, so that a plaintext stream passes the sniffer the way a driver's does;
# whatever follows it is opaque to the sidecar.
PREFIX = harness.op_msg({"hello": 1, "$db": "admin"}, request_id=7)


def _tls_args(pki, mode="allowTLS"):
    return ["--tlsMode", mode, "--tlsCertificateKeyFile", pki["server"], "--tlsCAFile", pki["ca"]]


def _connect(sidecar, transport, pki):
    stream = streams.Stream(sidecar.port, ca=pki["ca"] if transport == "tls" else None)
    if transport == "tls":
        stream.handshake()
    return stream


def _assert_serves_next_client(sidecar, pki):
    for tls in (False, True):
        options = dict(tls=True, tlsCAFile=str(pki["ca"])) if tls else {}
        client = pymongo.MongoClient("127.0.0.1", sidecar.port, serverSelectionTimeoutMS=5000,
                                     **options)
        try:
            assert client.admin.command("ping")["ok"] == 1
        finally:
            client.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_64_mib_random_stream_comes_back_identical(procs, pki, transport):
    echo = procs.standin("--echo")
    sidecar = procs.sidecar(*_tls_args(pki), upstream=echo.address)
    data = PREFIX + os.urandom(64 << 20)
    with _connect(sidecar, transport, pki) as stream:
        count, digest = stream.pump(data)
    assert count == len(data)
    assert digest == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_client_half_close_loses_nothing(procs, pki, transport):
    echo = procs.standin("--echo")
    sidecar = procs.sidecar(*_tls_args(pki), upstream=echo.address)
    data = PREFIX + os.urandom(3 << 20)
    with _connect(sidecar, transport, pki) as stream:
        # Everything is written and the write side closed (FIN, or close_notify alone for TLS)
        # before the echo is read: the reply must still arrive in full, then the end.
        stream.send(data)
        stream.shutdown_write()
        echoed = stream.recv_until_eof()
        assert len(echoed) == len(data)
        assert echoed == data
        if transport == "tls":
            assert stream.close_notify_received, "the sidecar ended TLS without close_notify"


class _GreetThenDrain:
    """An upstream that, on the connection that starts with `first`, sends `greeting`,
    half-closes, then reads until the client's EOF. Other connections (the sidecar's
    readiness probe) are closed."""

    def __init__(self, first, greeting):
        self.first = first
        self.greeting = greeting
        self.received = bytearray()
        self.done = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.listener.settimeout(30)
        while not self.done.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(30)
                try:
                    start = harness.read_exact(conn, len(self.first))
                except (ConnectionError, OSError):
                    continue
                if start != self.first:
                    continue
                self.received += start
                conn.sendall(self.greeting)
                conn.shutdown(socket.SHUT_WR)
                while True:
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        break
                    self.received += chunk
                self.done.set()

    def close(self):
        self.listener.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_server_half_close_loses_nothing(procs, pki, transport):
    greeting = os.urandom(1 << 20)
    first = harness.op_msg({"ping": 1, "$db": "half-close-test"}, request_id=99)
    upstream = _GreetThenDrain(first, greeting)
    try:
        sidecar = procs.sidecar(*_tls_args(pki), upstream=upstream.address)
        later = os.urandom(2 << 20)
        with _connect(sidecar, transport, pki) as stream:
            stream.send(first)
            # The server's side ends first; the client's side must stay open for writing.
            assert stream.recv_until_eof() == greeting
            stream.send(later)
            stream.shutdown_write()
            assert upstream.done.wait(30), "the upstream never saw the client's end of stream"
            assert bytes(upstream.received) == first + later
            stream.recv_until_eof()
    finally:
        upstream.close()


@pytest.mark.parametrize("opcode", ["OP_MSG", "OP_QUERY"])
def test_plaintext_hello_dribbled_one_byte_at_a_time(procs, pki, opcode):
    standin = procs.standin()
    sidecar = procs.sidecar(*_tls_args(pki), upstream=standin.address)
    if opcode == "OP_MSG":
        hello = harness.op_msg({"hello": 1, "$db": "admin"}, request_id=11)
    else:
        hello = harness.op_query("admin.$cmd", {"isMaster": 1}, request_id=11)
    with streams.Stream(sidecar.port) as stream:
        stream.send(hello, dribble=True)
        _, reply = harness.read_reply(stream.sock)
    assert reply["ok"] == 1
    assert reply.get("isWritablePrimary", reply.get("ismaster")) is True


def test_client_hello_dribbled_one_byte_at_a_time(procs, pki):
    standin = procs.standin()
    sidecar = procs.sidecar(*_tls_args(pki), upstream=standin.address)
    with streams.Stream(sidecar.port, ca=pki["ca"]) as stream:
        stream.handshake(dribble=True)
        stream.send(harness.op_msg({"hello": 1, "$db": "admin"}, request_id=12))
        header = stream.recv_exact(16)
        length = int.from_bytes(header[:4], "little")
        body = stream.recv_exact(length - 16)
    reply = bson.decode(body[5:])
    assert reply["ok"] == 1
    assert reply["isWritablePrimary"] is True


def _assert_closed_soon(sock, within):
    """The sidecar closes `sock` (EOF or reset) within `within` seconds; returns how long."""
    start = time.monotonic()
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError(f"connection still open after {within}s")
    return time.monotonic() - start


SNIFF_TIMEOUT_CONFIG = "[limits]\nsniffTimeoutMs = 500\n"


@pytest.mark.parametrize("sent", [b"", PREFIX[:5]], ids=["silent", "five-bytes"])
def test_silence_is_closed_at_the_sniff_timeout(procs, pki, sent):
    standin = procs.standin()
    sidecar = procs.sidecar(*_tls_args(pki), upstream=standin.address,
                            config=SNIFF_TIMEOUT_CONFIG)
    with socket.create_connection(("127.0.0.1", sidecar.port)) as sock:
        sock.sendall(sent)
        elapsed = _assert_closed_soon(sock, within=5)
    assert elapsed >= 0.4, f"closed after {elapsed:.2f}s, before the 500 ms sniff timeout"
    sidecar.wait_for_log("sniff_timeout")
    _assert_serves_next_client(sidecar, pki)


def _rejection_reasons(sidecar):
    return [line["attr"].get("reason") for line in sidecar.log_lines()
            if line.get("msg") == "connection rejected"]


@pytest.mark.parametrize("reset,reason", [(False, "sniff_eof"), (True, "sniff_error")],
                         ids=["closed", "reset"])
def test_a_client_gone_before_the_sniff_is_counted_by_how_it_went(procs, pki, reset, reason):
    """A clean close before 16 bytes is sniff_eof (health checks do that); a reset, a
    socket error, is sniff_error."""
    standin = procs.standin()
    sidecar = procs.sidecar(*_tls_args(pki), upstream=standin.address)
    sock = socket.create_connection(("127.0.0.1", sidecar.port))
    if reset:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN. Nothing is
        # sent first: with bytes still unread when the reset arrives, libuv reads them and
        # reports the hang-up as an end of stream, so the reset is only seen on an empty
        # socket.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    else:
        sock.sendall(PREFIX[:5])
    sock.close()
    sidecar.wait_for_log(f'"reason":"{reason}"')
    other = "sniff_eof" if reset else "sniff_error"
    assert other not in _rejection_reasons(sidecar), sidecar.describe()
    _assert_serves_next_client(sidecar, pki)


# Bytes 0-3 as a little-endian length are 0 (not MongoDB) and byte 0 is not 0x16 (not TLS).
GARBAGE = b"\x00\x00\x00\x00" + b"this is not a driver" + bytes(range(200, 256))

# An SSLv2-compatible ClientHello (the record header has the high bit set), as very old
# clients send: length 0x2e, CLIENT-HELLO, version 3.1, 21 bytes of ciphers, 16 of challenge.
SSLV2_HELLO = (b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10" +
               bytes.fromhex("000039" "000038" "000035" "000016" "000013" "00000a" "0700c0") +
               os.urandom(16))


@pytest.mark.parametrize("first_bytes,reason", [
    (GARBAGE, "invalid_first_bytes"),
    (SSLV2_HELLO, "unsupported_tls"),
], ids=["garbage", "sslv2-hello"])
def test_unrecognised_first_bytes_are_closed_and_counted(procs, pki, first_bytes, reason):
    standin = procs.standin()
    sidecar = procs.sidecar(*_tls_args(pki), upstream=standin.address)
    with socket.create_connection(("127.0.0.1", sidecar.port)) as sock:
        sock.sendall(first_bytes)
        _assert_closed_soon(sock, within=5)
    sidecar.wait_for_log(reason)
    assert sidecar.alive()
    _assert_serves_next_client(sidecar, pki)
