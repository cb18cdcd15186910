"""Descriptor exhaustion (issue 12 item 1, SPEC §5 [limits], §10): with two loops under an
open file limit of 64 and 400 clients connecting, the sidecar neither spins in accept() nor
stops answering its operator. It lowers its connection limits to what the descriptors allow
(saying so), `ctl status` and /ready answer while the clients are held, a normal client is
served once they leave, five times over, and SIGTERM still ends it cleanly."""

import os
import pathlib
import resource
import select
import socket
import subprocess
import time
import urllib.error
import urllib.request

import clients
import harness
import probes

OPEN_FILE_LIMIT = 64
HELD_CLIENTS = 400
CYCLES = 5


def _cpu_seconds(pid):
    # Fields 14 and 15 of /proc/PID/stat (utime, stime), counted after the command's ")".
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ctl_status(binary, socket_path):
    return subprocess.run([str(binary), "ctl", "--socket", str(socket_path), "--json", "status"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)


def _ready_answers(metrics_port):
    """The HTTP status of /ready (200 or 503 both count as an answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/ready", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code


def _connect_all(port, count, timeout=10):
    """Opens `count` connections and waits until the kernel has completed every one (the
    sidecar accepting them or not)."""
    held = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        held.append(sock)
    poller = select.poll()
    for sock in held:
        poller.register(sock, select.POLLOUT)
    waiting = {sock.fileno() for sock in held}
    deadline = time.monotonic() + timeout
    while waiting:
        assert time.monotonic() < deadline, f"{len(waiting)} connections still connecting"
        for fd, _ in poller.poll(100):
            waiting.discard(fd)
            poller.unregister(fd)
    return held


def _served_within(port, seconds, marker):
    deadline = time.monotonic() + seconds
    while True:
        outcome = clients.crud("pymongo", port, False, None, marker, None)
        if outcome.ok:
            return time.monotonic() - (deadline - seconds)
        assert time.monotonic() < deadline, f"no client served after {seconds}s: {outcome.text}"
        time.sleep(0.1)


def test_running_out_of_descriptors_pauses_accepting_and_recovers(procs, monkeypatch):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < HELD_CLIENTS + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    real_binary = harness.sidecar_binary()
    wrapper = procs.workdir / "limited-sidecar"
    # prlimit execs the sidecar, so the child's pid is the sidecar's own.
    wrapper.write_text(f'#!/bin/sh\nexec prlimit --nofile={OPEN_FILE_LIMIT}:{OPEN_FILE_LIMIT} '
                       f'-- "{real_binary}" "$@"\n')
    wrapper.chmod(0o755)

    standin = procs.standin()
    metrics_port = harness.free_port()
    monkeypatch.setattr(harness, "sidecar_binary", lambda: wrapper)
    sidecar = procs.sidecar("--threads", "2", upstream=standin.address,
                            metrics=f"127.0.0.1:{metrics_port}")
    monkeypatch.setattr(harness, "sidecar_binary", lambda: real_binary)
    socket_path = sidecar.stderr_path.parent / f"{sidecar.name}.sock"
    pid = sidecar.proc.pid
    assert f"Max open files            {OPEN_FILE_LIMIT}" in \
        pathlib.Path(f"/proc/{pid}/limits").read_text()
    sidecar.wait_for_log("connection limits lowered to fit the open file limit")

    figures = []
    for cycle in range(CYCLES):
        held = _connect_all(sidecar.port, HELD_CLIENTS)
        try:
            before = _cpu_seconds(pid)
            started = time.monotonic()
            time.sleep(2)
            cpu = _cpu_seconds(pid) - before
            wall = time.monotonic() - started
            assert cpu < 0.5, f"cycle {cycle}: {cpu:.2f} CPU seconds in {wall:.1f}s: spinning"
            status = _ctl_status(real_binary, socket_path)
            assert status.returncode == 0, f"cycle {cycle}: ctl status: {status.stderr}"
            assert '"mode"' in status.stdout
            assert _ready_answers(metrics_port) in (200, 503)
        finally:
            for sock in held:
                sock.close()
        recovery = _served_within(sidecar.port, 10, f"descriptors-{cycle}")
        figures.append((cpu, recovery))
    probes.record("descriptors: cycles (CPU seconds over 2s while exhausted, seconds to "
                  f"serve a client after): {figures}")

    started = time.monotonic()
    assert sidecar.stop(timeout=10) == 0
    assert time.monotonic() - started < 10
