"""Backpressure (SPEC §10): when one side cannot take data, the sidecar stops reading the
other side, so its memory stays bounded by its buffer caps whatever a peer does. Here the
clients write as fast as the kernel lets them and never read the echo coming back."""

import os
import socket
import threading
import time

import pytest

import harness
import streams

TRANSPORTS = ("plaintext", "tls")
CONNECTIONS = 8
PREFIX = harness.op_msg({"hello": 1, "$db": "admin"}, request_id=7)


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class _Writer:
    """A client that only writes: plaintext, or TLS records made in memory and sent raw."""

    def __init__(self, port, transport, ca):
        self.stream = streams.Stream(port, ca=ca if transport == "tls" else None)
        if transport == "tls":
            self.stream.handshake()
            self.stream.tls.write(PREFIX)
            self.stream._flush()
        else:
            self.stream.sock.sendall(PREFIX)
        self.stream.sock.setblocking(False)
        self.pending = b""
        self.sent = 0
        self.block = os.urandom(1 << 16)

    def push(self):
        """Sends what the socket takes now; returns the number of bytes it took."""
        if not self.pending:
            if self.stream.tls is not None:
                self.stream.tls.write(self.block)
                self.pending = self.stream.outgoing.read()
            else:
                self.pending = self.block
        try:
            n = self.stream.sock.send(self.pending)
        except BlockingIOError:
            return 0
        self.pending = self.pending[n:]
        self.sent += n
        return n

    def close(self):
        self.stream.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_memory_stays_bounded_when_clients_never_read(procs, pki, transport, monkeypatch):
    # In a sanitizer build, freed memory sits in AddressSanitizer's quarantine and would count
    # as growth; without a quarantine the allocator reuses it as the real one does.
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") +
                       ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0")
    echo = procs.standin("--echo")
    sidecar = procs.sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["server"],
                            "--tlsCAFile", pki["ca"], upstream=echo.address)
    before = _rss_kib(sidecar.proc.pid)
    writers = [_Writer(sidecar.port, transport, pki["ca"]) for _ in range(CONNECTIONS)]
    try:
        # Write until nothing moves for two seconds: every buffer on the way is full.
        last_progress = time.monotonic()
        deadline = time.monotonic() + 60
        while time.monotonic() - last_progress < 2.0:
            assert time.monotonic() < deadline, "the clients could write for a minute"
            moved = sum(w.push() for w in writers)
            if moved:
                last_progress = time.monotonic()
            else:
                time.sleep(0.01)
        sent = sum(w.sent for w in writers)
        growth_kib = _rss_kib(sidecar.proc.pid) - before
        print(f"{transport}: {sent >> 20} MiB written by {CONNECTIONS} clients before they "
              f"blocked; sidecar RSS grew by {growth_kib} KiB")
        # The sidecar holds at most 256 KiB per direction per connection plus partly filled
        # chunks; kernel socket buffers hold the rest. Without backpressure it would hold
        # everything the clients wrote.
        assert growth_kib < CONNECTIONS * 2 * 1024 + 8 * 1024
        assert sent < 2 << 30
        # A stuck client costs the others nothing: a new one is echoed at once.
        with streams.Stream(sidecar.port, timeout=5) as other:
            other.send(PREFIX)
            assert other.recv_exact(len(PREFIX)) == PREFIX
    finally:
        for w in writers:
            w.close()
    assert sidecar.alive()


def _echo_round_trip(port, payload, timeout=20):
    """Writes `payload` while reading the echo on one plaintext connection; returns what came
    back."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    received = bytearray()

    def read():
        while len(received) < len(payload):
            data = sock.recv(1 << 16)
            if not data:
                return
            received.extend(data)

    reader = threading.Thread(target=read)
    reader.start()
    sock.sendall(payload)
    reader.join(timeout)
    sock.close()
    return bytes(received)


def test_a_burst_that_fills_the_buffers_before_the_upstream_connects_flows_on(procs, pki):
    # Clients that write megabytes at once fill the sidecar's buffer before its connection
    # to mongod is up; the buffer then drains in one go and reading must resume. Several
    # rounds of concurrent connections, as a load generator makes them.
    echo = procs.standin("--echo")
    sidecar = procs.sidecar(upstream=echo.address)
    payload = PREFIX + os.urandom(4 << 20)
    for _ in range(3):
        results = [None] * 8
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, _echo_round_trip(sidecar.port, payload))) for i in range(len(results))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert all(r == payload for r in results), [len(r or b"") for r in results]
