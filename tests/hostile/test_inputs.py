"""Hostile input on the public port (issue 12 item 5): silence, dribbled hellos, garbage of
1 byte to 64 KiB, HTTP, SSLv2/SSLv3/TLS 1.0/TLS 1.1 hellos, a ClientHello over 16 KiB, 2 GiB,
negative and short message lengths, deeply nested BSON, a 1 MiB application name,
renegotiation, 40 KeyUpdates, forged records, resets in the middle of a message, data after
close_notify. One sidecar (two loops, allowTLS) takes every case in turn; after each, it
must serve a normal plaintext and TLS client, its memory must stay within a bound of where it
started and it must not spin. The figures are printed at the end."""

import random
import socket
import ssl
import struct
import subprocess
import time

import bson
import pytest

import harness
import probes
from tlsclient import client_context, hello_round_trip, tls_connect

CONFIG = "[limits]\nsniffTimeoutMs = 2000\nhandshakeTimeoutMs = 3000\n"
FIGURES = []


@pytest.fixture(scope="module")
def target(tmp_path_factory, pki):
    group = harness.ProcessGroup(tmp_path_factory.mktemp("inputs"))
    try:
        standin = group.standin()
        sidecar = group.sidecar("--threads", "2", "--tlsMode", "allowTLS",
                                "--tlsCertificateKeyFile", pki["server"], "--tlsCAFile",
                                pki["ca"], config=CONFIG, upstream=standin.address)
        probes.serve_time(sidecar.port, pki["ca"])  # warm: TLS contexts, first allocations
        yield sidecar, pki["ca"], probes.rss_mib(sidecar.proc.pid)
    finally:
        print(group.describe())
        probes.record("hostile inputs: case, seconds to serve a client after, RSS MiB, "
                      "idle CPU s over 1 s:")
        for row in FIGURES:
            probes.record("  %-28s %.3f  %.1f  %.2f" % row)
        group.stop_all()


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def hello(request_id=1, **fields):
    return harness.op_msg({"hello": 1, "$db": "admin", **fields}, request_id)


def header(length, opcode=2013):
    return struct.pack("<iiii", length, 1, 0, opcode)


# --- the cases: each sends its bytes and asserts what the sidecar did with them -------------

def silence(port, ca):
    with connect(port) as sock:
        assert probes.closed_within(sock, 6) == b""


def dribbled_client_hello(port, ca):
    with connect(port) as sock:
        for byte in probes.client_hello():
            sock.sendall(bytes([byte]))
            time.sleep(0.002)
        sock.settimeout(5)
        assert sock.recv(1) == b"\x16", "no ServerHello after a dribbled ClientHello"


def dribbled_hello(port, ca):
    with connect(port) as sock:
        for byte in hello():
            sock.sendall(bytes([byte]))
            time.sleep(0.002)
        assert harness.read_reply(sock)[1]["ok"] == 1


def garbage(size):
    def case(port, ca):
        data = random.Random(size).randbytes(size)
        with connect(port) as sock:
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                return  # closed while it was still sending
            probes.closed_within(sock, 6)
    return case


def http(port, ca):
    with connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: db\r\nUser-Agent: scanner\r\n\r\n")
        # As mongod: one plain answer saying what went wrong, then the close.
        answer = probes.closed_within(sock, 6)
        assert b"trying to access MongoDB over HTTP" in answer, answer


def sslv2_hello(port, ca):
    record = (b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10" +
              bytes.fromhex("000039000038000035000016000013" "00000a0700c0") + bytes(16))
    with connect(port) as sock:
        sock.sendall(record)
        assert not probes.closed_within(sock, 6).startswith(b"\x16")


def old_hello(version):
    def case(port, ca):
        with connect(port) as sock:
            sock.sendall(probes.client_hello(version=version, record_version=min(version, 0x0301),
                                             suites=probes.OLD_SUITES))
            answer = probes.closed_within(sock, 6)
            # An alert (protocol_version) or nothing; never a ServerHello.
            assert answer == b"" or answer[0] == 0x15, answer[:16]
    return case


def huge_client_hello(padding):
    def case(port, ca):
        with connect(port) as sock:
            try:
                sock.sendall(probes.client_hello(padding=padding))
            except (BrokenPipeError, ConnectionResetError):
                return
            # A handshake message may span records: BoringSSL answers a ClientHello it can
            # hold, refuses a larger one with an alert, and the handshake timeout ends the
            # connection the client then abandons.
            answer = probes.closed_within(sock, 6)
            assert answer == b"" or answer[0] in (0x15, 0x16), answer[:16]
    return case


def length(value):
    def case(port, ca):
        with connect(port) as sock:
            sock.sendall(header(value) + b"\x00" * 64)
            probes.closed_within(sock, 6)
    return case


def nested_bson(depth):
    """A document nested `depth` deep ({"d": {"d": ...}}), built by hand: encoders refuse it."""
    document = b"\x05\x00\x00\x00\x00"
    for _ in range(depth):
        element = b"\x03d\x00" + document
        document = struct.pack("<i", 4 + len(element) + 1) + element + b"\x00"
    return document


def deep_bson(port, ca):
    body = bson.encode({"hello": 1, "$db": "admin"})
    nested = b"\x03nested\x00" + nested_bson(1000)
    body = struct.pack("<i", len(body) + len(nested)) + body[4:-1] + nested + b"\x00"
    message = b"\x00\x00\x00\x00\x00" + body
    with connect(port) as sock:
        sock.sendall(struct.pack("<iiii", 16 + len(message), 1, 0, 2013) + message)
        sock.settimeout(6)
        try:
            harness.read_reply(sock)  # the stand-in answers, or the sidecar closes
        except (ConnectionError, EOFError, OSError):
            pass


def huge_appname(port, ca):
    with connect(port) as sock:
        sock.sendall(hello(client={"application": {"name": "a" * (1 << 20)},
                                   "driver": {"name": "x" * 4096, "version": "1"}}))
        sock.settimeout(10)
        try:
            harness.read_reply(sock)
        except (ConnectionError, EOFError, OSError):
            pass


def openssl_s_client(port, ca, version_flag, lines, seconds=10):
    """Runs `openssl s_client`, types `lines` once the handshake is done (an R line
    renegotiates, a k line sends a KeyUpdate asking for one back), one line per read, and
    returns its output once the sidecar has closed the connection; fails when it has not
    closed it within `seconds`."""
    child = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                              "-CAfile", str(ca), version_flag],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1)  # the handshake; s_client reads no command before it is done
        for line in lines:
            try:
                child.stdin.write(line)
                child.stdin.flush()
            except BrokenPipeError:
                break  # already closed by the sidecar
            time.sleep(0.03)
        try:
            out, _ = child.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            child.kill()
            out, _ = child.communicate()
            raise AssertionError(f"the sidecar kept the connection open:\n{out[-2000:]}")
        return out
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def renegotiation(port, ca):
    out = openssl_s_client(port, ca, "-tls1_2", ["R\n"])
    assert "Verify return code: 0" in out, out[-2000:]
    assert "RENEGOTIATING" in out and "alert no renegotiation" in out, out[-2000:]


def key_updates(port, ca):
    # BoringSSL accepts 32 KeyUpdates in a row without application data, then closes
    # (TOO_MANY_KEY_UPDATES): the 33rd ends the connection before the 40th is typed.
    out = openssl_s_client(port, ca, "-tls1_3", ["k\n"] * 40)
    assert "Verify return code: 0" in out, out[-2000:]
    assert 32 < out.count("KEYUPDATE") < 40, out[-2000:]


def forged_record(version):
    def case(port, ca):
        ctx = client_context(ca)
        ctx.minimum_version = ctx.maximum_version = version
        with tls_connect(port, ctx) as tls:
            assert hello_round_trip(tls)["ok"] == 1
            with probes.raw_socket_of(tls) as raw:
                raw.sendall(b"\x17\x03\x03\x00\x40" + random.Random(7).randbytes(64))
                answer = probes.closed_within(raw, 6)
                assert answer == b"" or answer[0] in (0x15, 0x17), answer[:16]
    return case


def reset_mid_message(tls):
    def case(port, ca):
        body = hello(padding="p" * 300000)
        if tls:
            sock = tls_connect(port, client_context(ca))
        else:
            sock = connect(port)
        sock.sendall(body[:len(body) // 2])
        time.sleep(0.2)
        probes.reset(sock)
    return case


def close_notify_then_data(port, ca):
    ctx = probes.tls12_context(ca)
    tls = tls_connect(port, ctx)
    assert hello_round_trip(tls)["ok"] == 1
    tls.settimeout(6)
    try:
        raw = tls.unwrap()  # sends close_notify and reads the sidecar's
    except (ssl.SSLError, OSError):
        tls.close()
        return
    with raw:
        try:
            raw.sendall(b"data after close_notify" * 100)
        except (BrokenPipeError, ConnectionResetError):
            return
        probes.closed_within(raw, 6)


CASES = {
    "silence": silence,
    "dribbled_client_hello": dribbled_client_hello,
    "dribbled_hello": dribbled_hello,
    "garbage_1B": garbage(1),
    "garbage_1KiB": garbage(1024),
    "garbage_64KiB": garbage(65536),
    "http": http,
    "sslv2_hello": sslv2_hello,
    "sslv3_hello": old_hello(0x0300),
    "tls1.0_hello": old_hello(0x0301),
    "tls1.1_hello": old_hello(0x0302),
    "client_hello_20KiB": huge_client_hello(20000),
    "client_hello_64KiB": huge_client_hello(65000),
    "length_2GiB": length(0x7FFFFFFF),
    "length_negative": length(-1),
    "length_short": length(5),
    "deep_bson": deep_bson,
    "appname_1MiB": huge_appname,
    "renegotiation": renegotiation,
    "40_key_updates": key_updates,
    "forged_record_tls1.2": forged_record(ssl.TLSVersion.TLSv1_2),
    "forged_record_tls1.3": forged_record(ssl.TLSVersion.TLSv1_3),
    "reset_mid_message_plain": reset_mid_message(False),
    "reset_mid_message_tls": reset_mid_message(True),
    "close_notify_then_data": close_notify_then_data,
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_leaves_the_sidecar_serving(target, name):
    sidecar, ca, rss_at_start = target
    CASES[name](sidecar.port, ca)
    assert sidecar.alive(), sidecar.describe()
    # Every connection of the case is gone from the sidecar too (none left half-open).
    path = sidecar.stderr_path.parent / f"{sidecar.name}.sock"
    harness.wait_until(lambda: sum(harness.control_request(path, {"cmd": "status"})["active"]
                                   .values()) == 0, timeout=10, what=f"{name}: no connection open")
    served = probes.serve_time(sidecar.port, ca)
    rss = probes.rss_mib(sidecar.proc.pid)
    cpu = probes.idle_cpu(sidecar.proc.pid)
    FIGURES.append((name, served, rss, cpu))
    assert served < 2, f"{name}: a normal client took {served:.2f}s"
    assert rss - rss_at_start < probes.RSS_GROWTH_LIMIT_MIB, f"{name}: RSS {rss:.0f} MiB"
    assert cpu < probes.IDLE_CPU_LIMIT_SECONDS, f"{name}: {cpu:.2f} CPU s over an idle second"
