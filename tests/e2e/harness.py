"""harness: start and stop the built tls-sidecar, the stand-in mongod and real clients.

Every end-to-end test drives the binaries that ctest built (found through the
SIDECAR_BINARY_DIR environment variable that tests/e2e/CMakeLists.txt sets) with the
clients users run: pymongo, the Node.js driver, mongosh and raw sockets. Children are
registered with a ProcessGroup and killed when the test ends, whatever its outcome.

Nothing here retries a failed assertion: helpers wait only for things that are
asynchronous by nature (a port starting to listen, a log line being written).

Every child is checked for sanitizer reports (a `tests/run.sh --sanitize` build) when it is
stopped, whoever stops it: a fixture cannot forget. conftest.py also stops and checks, at the
end of the session, any child that nobody stopped.
"""

import json
import os
import pathlib
import shutil
import signal
import socket
import struct
import subprocess
import time

import bson

SOURCE_DIR = pathlib.Path(__file__).resolve().parents[2]
E2E_DIR = SOURCE_DIR / "tests" / "e2e"
NODE_DIR = E2E_DIR / "node"


def binary_dir():
    value = os.environ.get("SIDECAR_BINARY_DIR")
    if not value:
        raise RuntimeError("SIDECAR_BINARY_DIR is not set: run the end-to-end tests through ctest")
    return pathlib.Path(value)


def _find_binary(name, candidates):
    for candidate in candidates:
        path = binary_dir() / candidate
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise RuntimeError(f"{name} is not built (looked in {binary_dir()} for {candidates})")


def sidecar_binary():
    return _find_binary("tls-sidecar", ["tls-sidecar", "proxy/tls-sidecar"])


def standin_binary():
    return _find_binary("mongod_standin", ["tests/support/mongod_standin", "mongod_standin"])


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_listening(port):
    """Whether some socket LISTENs on `port`, read from /proc so that no probe connection
    shows up in the sidecar's logs or counters."""
    hex_port = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[1].endswith(hex_port) and fields[3] == "0A":
                        return True
        except FileNotFoundError:
            continue
    return False


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


def sanitizer_report(name, text):
    """The first AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer report in
    `text` (what process `name` wrote), with some context; None when there is none."""
    for marker in SANITIZER_MARKERS:
        at = text.find(marker)
        if at >= 0:
            return f"{name}: {text[max(0, at - 200):at + 3000]}"
    return None


def wait_until(predicate, timeout=10, what="condition", interval=0.05):
    """Polls `predicate` (asynchronous by nature: scrapes, probes, counts) until it returns a
    truthy value, and returns that value; fails naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


def control_request(path, request, timeout=30):
    """Sends `request` (a dict) as one JSON line on the control socket at `path` and returns
    the answer line, parsed. Works from any network namespace: the socket is a path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall((json.dumps(request) + "\n").encode())
        data = bytearray()
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def assert_no_sanitizer_report(name, text):
    """Fails when `text`, the output of process `name`, holds a sanitizer report: a memory
    error or leak fails the test that provoked it, even when the client side saw nothing."""
    report = sanitizer_report(name, text)
    assert report is None, f"sanitizer report from {name}:\n{report}"


def run_checked(argv, **kwargs):
    """subprocess.run(argv, capture_output=True, text=True, **kwargs) for a run of one of our
    binaries to completion (`tls-sidecar ctl ...`): fails on a sanitizer report in its
    output, like a Child at stop."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    result = subprocess.run(argv, **kwargs)
    assert_no_sanitizer_report(" ".join(map(str, argv[:3])), result.stdout + result.stderr)
    return result


# Every Child ever started in this process, so that the session's end can stop and check
# those that no fixture stopped.
STARTED = []


class Child:
    """A started binary: its Popen, where its stderr goes, and how it is stopped. stop()
    checks the child's stderr for sanitizer reports and fails when it holds one."""

    def __init__(self, name, args, cwd, stdout=subprocess.DEVNULL, env=None):
        self.name = name
        self.args = [str(a) for a in args]
        self.stderr_path = pathlib.Path(cwd) / f"{name}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=stdout,
                                     stderr=self._stderr, cwd=cwd, env=env,
                                     start_new_session=True)
        self.checked = False
        STARTED.append(self)

    def stderr_text(self):
        # The child writes to the file itself; our handle only passed it on.
        return self.stderr_path.read_text(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Sends `sig`, waits up to `timeout` seconds, then kills. Returns the exit status;
        raises AssertionError (once per child) when its stderr holds a sanitizer report."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()
        if not self.checked:
            self.checked = True
            assert_no_sanitizer_report(self.name, self.stderr_text())
        return self.proc.returncode

    def describe(self):
        tail = "\n".join(self.stderr_text().splitlines()[-40:])
        status = "running" if self.alive() else f"exited with {self.proc.returncode}"
        return f"--- {self.name} ({status}): {' '.join(self.args)}\n{tail}"


class Standin(Child):
    """The stand-in mongod (tests/support/mongod_standin) on an ephemeral port."""

    def __init__(self, workdir, extra_args=(), name="standin"):
        super().__init__(name, [standin_binary(), "--port", "0", *extra_args], workdir,
                         stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            raise RuntimeError(f"stand-in did not start: {line!r}\n{self.describe()}")
        host, port = line.split()[-1].rsplit(":", 1)
        self.host = host
        self.port = int(port)
        self.address = f"{host}:{port}"


# The spellings of allowConnectionsWithoutCertificates, in a file or on the command line.
_ALLOW_WITHOUT_CERTIFICATES = ("allowConnectionsWithoutCertificates",
                               "AllowConnectionsWithoutCertificates",
                               "sslWeakCertificateValidation")


class Sidecar(Child):
    """tls-sidecar started with `args` plus the harness's defaults: 127.0.0.1 on a free port,
    metrics off (or on `metrics`, e.g. "127.0.0.1:9442"), a private control socket (or, with
    control_socket="default", the sidecar's own default, found through `env`). The
    sidecar's JSON log is its stderr.

    Like mongod, a sidecar with a CA file refuses TLS clients without a certificate. The
    tests' TLS clients present none unless a test is about client certificates, so the
    harness passes --tlsAllowConnectionsWithoutCertificates unless the test sets the option
    itself (in `args` or `config`) or asks for the default with
    allow_without_certificates=False."""

    def __init__(self, workdir, args=(), upstream=None, config=None, name="sidecar", metrics="",
                 control_socket=None, env=None, allow_without_certificates=True, port=None,
                 bind_ip="127.0.0.1"):
        workdir = pathlib.Path(workdir)
        self.port = port or free_port()
        argv = [sidecar_binary()]
        if config is not None:
            config_path = workdir / f"{name}.toml"
            config_path.write_text(config)
            argv += ["--config", config_path]
        argv += ["--bind_ip", bind_ip, "--port", str(self.port), "--metrics", metrics]
        if control_socket != "default":
            argv += ["--control-socket", control_socket or workdir / f"{name}.sock"]
        if upstream is not None:
            argv += ["--upstream", upstream]
        given = " ".join(map(str, args)) + (config or "")
        if allow_without_certificates and not any(k in given
                                                  for k in _ALLOW_WITHOUT_CERTIFICATES):
            argv += ["--tlsAllowConnectionsWithoutCertificates"]
        argv += list(args)
        super().__init__(name, argv, workdir, env=env)

    def wait_listening(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"tls-sidecar exited before listening\n{self.describe()}")
            if is_listening(self.port):
                return
            time.sleep(0.02)
        raise RuntimeError(f"tls-sidecar is not listening after {timeout}s\n{self.describe()}")

    def log_lines(self):
        """Every stderr line, parsed: a list of dicts (raises on a line that is not JSON)."""
        return [json.loads(line) for line in self.stderr_text().splitlines() if line.strip()]

    def wait_for_log(self, needle, timeout=10):
        """Waits until a stderr line contains `needle`; returns that line."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.stderr_text().splitlines():
                if needle in line:
                    return line
            if time.monotonic() >= deadline:
                raise AssertionError(f"no log line contains {needle!r}\n{self.describe()}")
            time.sleep(0.05)


class ProcessGroup:
    """Owns every child a test starts and stops them all at the end, in reverse order."""

    def __init__(self, workdir):
        self.workdir = pathlib.Path(workdir)
        self.children = []

    def standin(self, *extra_args, name="standin"):
        child = Standin(self.workdir, extra_args, name=name)
        self.children.append(child)
        return child

    def sidecar(self, *args, upstream=None, config=None, name="sidecar", wait=True, metrics="",
                control_socket=None, env=None, allow_without_certificates=True):
        child = Sidecar(self.workdir, args, upstream=upstream, config=config, name=name,
                        metrics=metrics, control_socket=control_socket, env=env,
                        allow_without_certificates=allow_without_certificates)
        self.children.append(child)
        if wait:
            child.wait_listening()
        return child

    def run_sidecar(self, *args, timeout=20):
        """Runs tls-sidecar to completion (for --version, bad configs, certs init); fails on a
        sanitizer report in its output."""
        result = subprocess.run([str(sidecar_binary()), *map(str, args)], cwd=self.workdir,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=timeout)
        assert_no_sanitizer_report("tls-sidecar " + " ".join(map(str, args)),
                                   result.stdout + result.stderr)
        return result

    def describe(self):
        return "\n".join(child.describe() for child in self.children)

    def stop_all(self):
        """Stops every child, newest first; then fails with every sanitizer report found."""
        failures = []
        for child in reversed(self.children):
            try:
                child.stop()
            except AssertionError as error:
                failures.append(str(error))
        assert not failures, "\n\n".join(failures)

    def sanitizer_reports(self):
        """The AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer reports that
        the children wrote (in a `tests/run.sh --sanitize` build); empty otherwise."""
        reports = (sanitizer_report(child.name, child.stderr_text()) for child in self.children)
        return [report for report in reports if report]


def make_pki(directory):
    """A CA and certificates for localhost and 127.0.0.1, made by `tls-sidecar certs init`.
    Returns a dict of the paths: ca, server, cluster, client."""
    directory = pathlib.Path(directory)
    result = subprocess.run([str(sidecar_binary()), "certs", "init", str(directory), "--hosts",
                             "localhost,127.0.0.1"], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    assert_no_sanitizer_report("tls-sidecar certs init", result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"tls-sidecar certs init failed ({result.returncode}):\n"
                           f"{result.stdout}{result.stderr}")
    paths = {role: directory / f"{role}.pem" for role in ("ca", "server", "cluster", "client")}
    for role, path in paths.items():
        if not path.is_file():
            raise RuntimeError(f"tls-sidecar certs init did not write {path}")
    return paths


# --- MongoDB wire messages built by hand, for the byte-level tests -----------------------

OP_REPLY = 1
OP_QUERY = 2004
OP_MSG = 2013


def egress_config(pki, egress_port, target, mode="preferTLS", ca=None, tls_extra="", after=""):
    """The configuration of a node's sidecar with one egress peer: `target` ("host:port")
    reached through a listener on 127.0.0.1:`egress_port`, with the node's own certificates.
    `tls_extra` lines go into [net.tls], `after` (more tables) at the end."""
    return f"""
[net.tls]
mode = "{mode}"
certificateKeyFile = "{pki['server']}"
CAFile = "{ca or pki['ca']}"
clusterFile = "{pki['cluster']}"
{tls_extra}
[[egress.peers]]
listen = "127.0.0.1:{egress_port}"
target = "{target}"
{after}"""


def op_msg(document, request_id=1):
    """An OP_MSG with one body section (kind 0) holding `document`."""
    body = b"\x00" + bson.encode(document)
    header = struct.pack("<iiii", 16 + 4 + len(body), request_id, 0, OP_MSG)
    return header + struct.pack("<I", 0) + body


def op_query(collection, document, request_id=1):
    """A legacy OP_QUERY (as drivers send their first isMaster) on `collection`."""
    payload = (struct.pack("<i", 0) + collection.encode() + b"\x00" +
               struct.pack("<ii", 0, -1) + bson.encode(document))
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, OP_QUERY) + payload


def read_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def read_reply(sock):
    """Reads one reply message; returns (opcode, first document as a dict)."""
    header = read_exact(sock, 16)
    length, _, _, opcode = struct.unpack("<iiii", header)
    payload = read_exact(sock, length - 16)
    if opcode == OP_MSG:
        assert payload[4] == 0, "first section of an OP_MSG reply is not a body"
        return opcode, bson.decode(payload[5:])
    if opcode == OP_REPLY:
        return opcode, bson.decode(payload[20:])
    raise AssertionError(f"unexpected reply opcode {opcode}")


# --- Node.js clients ---------------------------------------------------------------------

def node_binary():
    path = shutil.which("node")
    if path is None:
        raise RuntimeError("node is not installed (tests/run.sh installs it)")
    return path


def _require_node_modules():
    if not (NODE_DIR / "node_modules" / "mongodb").is_dir():
        raise RuntimeError(f"{NODE_DIR}/node_modules is missing: run `npm ci` there "
                           "(tests/run.sh does)")


def node_crud(uri, marker, timeout=60, appname="e2e-node"):
    """Runs tests/e2e/node/crud.js: insert {marker} and find it back with the Node.js driver
    (its hello names `appname`). Returns the CompletedProcess; stdout holds a JSON result,
    stderr the error on failure."""
    _require_node_modules()
    return subprocess.run([node_binary(), str(NODE_DIR / "crud.js"), uri, marker, appname],
                          cwd=NODE_DIR, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def mongosh_crud(uri, marker, home, timeout=90):
    """Runs mongosh --eval: insert {marker} and find it back. `home` isolates mongosh's
    configuration and history from the user's."""
    _require_node_modules()
    script = (
        "const c = db.getSiblingDB('e2e').getCollection('mongosh');"
        f"c.insertOne({{marker: {json.dumps(marker)}}});"
        f"const d = c.findOne({{marker: {json.dumps(marker)}}});"
        f"print(JSON.stringify({{found: d !== null && d.marker === {json.dumps(marker)}}}));"
    )
    env = dict(os.environ, HOME=str(home), DO_NOT_TRACK="1", MONGOSH_NO_UPDATE_CHECK="1")
    return subprocess.run([str(NODE_DIR / "node_modules" / ".bin" / "mongosh"), uri, "--quiet",
                           "--norc", "--eval", script],
                          cwd=NODE_DIR, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, env=env)
