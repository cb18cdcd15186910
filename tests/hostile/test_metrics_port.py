"""Metrics port slowloris (issue 12 item 2, SPEC §10): /ready and /metrics answer within a
second while 64 idle or dribbling connections hold the metrics port, and paths are matched
exactly, so /METRICS, /ready/../metrics and /metrics%00.txt are 404.

A readiness probe that cannot get an answer takes the pod out of service: with the embedded
server's few worker threads each held for its request timeout, four connections that send
nothing were enough to do that."""

import socket
import threading
import time

import pymongo

import harness

HELD = 64           # connections the attacker keeps open on the metrics port
ATTACK_SECONDS = 12  # long enough for every held connection to outlive the server's timeout
PROBE_LIMIT = 1.0    # seconds a probe may take (SPEC §10)


def http_request(port, raw, timeout=5.0):
    """Sends `raw` (bytes) to 127.0.0.1:port; returns (status, body, seconds)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    elapsed = time.monotonic() - started
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    status = int(status_line.split()[1]) if len(status_line.split()) > 1 else 0
    return status, body.decode(errors="replace"), elapsed


def get(port, path, timeout=5.0):
    return http_request(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), timeout)


class Attacker:
    """Keeps HELD connections open on the port: half send nothing, half dribble a request
    line one byte every half second and never finish it. A connection the server closes is
    opened again at once, as a real attacker renews them."""

    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.opened = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._hold, args=(i % 2 == 1,), daemon=True)
                        for i in range(HELD)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)

    def _hold(self, dribble):
        request = b"GET /metrics HTTP/1.1\r\nHost: attacker\r\nX-Slow: " + b"a" * 4096
        while not self.stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            except OSError:
                self.stop.wait(0.1)
                continue
            with self.lock:
                self.opened += 1
            with sock:
                sock.settimeout(0.5)
                sent = 0
                while not self.stop.is_set():
                    try:
                        if dribble and sent < len(request):
                            sock.sendall(request[sent:sent + 1])
                            sent += 1
                        # A closed connection reads as EOF (or a reset): open another.
                        if sock.recv(4096) == b"":
                            break
                    except socket.timeout:
                        continue
                    except OSError:
                        break


def wait_until_held(attacker, count, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with attacker.lock:
            if attacker.opened >= count:
                return
        time.sleep(0.05)
    raise AssertionError(f"only {attacker.opened} of {count} attacking connections opened")


def test_ready_and_metrics_answer_within_a_second_while_64_connections_hold_the_port(procs):
    standin = procs.standin()
    metrics_port = harness.free_port()
    sidecar = procs.sidecar(upstream=standin.address, metrics=f"127.0.0.1:{metrics_port}")
    status, body, _ = get(metrics_port, "/metrics")
    assert status == 200 and "tls_sidecar_build_info" in body

    timings = []
    with Attacker(metrics_port) as attacker:
        wait_until_held(attacker, HELD)
        deadline = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < deadline:
            for path in ("/ready", "/metrics"):
                status, body, elapsed = get(metrics_port, path, timeout=PROBE_LIMIT * 5)
                timings.append((path, status, elapsed))
                assert status in (200, 503), (path, status, body)
                if path == "/metrics":
                    assert "tls_sidecar_ready" in body
                assert elapsed < PROBE_LIMIT, (
                    f"{path} took {elapsed:.2f}s while {HELD} connections held the port; "
                    f"all probes: {timings}")
            time.sleep(0.25)
        renewed = attacker.opened
    # Each held connection outlived the server's request timeout at least once, so the
    # probes above ran while the server was also closing and accepting attackers.
    assert renewed > HELD, f"no held connection was closed by the server ({renewed} opened)"
    assert len(timings) >= 20, timings
    print(f"{len(timings)} probes, slowest {max(t[2] for t in timings):.3f}s, "
          f"{renewed} attacking connections opened")

    # The sidecar still serves MongoDB clients afterwards.
    with pymongo.MongoClient(f"mongodb://127.0.0.1:{sidecar.port}/", serverSelectionTimeoutMS=10000,
                             directConnection=True) as client:
        assert client.admin.command("ping")["ok"] == 1
    assert sidecar.alive()


def test_paths_are_matched_exactly(procs):
    standin = procs.standin()
    metrics_port = harness.free_port()
    procs.sidecar(upstream=standin.address, metrics=f"127.0.0.1:{metrics_port}")
    status, body, _ = get(metrics_port, "/metrics")
    assert status == 200 and "tls_sidecar_build_info" in body, (status, body)
    status, _, _ = get(metrics_port, "/ready")
    assert status in (200, 503)
    for path in ("/METRICS", "/Metrics", "/READY", "/ready/../metrics", "/metrics/../metrics",
                 "/./metrics", "//metrics", "/metrics%00.txt", "/metrics%00", "/%6detrics",
                 "/metrics/", "/metrics.txt", "/readyz", "/ready/x", "/nothing"):
        status, body, _ = get(metrics_port, path)
        assert status == 404, f"{path} answered {status}: {body[:200]!r}"
        assert "tls_sidecar_" not in body, path
