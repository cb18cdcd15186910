"""Several loops while the shared state changes under load (SPEC §6, §10): with four event
loops carrying TLS and plaintext clients without pause, certificate reloads (control socket
and SIGHUP), mode changes back and forth, client listings and scrapes lose no request; a
plaintext drain closes only plaintext connections; SIGTERM with requests in flight on every
loop exits 0. In the ThreadSanitizer build (`tests/run.sh --tsan`) these are the tests that
make the loops, the control loop and the metrics threads meet on shared state."""

import signal
import socket
import ssl
import threading
import time
import urllib.request

import harness
import probes
from tlsclient import client_context

LOOPS = 4
CLIENTS_PER_TRANSPORT = 3


class Load:
    """Clients that connect, send a few hellos and close, again and again, until stopped;
    `tls` picks the transport. Failures are kept with what failed."""

    def __init__(self, port, ca_file, tls, requests_per_connection=5):
        self.port = port
        self.ctx = client_context(ca_file) if tls else None
        self.requests_per_connection = requests_per_connection
        self.round_trips = 0
        self.failures = []
        self.closed_by_sidecar = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "a load thread did not stop"

    def _connect(self):
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        if self.ctx is None:
            return raw
        return self.ctx.wrap_socket(raw, server_hostname="localhost")

    def _run(self):
        request_id = 0
        while not self._stop.is_set():
            try:
                with self._connect() as sock:
                    for _ in range(self.requests_per_connection):
                        request_id += 1
                        sock.sendall(harness.op_msg({"hello": 1, "$db": "admin"}, request_id))
                        _, reply = harness.read_reply(sock)
                        if reply.get("ok") != 1:
                            self.failures.append(f"reply {reply}")
                        self.round_trips += 1
            except (OSError, ssl.SSLError, ConnectionError, EOFError) as error:
                self.failures.append(f"{type(error).__name__}: {error}")


def _control(sidecar, request):
    return harness.control_request(sidecar.stderr_path.parent / f"{sidecar.name}.sock", request)


def _scrape(metrics):
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as response:
        return response.read().decode()


def _start(procs, pki, *extra):
    standin = procs.standin()
    metrics = f"127.0.0.1:{harness.free_port()}"
    sidecar = procs.sidecar("--threads", str(LOOPS), "--tlsMode", "allowTLS",
                            "--tlsCertificateKeyFile", pki["server"], "--tlsCAFile", pki["ca"],
                            *extra, upstream=standin.address, metrics=metrics)
    return sidecar, metrics


def _loads(sidecar, pki):
    return [Load(sidecar.port, pki["ca"], tls).start()
            for tls in (True, False) for _ in range(CLIENTS_PER_TRANSPORT)]


def test_reloads_and_mode_changes_under_load_lose_no_request(procs, pki):
    sidecar, metrics = _start(procs, pki)
    loads = _loads(sidecar, pki)
    try:
        harness.wait_until(lambda: all(load.round_trips > 20 for load in loads), timeout=30,
                           what="every client under way")
        for cycle in range(6):
            answer = _control(sidecar, {"cmd": "reload"})
            assert answer["ok"] is True, answer
            sidecar.proc.send_signal(signal.SIGHUP)
            # allowTLS -> preferTLS is one step up; back down needs force. Both serve TLS and
            # plaintext clients, so no client may see a failure.
            answer = _control(sidecar, {"cmd": "setMode", "mode": "preferTLS"})
            assert answer["ok"] is True, answer
            assert _control(sidecar, {"cmd": "clients"})["ok"] is True
            assert "tls_sidecar_connections_accepted_total" in _scrape(metrics)
            answer = _control(sidecar, {"cmd": "setMode", "mode": "allowTLS", "force": True})
            assert answer["ok"] is True, answer
            assert _control(sidecar, {"cmd": "status"})["ok"] is True
            before = sum(load.round_trips for load in loads)
            harness.wait_until(lambda: sum(load.round_trips for load in loads) > before + 50,
                               timeout=30, what=f"requests served after cycle {cycle}")
    finally:
        for load in loads:
            load.stop()
    failures = [failure for load in loads for failure in load.failures]
    served = sum(load.round_trips for load in loads)
    probes.record(f"loops: {served} round trips over {LOOPS} loops, 6 cycles of reload + SIGHUP + mode changes")
    assert failures == [], failures[:5]
    reloaded = [line for line in sidecar.log_lines() if line.get("msg") == "certificates reloaded"]
    assert len(reloaded) >= 6, reloaded
    assert sidecar.stop(timeout=20) == 0


def test_plaintext_drain_and_sigterm_under_load(procs, pki):
    sidecar, _ = _start(procs, pki)
    # Long-lived plaintext connections, one per loop at least, for the drain to find.
    held = []
    for request_id in range(2 * LOOPS):
        sock = socket.create_connection(("127.0.0.1", sidecar.port), timeout=10)
        sock.sendall(harness.op_msg({"hello": 1, "$db": "admin"}, request_id + 1))
        harness.read_reply(sock)
        held.append(sock)
    tls_loads = [Load(sidecar.port, pki["ca"], True).start() for _ in range(CLIENTS_PER_TRANSPORT)]
    try:
        harness.wait_until(lambda: all(load.round_trips > 20 for load in tls_loads), timeout=30,
                           what="TLS clients under way")
        answer = _control(sidecar, {"cmd": "drainPlaintext", "overSeconds": 1})
        assert answer["ok"] is True and answer["closing"] >= len(held), answer
        for sock in held:
            sock.settimeout(10)
            assert sock.recv(1) == b"", "a drained plaintext connection stayed open"
        answer = _control(sidecar, {"cmd": "setMode", "mode": "preferTLS"})
        assert answer["ok"] is True, answer
        answer = _control(sidecar, {"cmd": "setMode", "mode": "requireTLS"})
        assert answer["ok"] is True, answer
        assert all(load.failures == [] for load in tls_loads), [l.failures[:3] for l in tls_loads]
        # SIGTERM with TLS requests in flight on every loop: each connection closes between
        # requests, and the process exits 0 well within drainSeconds.
        started = time.monotonic()
        assert sidecar.stop(timeout=30) == 0
        probes.record(f"loops: SIGTERM under load, stopped in {time.monotonic() - started:.2f}s")
    finally:
        for load in tls_loads:
            load.stop()
        for sock in held:
            sock.close()
