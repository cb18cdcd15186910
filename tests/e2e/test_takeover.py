"""Hot restart onto a new binary (`tls-sidecar --takeover`, SPEC §8, §10): under continuous
reads and writes from pymongo and the Node.js driver, plaintext and TLS, the binary is
replaced three times without a failed operation, a refused connection or a reply cut short;
the mode set at run time and the takeover count carry over. A takeover whose configuration
does not load, or by another user, leaves the running sidecar serving."""

import json
import os
import pathlib
import pwd
import shutil
import socket
import struct
import subprocess
import threading
import time

import bson
import pymongo
import pytest

import harness

TAKEOVERS = 3
CONFIG = """[limits]
drainSeconds = 5
"""


def metric(port, name):
    """The value of the series `name` (with its labels) on /metrics at 127.0.0.1:port."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return None


class PymongoLoad(threading.Thread):
    """Inserts a document and reads it back, over and over, until stopped; counts the
    operations and the failures the application saw (after pymongo's own retry)."""

    def __init__(self, port, tls, ca, label):
        super().__init__(daemon=True)
        options = dict(directConnection=True, serverSelectionTimeoutMS=10000,
                       appname=label, retryWrites=True, retryReads=True)
        if tls:
            options.update(tls=True, tlsCAFile=str(ca))
        self.client = pymongo.MongoClient("127.0.0.1", port, **options)
        self.label = label
        self.ops = 0
        self.failures = []
        self.stopping = threading.Event()

    def run(self):
        coll = self.client.e2e.load
        i = 0
        while not self.stopping.is_set():
            marker = f"{self.label}-{i}"
            i += 1
            try:
                coll.insert_one({"marker": marker})
                self.ops += 1
                found = coll.find_one({"marker": marker})
                self.ops += 1
                if found is None or found.get("marker") != marker:
                    self.failures.append(f"{marker} not found after insert")
            except pymongo.errors.PyMongoError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
        self.client.close()


class ConnectLoad(threading.Thread):
    """A new TCP connection for every hello, as a client without a pool: counts connections
    refused, replies cut short (some bytes, then the end), and connections closed before
    any byte of the reply (a connection the old process accepted in its last instant and,
    having no request yet, closed as idle: a driver retries that)."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.ok = 0
        self.refused = 0
        self.cut_short = []
        self.closed_before_reply = 0
        self.stopping = threading.Event()

    def hello_once(self, request_id):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(harness.op_msg({"hello": 1, "$db": "admin"}, request_id))
            data = b""
            try:
                while len(data) < 4 or len(data) < struct.unpack("<i", data[:4])[0]:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except ConnectionResetError:
                pass
            if not data:
                self.closed_before_reply += 1
            elif len(data) < 4 or len(data) < struct.unpack("<i", data[:4])[0]:
                self.cut_short.append(len(data))
            else:
                self.ok += 1

    def run(self):
        request_id = 1
        while not self.stopping.is_set():
            try:
                self.hello_once(request_id)
            except ConnectionRefusedError:
                self.refused += 1
            except OSError as exc:  # reset before a reply byte: as closed before reply
                if isinstance(exc, ConnectionResetError):
                    self.closed_before_reply += 1
                else:
                    raise
            request_id += 1
            time.sleep(0.005)


def start_node_load(uri, stop_file, label, workdir):
    harness._require_node_modules()
    out = open(pathlib.Path(workdir) / f"{label}.json", "w")
    proc = subprocess.Popen([harness.node_binary(), str(harness.NODE_DIR / "load.js"), uri,
                             str(stop_file), label], cwd=harness.NODE_DIR,
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    return proc, out


def new_sidecar(procs, old, standin, name, pki, metrics, extra=()):
    """A sidecar with the same configuration as `old` on the same port and control socket
    (so the same takeover socket); `extra` adds flags such as --takeover."""
    child = harness.Sidecar(procs.workdir, ["--tlsMode", "allowTLS", "--tlsCertificateKeyFile",
                                            pki["server"], "--threads", "2", *extra],
                            upstream=standin.address, config=CONFIG, name=name, metrics=metrics,
                            control_socket=procs.workdir / "sidecar.sock", port=old.port)
    procs.children.append(child)
    return child


def test_three_takeovers_under_load_lose_nothing(procs, pki, tmp_path):
    standin = procs.standin("--replSet", "rs0")
    metrics_port = harness.free_port()
    metrics = f"127.0.0.1:{metrics_port}"
    first = harness.Sidecar(procs.workdir, ["--tlsMode", "allowTLS", "--tlsCertificateKeyFile",
                                            pki["server"], "--threads", "2"],
                            upstream=standin.address, config=CONFIG, name="sidecar0",
                            metrics=metrics, control_socket=procs.workdir / "sidecar.sock")
    procs.children.append(first)
    first.wait_listening()
    control = procs.workdir / "sidecar.sock"
    # A mode set at run time is what a takeover must continue, not the flag's allowTLS.
    answer = harness.control_request(control, {"cmd": "setMode", "mode": "preferTLS"})
    assert answer["ok"], answer
    assert metric(metrics_port, 'tls_sidecar_restarts_total{kind="takeover"}') == 0

    loads = [PymongoLoad(first.port, False, pki["ca"], "pymongo-plaintext"),
             PymongoLoad(first.port, True, pki["ca"], "pymongo-tls")]
    connects = ConnectLoad(first.port)
    stop_file = tmp_path / "stop-load"
    base = f"mongodb://127.0.0.1:{first.port}/?directConnection=true"
    node = [start_node_load(base, stop_file, "node-plaintext", tmp_path),
            start_node_load(f"{base}&tls=true&tlsCAFile={pki['ca']}", stop_file, "node-tls",
                            tmp_path)]
    for load in loads + [connects]:
        load.start()
    try:
        harness.wait_until(lambda: all(load.ops > 20 for load in loads), timeout=30,
                           what="pymongo load running")
        current = first
        for n in range(1, TAKEOVERS + 1):
            before = [load.ops for load in loads]
            successor = new_sidecar(procs, current, standin, f"sidecar{n}", pki, metrics,
                                    extra=["--takeover"])
            successor.wait_for_log("takeover complete", timeout=30)
            # The old one drains and exits 0; the new one answers for the same socket paths.
            assert current.proc.wait(timeout=20) == 0, current.describe()
            assert successor.alive(), successor.describe()
            status = harness.control_request(control, {"cmd": "status"})
            assert status["mode"] == "preferTLS", status
            harness.wait_until(
                lambda: metric(metrics_port, 'tls_sidecar_restarts_total{kind="takeover"}') == n,
                timeout=10, what=f"restarts_total {n}")
            harness.wait_until(lambda: all(load.ops > b + 20 for load, b in zip(loads, before)),
                               timeout=30, what=f"load served after takeover {n}")
            current = successor
        time.sleep(1)
    finally:
        stop_file.touch()
        for load in loads + [connects]:
            load.stopping.set()
        for load in loads + [connects]:
            load.join(timeout=30)
        results = []
        for proc, out in node:
            proc.wait(timeout=60)
            out.close()
            results.append(json.loads(pathlib.Path(out.name).read_text().strip().splitlines()[-1]))
    print("pymongo:", [(load.label, load.ops, load.failures[:3]) for load in loads])
    print("node:", results)
    print("connects: ok", connects.ok, "refused", connects.refused, "cut short",
          connects.cut_short, "closed before reply", connects.closed_before_reply)
    for load in loads:
        assert load.ops > 0 and load.failures == [], (load.label, load.failures[:5])
    for result in results:
        assert result["ops"] > 0 and result["failures"] == 0, result
    assert connects.ok > 0
    assert connects.refused == 0
    assert connects.cut_short == []
    # The mode's origin carries over too: still the flag's, so `persist` still says so.
    status = harness.control_request(control, {"cmd": "status"})
    assert status["mode"] == "preferTLS"


def test_takeover_with_a_bad_configuration_leaves_the_old_one_serving(procs, pki):
    standin = procs.standin()
    old = procs.sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["server"],
                        upstream=standin.address)
    result = procs.run_sidecar("--bind_ip", "127.0.0.1", "--port", old.port, "--upstream",
                               standin.address, "--control-socket",
                               procs.workdir / "sidecar.sock", "--metrics", "",
                               "--tlsMode", "allowTLS", "--tlsCertificateKeyFile",
                               procs.workdir / "missing.pem", "--takeover")
    assert result.returncode == 2, result
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tls-sidecar: error: ") and "missing.pem" in last, result.stderr
    # Nothing was asked of the running sidecar, and it serves on.
    assert not [line for line in old.log_lines() if "takeover" in line["msg"]]
    assert old.alive()
    client = pymongo.MongoClient("127.0.0.1", old.port, serverSelectionTimeoutMS=5000)
    try:
        client.e2e.t.insert_one({"after": "failed takeover"})
        assert client.e2e.t.find_one({"after": "failed takeover"}) is not None
    finally:
        client.close()


def test_takeover_with_different_addresses_is_refused_before_the_old_one_stops(procs, pki):
    standin = procs.standin()
    old = procs.sidecar(upstream=standin.address)
    result = procs.run_sidecar("--bind_ip", "127.0.0.1,::1", "--port", old.port, "--upstream",
                               standin.address, "--control-socket",
                               procs.workdir / "sidecar.sock", "--metrics", "", "--takeover")
    assert result.returncode == 2, result
    assert "same listening addresses" in result.stderr, result.stderr
    assert old.alive()
    assert harness.control_request(procs.workdir / "sidecar.sock", {"cmd": "status"})["ok"]
    assert harness.is_listening(old.port)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_takeover_by_another_user_is_refused(procs, tmp_path):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    nobody = pwd.getpwnam("nobody")
    # A directory and socket everyone may reach, so that the refusal is the sidecar's own
    # (SO_PEERCRED), not the file system's.
    shared = pathlib.Path(tempfile_dir(tmp_path))
    standin = procs.standin()
    old = procs.sidecar(upstream=standin.address, control_socket=shared / "s.sock")
    takeover_socket = shared / "s.takeover.sock"
    harness.wait_until(takeover_socket.exists, what="takeover socket")
    os.chmod(takeover_socket, 0o777)
    result = subprocess.run(["setpriv", "--reuid", str(nobody.pw_uid), "--regid",
                             str(nobody.pw_gid), "--clear-groups", str(harness.sidecar_binary()),
                             "--bind_ip", "127.0.0.1", "--port", str(old.port), "--upstream",
                             standin.address, "--metrics", "", "--control-socket",
                             str(shared / "other.sock"), "--takeover", str(takeover_socket)],
                            cwd=shared, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result
    assert "may not take over" in result.stderr, result.stderr
    assert old.alive()
    old.wait_for_log("takeover refused")
    assert harness.control_request(shared / "s.sock", {"cmd": "status"})["ok"]


def tempfile_dir(tmp_path):
    """A directory outside pytest's private tree, open to every user (removed at exit by the
    test's own tmp_path cleanup of the link below)."""
    import tempfile
    path = tempfile.mkdtemp(prefix="takeover-")
    os.chmod(path, 0o777)
    (tmp_path / "shared").symlink_to(path)
    return path
