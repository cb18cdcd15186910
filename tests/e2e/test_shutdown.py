"""SIGTERM as SPEC §10 has it: the listeners close; connections idle between requests close at
once; a request in flight gets up to limits.drainSeconds for its reply, then its connection
closes at the message boundary; exit 0.

The slow requests are the stand-in's `sleep` command (mongod's {sleep: 1, millis: N}). A
request counts as in flight once the stand-in has logged it (--verbose), so SIGTERM never
races the request on its way in."""

import json
import signal
import socket
import struct
import subprocess
import threading
import time

import bson
import pymongo
import pytest

import harness
import streams

CONFIG = """[limits]
drainSeconds = {drain}
"""


def start(procs, pki, drain=30):
    standin = procs.standin("--verbose")
    sidecar = procs.sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["server"],
                            upstream=standin.address, config=CONFIG.format(drain=drain))
    return standin, sidecar


def wait_for(condition, what, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.02)


def active_connections(sidecar):
    """Open client connections, from the sidecar's own count (control socket status)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(sidecar.stderr_path.parent / f"{sidecar.name}.sock"))
        s.sendall(b'{"cmd":"status"}\n')
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, "control socket closed without an answer"
            data += chunk
    active = json.loads(data)["active"]
    return active["tls"] + active["plaintext"]


def read_reply(stream):
    header = stream.recv_exact(16)
    assert int.from_bytes(header[12:16], "little") == harness.OP_MSG
    body = stream.recv_exact(int.from_bytes(header[:4], "little") - 16)
    return bson.decode(body[5:])


def wait_exit(sidecar, timeout):
    """Waits for the sidecar to exit; returns (exit status, seconds it took)."""
    started = time.monotonic()
    try:
        status = sidecar.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {timeout}s after SIGTERM\n{sidecar.describe()}")
    return status, time.monotonic() - started


def sleep_request(millis, request_id=1):
    return harness.op_msg({"sleep": 1, "millis": millis, "$db": "admin"}, request_id=request_id)


def assert_end_of_stream(stream, tls):
    assert stream.recv() == b""
    if tls:
        # A deliberate end at a message boundary, not a cut: close_notify came first.
        assert stream.close_notify_received, "no close_notify before the end of the stream"


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
def test_idle_pool_does_not_hold_the_exit(procs, pki, tls):
    """A connected pymongo pool that sits idle (as every driver pool does between requests)
    is closed at once: SIGTERM exits in about a second, not after drainSeconds (30)."""
    _, sidecar = start(procs, pki)
    options = dict(tls=True, tlsCAFile=str(pki["ca"])) if tls else {}
    client = pymongo.MongoClient("127.0.0.1", sidecar.port, minPoolSize=4,
                                 serverSelectionTimeoutMS=5000, **options)
    try:
        assert client.admin.command("ping")["ok"] == 1
        # The monitor plus the minPoolSize connections, all open and idle.
        wait_for(lambda: active_connections(sidecar) >= 5, "five client connections")
        with streams.Stream(sidecar.port, ca=pki["ca"] if tls else None, timeout=10) as raw:
            if tls:
                raw.handshake()
            raw.send(harness.op_msg({"ping": 1, "$db": "admin"}))
            assert read_reply(raw)["ok"] == 1
            sidecar.proc.send_signal(signal.SIGTERM)
            status, seconds = wait_exit(sidecar, timeout=30)
            assert status == 0, sidecar.describe()
            assert seconds < 2.5, f"exit took {seconds:.1f}s with only idle connections"
            assert_end_of_stream(raw, tls)
    finally:
        client.close()
    assert "drain window over" not in sidecar.stderr_text()


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
def test_request_in_flight_gets_its_reply_then_the_close(procs, pki, tls):
    """A request in flight at SIGTERM (its reply 2 s away, drainSeconds 10) gets the whole
    reply, then its connection closes; an idle connection beside it closes at once; the
    process exits soon after the reply."""
    standin, sidecar = start(procs, pki, drain=10)
    ca = pki["ca"] if tls else None
    with streams.Stream(sidecar.port, ca=ca) as busy, \
            streams.Stream(sidecar.port, ca=ca) as idle:
        for stream in (busy, idle):
            if tls:
                stream.handshake()
            stream.send(harness.op_msg({"ping": 1, "$db": "admin"}))
            assert read_reply(stream)["ok"] == 1
        busy.send(sleep_request(2000, request_id=2))
        sent = time.monotonic()
        standin_log = standin.stderr_path
        wait_for(lambda: "sleep 2000 ms" in standin_log.read_text(), "the stand-in got the sleep")
        sidecar.proc.send_signal(signal.SIGTERM)

        assert_end_of_stream(idle, tls)
        idle_closed = time.monotonic() - sent
        assert idle_closed < 1.5, f"the idle connection closed only after {idle_closed:.1f}s"

        reply = read_reply(busy)
        replied = time.monotonic() - sent
        assert reply["ok"] == 1, reply
        assert replied >= 1.9, f"reply after {replied:.1f}s: the sleep did not happen"
        assert_end_of_stream(busy, tls)
        status, _ = wait_exit(sidecar, timeout=15)
        exited = time.monotonic() - sent
    assert status == 0, sidecar.describe()
    assert exited < 2 + 2.5, f"exit {exited:.1f}s after the request (its reply took 2s)"
    assert "drain window over" not in sidecar.stderr_text()


def test_pymongo_request_in_flight_completes(procs, pki):
    """The same with a real driver: a pymongo command running at SIGTERM returns its result."""
    standin, sidecar = start(procs, pki, drain=10)
    client = pymongo.MongoClient("127.0.0.1", sidecar.port, serverSelectionTimeoutMS=5000,
                                 retryReads=False, retryWrites=False)
    result = {}
    try:
        assert client.admin.command("ping")["ok"] == 1

        def slow():
            try:
                result["reply"] = client.admin.command("sleep", 1, millis=2000)
            except Exception as error:  # reported by the assertion below
                result["error"] = error

        worker = threading.Thread(target=slow)
        worker.start()
        wait_for(lambda: "sleep 2000 ms" in standin.stderr_path.read_text(),
                 "the stand-in got the sleep")
        sidecar.proc.send_signal(signal.SIGTERM)
        worker.join(timeout=15)
        assert not worker.is_alive()
        assert result.get("reply", {}).get("ok") == 1, result
        # The pool's connections (the monitor's, the one that ran the sleep) are idle now.
        status, seconds = wait_exit(sidecar, timeout=15)
        assert status == 0, sidecar.describe()
        assert seconds < 2.5, f"exit {seconds:.1f}s after the reply, with drainSeconds 10"
    finally:
        client.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
def test_request_slower_than_drain_seconds_is_closed_at_the_deadline(procs, pki, tls):
    """drainSeconds = 1 and a reply 5 s away: at the deadline the connection is closed (at a
    message boundary: the request is in, no byte of the reply is out), the process exits 0,
    and the log says that the drain window ended with that connection still open."""
    standin, sidecar = start(procs, pki, drain=1)
    with streams.Stream(sidecar.port, ca=pki["ca"] if tls else None) as stream:
        if tls:
            stream.handshake()
        stream.send(sleep_request(5000))
        wait_for(lambda: "sleep 5000 ms" in standin.stderr_path.read_text(),
                 "the stand-in got the sleep")
        sidecar.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert_end_of_stream(stream, tls)
        closed = time.monotonic() - signalled
        status, _ = wait_exit(sidecar, timeout=15)
        exited = time.monotonic() - signalled
    assert status == 0, sidecar.describe()
    assert 0.9 <= closed < 2.5, f"closed {closed:.1f}s after SIGTERM with drainSeconds 1"
    assert exited < 3.5, f"exited {exited:.1f}s after SIGTERM with drainSeconds 1"
    window = [line for line in sidecar.log_lines() if "drain window over" in line["msg"]]
    assert len(window) == 1, sidecar.describe()
    assert window[0]["attr"]["connections"] == 1 and window[0]["attr"]["drainSeconds"] == 1
    rejected = [line for line in sidecar.log_lines()
                if line["msg"] == "connection rejected" and line["attr"]["reason"] == "shutdown"]
    assert len(rejected) == 1, sidecar.describe()
    # It closed at a boundary: nothing had to be cut after the grace.
    assert "cutting the remaining connections" not in sidecar.stderr_text()


def test_fire_and_forget_write_leaves_nothing_in_flight(procs, pki):
    """A write with moreToCome expects no reply: once it is passed on, nothing is in flight,
    so its connection closes at once instead of holding the exit for drainSeconds (30)."""
    standin, sidecar = start(procs, pki)
    with streams.Stream(sidecar.port) as stream:
        stream.send(harness.op_msg({"ping": 1, "$db": "admin"}))
        assert read_reply(stream)["ok"] == 1
        body = b"\x00" + bson.encode({"insert": "unacked", "$db": "e2e",
                                      "documents": [{"marker": "fire-and-forget"}],
                                      "writeConcern": {"w": 0}})
        more_to_come = 1 << 1
        stream.send(struct.pack("<iiiiI", 16 + 4 + len(body), 9, 0, harness.OP_MSG,
                                more_to_come) + body)
        wait_for(lambda: "OP_MSG insert" in standin.stderr_path.read_text(),
                 "the stand-in got the insert")
        sidecar.proc.send_signal(signal.SIGTERM)
        status, seconds = wait_exit(sidecar, timeout=30)
        assert stream.recv() == b""
    assert status == 0, sidecar.describe()
    assert seconds < 2.5, f"exit took {seconds:.1f}s after a fire-and-forget write"
    direct = pymongo.MongoClient(standin.host, standin.port, serverSelectionTimeoutMS=5000)
    try:
        assert direct.e2e.unacked.find_one({"marker": "fire-and-forget"}) is not None
    finally:
        direct.close()


def test_egress_follows_the_same_rule(procs, pki):
    """Connections the local mongod opens to a peer (here over TLS, preferTLS) drain alike:
    the idle one closes at once, the one waiting for a slow reply gets it, then the close."""
    peer_standin = procs.standin("--verbose", name="peer-standin")
    peer = procs.sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["server"],
                         upstream=peer_standin.address, name="peer")
    egress_port = harness.free_port()
    local_standin = procs.standin(name="local-standin")
    local = procs.sidecar(upstream=local_standin.address, name="local", config=harness.egress_config(
        pki, egress_port, f"127.0.0.1:{peer.port}", after="[limits]\ndrainSeconds = 10\n"))
    # The local mongod's side of two member connections: raw plaintext to the egress listener.
    with streams.Stream(egress_port) as busy, streams.Stream(egress_port) as idle:
        for stream in (busy, idle):
            stream.send(harness.op_msg({"ping": 1, "$db": "admin"}))
            assert read_reply(stream)["ok"] == 1
        busy.send(sleep_request(2000, request_id=2))
        sent = time.monotonic()
        wait_for(lambda: "sleep 2000 ms" in peer_standin.stderr_path.read_text(),
                 "the peer's stand-in got the sleep")
        local.proc.send_signal(signal.SIGTERM)
        assert idle.recv() == b""
        assert time.monotonic() - sent < 1.5, "the idle egress connection was not closed at once"
        assert read_reply(busy)["ok"] == 1
        assert time.monotonic() - sent >= 1.9
        assert busy.recv() == b""
        status, _ = wait_exit(local, timeout=15)
    assert status == 0, local.describe()
    assert time.monotonic() - sent < 2 + 2.5
    # They went to the peer over TLS, and the peer saw them end cleanly, not fail.
    peer_log = peer.stderr_text()
    assert "TLS error" not in peer_log and "tls_error" not in peer_log, peer.describe()


def test_request_cut_mid_message_is_closed_after_the_boundary_grace(procs, pki):
    """A request is in flight from its first byte: a client that sent part of a message at
    SIGTERM is not idle. It never reaches the message boundary, so after drainSeconds (1)
    and the 2 s grace for reaching one, the connection is cut; exit 0, and the log says so."""
    _, sidecar = start(procs, pki, drain=1)
    with streams.Stream(sidecar.port) as stream:
        partial = harness.op_msg({"ping": 1, "$db": "admin"}, request_id=2)[:30]
        # One send: the sidecar reads the partial request with the ping, before it answers.
        stream.send(harness.op_msg({"ping": 1, "$db": "admin"}) + partial)
        assert read_reply(stream)["ok"] == 1
        sidecar.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert stream.recv() == b""
        closed = time.monotonic() - signalled
        status, _ = wait_exit(sidecar, timeout=15)
    assert status == 0, sidecar.describe()
    assert 2.8 <= closed < 5, f"closed {closed:.1f}s after SIGTERM (drainSeconds 1 + 2 s grace)"
    text = sidecar.stderr_text()
    assert "drain window over" in text and "cutting the remaining connections" in text, \
        sidecar.describe()


class _ExhaustUpstream:
    """A mongod stand-in for exhaust streams (the awaitable hello drivers keep open on their
    monitoring connections): an OP_MSG with exhaustAllowed is answered by a reply with
    moreToCome every `gap` seconds, each written in two halves `gap` seconds apart, until the
    connection goes. Other OP_MSGs get {ok: 1}."""

    EXHAUST_ALLOWED = 1 << 16
    MORE_TO_COME = 1 << 1

    def __init__(self, gap=0.5):
        self.gap = gap
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def reply(request_id, flags, document):
        body = b"\x00" + bson.encode(document)
        return struct.pack("<iiiiI", 16 + 4 + len(body), 100 + request_id, request_id,
                           harness.OP_MSG, flags) + body

    def _serve(self, conn):
        with conn:
            try:
                while True:
                    header = harness.read_exact(conn, 16)
                    length, request_id, _, opcode = struct.unpack("<iiii", header)
                    rest = harness.read_exact(conn, length - 16)
                    if opcode != harness.OP_MSG:
                        continue
                    flags = struct.unpack("<I", rest[:4])[0]
                    if not flags & self.EXHAUST_ALLOWED:
                        conn.sendall(self.reply(request_id, 0, {"ok": 1.0}))
                        continue
                    for n in range(1000):
                        message = self.reply(request_id, self.MORE_TO_COME,
                                             {"n": n, "pad": "x" * 4096, "ok": 1.0})
                        conn.sendall(message[:len(message) // 2])
                        time.sleep(self.gap)
                        conn.sendall(message[len(message) // 2:])
                        time.sleep(self.gap)
            except (ConnectionError, OSError):
                return

    def close(self):
        self.listener.close()


def test_exhaust_stream_closes_between_replies_never_inside_one(procs, pki):
    """An exhaust stream never ends by itself, so it must not hold the exit: at SIGTERM in
    the middle of a streamed reply, the rest of that reply arrives, then the close, before
    the next reply; the process exits without waiting for drainSeconds (30)."""
    upstream = _ExhaustUpstream()
    try:
        sidecar = procs.sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile",
                                pki["server"], upstream=upstream.address)
        with streams.Stream(sidecar.port) as stream:
            body = b"\x00" + bson.encode({"hello": 1, "maxAwaitTimeMS": 10000, "$db": "admin"})
            stream.send(struct.pack("<iiiiI", 16 + 4 + len(body), 5, 0, harness.OP_MSG,
                                    _ExhaustUpstream.EXHAUST_ALLOWED) + body)
            first = read_reply(stream)
            assert first["n"] == 0
            # The header of the next reply: its first half is through, the second is 0.5 s
            # away. SIGTERM now falls inside a reply.
            header = stream.recv_exact(16)
            length = struct.unpack("<i", header[:4])[0]
            sidecar.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            rest = stream.recv_exact(length - 16)
            assert struct.unpack("<I", rest[:4])[0] & _ExhaustUpstream.MORE_TO_COME
            assert bson.decode(rest[5:])["n"] == 1, "the reply in progress was not delivered whole"
            assert stream.recv() == b"", "a reply after the one in progress was passed on"
            closed = time.monotonic() - signalled
            status, _ = wait_exit(sidecar, timeout=40)
        assert status == 0, sidecar.describe()
        assert closed < 1.5, f"closed {closed:.1f}s after SIGTERM"
        assert "drain window over" not in sidecar.stderr_text()
    finally:
        upstream.close()
