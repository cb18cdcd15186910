"""The control socket and `tls-sidecar ctl` (SPEC §6) driving the real binary: every mode
transition rule in the JSON, ctl and setParameter forms, the requireTLS gate with a real
pymongo client, connections that outlive a mode change, the spread-out plaintext drain,
persist, the peer-uid check, bad input, and the socket file's life cycle."""

import difflib
import json
import os
import selectors
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import time

import pymongo
import pytest

import harness
from harness import wait_until

UPGRADE = ("disabled", "allowTLS", "preferTLS", "requireTLS")


# --- helpers ---------------------------------------------------------------------------

def control_path(sidecar):
    """The private control socket the harness gives each sidecar (beside its stderr)."""
    return sidecar.stderr_path.parent / f"{sidecar.name}.sock"


def talk(path, payload, timeout=10):
    """Sends `payload` (a dict, or raw bytes/str sent as they are) on the control socket at
    `path` and returns the answer line parsed."""
    if isinstance(payload, dict):
        payload = json.dumps(payload) + "\n"
    if isinstance(payload, str):
        payload = payload.encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(payload)
        return json.loads(read_line(s))


def read_line(sock):
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data.endswith(b"\n"), f"no complete answer line: {bytes(data)!r}"
    return data.decode()


def ask(sidecar, **request):
    answer = talk(control_path(sidecar), request)
    assert "ok" in answer, answer
    if answer["ok"] is False:
        assert isinstance(answer.get("error"), str) and answer["error"], answer
    return answer


def ctl(sidecar, *args, socket_path=None):
    path = socket_path or control_path(sidecar)
    return harness.run_checked(
        [str(harness.sidecar_binary()), "ctl", "--socket", str(path), *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


def start(procs, mode, pki=None, config=None, name="sidecar"):
    """A stand-in mongod and a sidecar in `mode` (with the test certificates when `pki`)."""
    standin = procs.standin(name=f"{name}-standin")
    args = []
    if config is None:
        args += ["--tlsMode", mode]
    if pki is not None:
        args += ["--tlsCertificateKeyFile", pki["server"], "--tlsCAFile", pki["ca"]]
    return procs.sidecar(*args, upstream=standin.address, config=config, name=name)


def mode_changes(sidecar):
    return [line["attr"] for line in sidecar.log_lines() if line.get("msg") == "mode changed"]


def plaintext_client(port, appname):
    return pymongo.MongoClient("127.0.0.1", port, appname=appname, directConnection=True,
                               serverSelectionTimeoutMS=4000, connectTimeoutMS=4000,
                               maxPoolSize=1)


def hello_message(appname, member=False, request_id=1):
    command = {"hello": 1, "$db": "admin",
               "client": {"application": {"name": appname},
                          "driver": {"name": "e2e-raw", "version": "1.0"},
                          "os": {"type": "Linux"}}}
    if member:
        command["internalClient"] = {"minWireVersion": 0, "maxWireVersion": 21}
    return harness.op_msg(command, request_id=request_id)


def raw_connection(port, appname, member=False, tls_context=None):
    """A connection that has said hello (so the sidecar knows who it is) and got the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls_context is not None:
        sock = tls_context.wrap_socket(sock, server_hostname="localhost")
    sock.sendall(hello_message(appname, member))
    _, reply = harness.read_reply(sock)
    assert reply.get("ok") == 1, reply
    return sock


# --- transition rules ----------------------------------------------------------------------

def test_transition_rules_in_json(procs, pki):
    sidecar = start(procs, "allowTLS", pki)
    unchanged = ask(sidecar, cmd="setMode", mode="allowTLS")
    assert unchanged["ok"] is True and unchanged["unchanged"] is True, unchanged
    # Asking by the SSL alias is the same mode; answers use the TLS spelling.
    assert ask(sidecar, cmd="setMode", mode="allowSSL")["unchanged"] is True

    skip = ask(sidecar, cmd="setMode", mode="requireTLS")
    assert skip["ok"] is False and "skips preferTLS" in skip["error"], skip
    down = ask(sidecar, cmd="setMode", mode="disabled")
    assert down["ok"] is False and "step down" in down["error"], down
    assert ask(sidecar, cmd="status")["mode"] == "allowTLS"

    up = ask(sidecar, cmd="setMode", mode="preferTLS")
    assert (up["ok"], up["from"], up["to"], up["forced"]) == (True, "allowTLS", "preferTLS", False)
    back = ask(sidecar, cmd="setMode", mode="allowTLS")
    assert back["ok"] is False, back
    forced_back = ask(sidecar, cmd="setMode", mode="allowTLS", force=True)
    assert forced_back["ok"] is True and forced_back["forced"] is True, forced_back
    forced_skip = ask(sidecar, cmd="setMode", mode="requireTLS", force=True)
    assert forced_skip["ok"] is True and forced_skip["from"] == "allowTLS", forced_skip
    to_disabled = ask(sidecar, cmd="setMode", mode="disabled", force=True)
    assert to_disabled["ok"] is True and to_disabled["to"] == "disabled", to_disabled
    up_again = ask(sidecar, cmd="setMode", mode="allowTLS")
    assert up_again["ok"] is True, up_again
    assert ask(sidecar, cmd="status")["mode"] == "allowTLS"

    # Every change is logged with from, to, forced and the uid that asked; refusals are not
    # changes.
    wait_until(lambda: len(mode_changes(sidecar)) == 5, what="five mode change log lines")
    changes = mode_changes(sidecar)
    assert [(c["from"], c["to"], c["forced"]) for c in changes] == [
        ("allowTLS", "preferTLS", False), ("preferTLS", "allowTLS", True),
        ("allowTLS", "requireTLS", True), ("requireTLS", "disabled", True),
        ("disabled", "allowTLS", False)]
    assert all(c["uid"] == os.geteuid() for c in changes)


def test_the_mode_applies_to_new_connections(procs, pki):
    sidecar = start(procs, "allowTLS", pki)
    assert plaintext_client(sidecar.port, "before").admin.command("ping")["ok"] == 1
    ask(sidecar, cmd="setMode", mode="requireTLS", force=True)
    client = plaintext_client(sidecar.port, "after")
    with pytest.raises(pymongo.errors.PyMongoError) as refused:
        client.admin.command("ping")
    client.close()
    assert "requires TLS" in str(refused.value)


def test_disabled_to_allow_needs_a_certificate(procs, pki):
    bare = start(procs, "disabled", name="bare")
    refused = ask(bare, cmd="setMode", mode="allowTLS")
    assert refused["ok"] is False and "no server certificate" in refused["error"], refused
    assert ask(bare, cmd="status")["mode"] == "disabled"
    # Force does not lift it (SPEC §6): without a certificate every TLS client would fail.
    forced = ask(bare, cmd="setMode", mode="allowTLS", force=True)
    assert forced["ok"] is False and "net.tls.certificateKeyFile" in forced["error"], forced
    assert ask(bare, cmd="status")["mode"] == "disabled"

    with_cert = start(procs, "disabled", pki, name="with-cert")
    assert ask(with_cert, cmd="setMode", mode="allowTLS")["ok"] is True


def test_transition_rules_with_ctl(procs, pki):
    sidecar = start(procs, "allowTLS", pki)
    same = ctl(sidecar, "set-mode", "allowTLS")
    assert same.returncode == 0 and "unchanged" in same.stdout, same
    skip = ctl(sidecar, "set-mode", "requireTLS")
    assert skip.returncode == 1 and "skips preferTLS" in skip.stderr, skip
    down = ctl(sidecar, "set-mode", "disabled")
    assert down.returncode == 1 and "step down" in down.stderr, down
    up = ctl(sidecar, "set-mode", "preferSSL")
    assert up.returncode == 0 and "allowTLS -> preferTLS" in up.stdout, up
    forced = ctl(sidecar, "set-mode", "allowTLS", "--force")
    assert forced.returncode == 0 and "(forced)" in forced.stdout, forced

    # --json before or after the subcommand prints the sidecar's answer as it is.
    for args in (("--json", "set-mode", "requireTLS"), ("set-mode", "requireTLS", "--json")):
        raw = ctl(sidecar, *args)
        assert raw.returncode == 1, raw
        answer = json.loads(raw.stdout)
        assert answer["ok"] is False and "skips" in answer["error"], raw
    status = ctl(sidecar, "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["mode"] == "allowTLS"

    table = ctl(sidecar, "status")
    assert table.returncode == 0, table
    assert "mode             allowTLS" in table.stdout, table.stdout
    assert "CN=localhost" in table.stdout, table.stdout

    wrong = ctl(sidecar, "set-mode", "requireSsl")
    assert wrong.returncode == 1 and "valid modes are" in wrong.stderr, wrong
    usage = ctl(sidecar, "set-mode")
    assert usage.returncode == 2, usage
    assert ctl(sidecar, "--help").returncode == 0

    missing = sidecar.stderr_path.parent / "nobody-listens.sock"
    unreachable = ctl(sidecar, "status", socket_path=missing)
    assert unreachable.returncode == 2 and str(missing) in unreachable.stderr, unreachable


def test_set_parameter_form(procs, pki):
    sidecar = start(procs, "allowTLS", pki)
    path = control_path(sidecar)
    up = talk(path, {"setParameter": 1, "sslMode": "preferSSL"})
    assert (up["ok"], up["was"], up["to"]) == (True, "allowTLS", "preferTLS"), up
    same = talk(path, {"setParameter": 1, "tlsMode": "preferTLS"})
    assert same["ok"] is True and same["unchanged"] is True, same
    down = talk(path, {"setParameter": 1, "tlsMode": "allowTLS"})
    assert down["ok"] is False and "step down" in down["error"], down
    # No force in mongod's command: it is refused, not ignored.
    with_force = talk(path, {"setParameter": 1, "tlsMode": "allowTLS", "force": True})
    assert with_force["ok"] is False and "force" in with_force["error"], with_force
    up = talk(path, {"setParameter": 1, "tlsMode": "requireTLS"})
    assert up["ok"] is True and up["to"] == "requireTLS", up
    assert ask(sidecar, cmd="status")["mode"] == "requireTLS"


# --- the requireTLS gate -------------------------------------------------------------------

def test_gate_refuses_while_a_plaintext_pymongo_client_is_connected(procs, pki):
    sidecar = start(procs, "preferTLS", pki)
    client = plaintext_client(sidecar.port, "billing-service")
    client.e2e.gate.insert_one({"x": 1})

    refused = ask(sidecar, cmd="setMode", mode="requireTLS")
    assert refused["ok"] is False, refused
    rows = refused["plaintextClients"]
    billing = [r for r in rows if r["application"] == "billing-service"]
    assert billing, refused
    assert billing[0]["address"] == "127.0.0.1" and billing[0]["kind"] == "client", refused
    assert "PyMongo" in billing[0]["driver"] or "pymongo" in billing[0]["driver"], refused

    shown = ctl(sidecar, "set-mode", "requireTLS")
    assert shown.returncode == 1 and "billing-service" in shown.stdout, shown
    assert ask(sidecar, cmd="status")["mode"] == "preferTLS"
    listed = ask(sidecar, cmd="clients", transport="plaintext")["clients"]
    assert any(r["application"] == "billing-service" and r["active"] > 0 for r in listed), listed

    client.close()
    wait_until(lambda: ask(sidecar, cmd="status")["active"]["plaintext"] == 0,
               what="the plaintext connections to close")
    allowed = ask(sidecar, cmd="setMode", mode="requireTLS")
    assert allowed["ok"] is True and allowed["forced"] is False, allowed


def test_open_plaintext_connection_keeps_working_after_require_tls(procs, pki):
    sidecar = start(procs, "preferTLS", pki)
    client = plaintext_client(sidecar.port, "long-lived")
    client.e2e.keep.insert_one({"n": 1})
    forced = ask(sidecar, cmd="setMode", mode="requireTLS", force=True)
    assert forced["ok"] is True and "gate" in forced["overridden"], forced

    # The pooled connection (maxPoolSize=1) was accepted before the change: it goes on.
    client.e2e.keep.insert_one({"n": 2})
    assert client.e2e.keep.count_documents({}) == 2
    # A new plaintext connection is refused with the readable error.
    newcomer = plaintext_client(sidecar.port, "newcomer")
    with pytest.raises(pymongo.errors.PyMongoError) as refused:
        newcomer.admin.command("ping")
    newcomer.close()
    assert "requires TLS" in str(refused.value)
    tls_client = pymongo.MongoClient("127.0.0.1", sidecar.port, tls=True,
                                     tlsCAFile=str(pki["ca"]), directConnection=True,
                                     serverSelectionTimeoutMS=4000)
    assert tls_client.e2e.keep.count_documents({}) == 2
    tls_client.close()
    client.e2e.keep.insert_one({"n": 3})
    client.close()


# --- drain ---------------------------------------------------------------------------------

def test_drain_spreads_closes_over_the_window_and_keeps_tls(procs, pki):
    sidecar = start(procs, "allowTLS", pki)
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    tls_socks = [raw_connection(sidecar.port, f"tls-{i}", tls_context=context) for i in range(2)]
    plain = [raw_connection(sidecar.port, f"app-{i}") for i in range(9)]
    member = raw_connection(sidecar.port, "", member=True)
    plain.append(member)

    # A window long enough that the spacing of the closes (0.5 s) stands well above the
    # scheduling noise of a loaded two-core machine under `ctest -j2`.
    window = 5.0
    spacing = window / 10
    answer = ask(sidecar, cmd="drainPlaintext", overSeconds=window)
    started = time.monotonic()
    assert answer["ok"] is True and answer["closing"] == 10 and answer["members"] == 1, answer

    closed_at = {}
    selector = selectors.DefaultSelector()
    for sock in plain:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    deadline = started + window + 10
    while len(closed_at) < len(plain) and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.05):
            try:
                data = key.fileobj.recv(4096)
            except ConnectionResetError:
                data = b""
            if not data:
                closed_at[key.fileobj] = time.monotonic() - started
                selector.unregister(key.fileobj)
    assert len(closed_at) == 10, f"only {len(closed_at)} of 10 plaintext connections closed"
    times = sorted(closed_at.values())
    # Over the window, not at once and not after it (2 s of slack for a loaded machine).
    assert times[-1] - times[0] > window / 2, times
    assert times[-1] < window + 2.0, times
    # Spread out: no long pause, most closes apart by a good part of the spacing, the
    # member last.
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) < 3 * spacing and sum(g > 0.4 * spacing for g in gaps) >= 7, times
    assert closed_at[member] == times[-1], times

    # TLS connections stay and still answer.
    for i, sock in enumerate(tls_socks):
        sock.sendall(hello_message(f"tls-{i}", request_id=2))
        _, reply = harness.read_reply(sock)
        assert reply.get("ok") == 1
    status = ask(sidecar, cmd="status")
    assert status["rejected"]["drained_plaintext"] == 10, status
    assert status["active"]["plaintext"] == 0 and status["active"]["tls"] == 2, status
    for sock in plain + tls_socks:
        sock.close()


def test_drain_with_ctl_and_nothing_to_drain(procs, pki):
    sidecar = start(procs, "allowTLS", pki)
    out = ctl(sidecar, "drain-plaintext", "5")
    assert out.returncode == 0 and "closing 0 plaintext" in out.stdout, out
    bad = ask(sidecar, cmd="drainPlaintext", overSeconds="soon")
    assert bad["ok"] is False and "overSeconds" in bad["error"], bad


# --- persist and status --------------------------------------------------------------------

CONFIG = """# tls-sidecar for node a   (kept as written)
[net]
bindIp = "127.0.0.1"
port = 1            # overridden by the flag

[net.tls]
mode = "allowTLS"   # step 1 of the upgrade
certificateKeyFile = "{server}"
CAFile = "{ca}"

[limits]
drainSeconds = 5
"""


def test_persist_changes_only_the_mode_line(procs, pki):
    original = CONFIG.format(server=pki["server"], ca=pki["ca"])
    sidecar = start(procs, None, config=original)
    config_path = sidecar.stderr_path.parent / "sidecar.toml"
    status = ask(sidecar, cmd="status")
    assert (status["mode"], status["configuredMode"], status["warnings"]) == \
        ("allowTLS", "allowTLS", []), status

    # Without persist the running mode and the file differ, and status says so.
    ask(sidecar, cmd="setMode", mode="preferTLS")
    status = ask(sidecar, cmd="status")
    assert status["configuredMode"] == "allowTLS"
    assert any("differs" in w for w in status["warnings"]), status
    assert config_path.read_text() == original

    persisted = ctl(sidecar, "set-mode", "requireTLS", "--persist")
    assert persisted.returncode == 0, persisted
    after = config_path.read_text()
    diff = [line for line in difflib.unified_diff(original.splitlines(), after.splitlines(),
                                                  lineterm="", n=0)
            if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]
    assert diff == ['-mode = "allowTLS"   # step 1 of the upgrade',
                    '+mode = "requireTLS"   # step 1 of the upgrade'], diff
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o644
    status = ask(sidecar, cmd="status")
    assert (status["mode"], status["configuredMode"], status["warnings"]) == \
        ("requireTLS", "requireTLS", []), status


def test_persist_without_a_config_file_says_why(procs, pki):
    sidecar = start(procs, "allowTLS", pki)
    refused = ask(sidecar, cmd="setMode", mode="preferTLS", persist=True)
    assert refused["ok"] is False and "without --config" in refused["error"], refused
    assert ask(sidecar, cmd="status")["mode"] == "allowTLS"


def test_reload_keeps_the_old_certificates_on_failure(procs, pki, tmp_path):
    server_pem = tmp_path / "server.pem"
    server_pem.write_bytes(pathlib_read(pki["server"]))
    standin = procs.standin()
    sidecar = procs.sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", server_pem,
                            "--tlsCAFile", pki["ca"], upstream=standin.address)
    ok = ctl(sidecar, "reload")
    assert ok.returncode == 0 and "certificates reloaded" in ok.stdout, ok
    server_pem.write_text("not a certificate\n")
    bad = ctl(sidecar, "reload")
    assert bad.returncode == 1 and str(server_pem) in bad.stderr, bad
    status = ask(sidecar, cmd="status")
    assert any(c["role"] == "server" for c in status["certificates"]), status
    # Still serving TLS with the old certificate.
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    raw_connection(sidecar.port, "after-failed-reload", tls_context=context).close()


def pathlib_read(path):
    with open(path, "rb") as f:
        return f.read()


# --- who may talk, and what they may send ------------------------------------------------

def test_socket_is_0600_and_another_uid_is_refused(procs, pki):
    if os.geteuid() != 0:
        pytest.fail("this test needs root, to run a client as nobody")
    sidecar = start(procs, "allowTLS", pki)
    path = control_path(sidecar)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A hard link in a directory nobody can reach, with the socket opened up to everyone, so
    # that only the SO_PEERCRED check stands between nobody and the sidecar.
    shared_dir = tempfile.mkdtemp(prefix="tls-sidecar-ctl-")
    try:
        os.chmod(shared_dir, 0o755)
        link = os.path.join(shared_dir, "control.sock")
        os.link(path, link)
        os.chmod(link, 0o666)
        script = ("import socket,sys\n"
                  "s=socket.socket(socket.AF_UNIX)\n"
                  f"s.connect({link!r})\n"
                  "s.sendall(b'{\"cmd\":\"setMode\",\"mode\":\"preferTLS\"}\\n')\n"
                  "data=b''\n"
                  "while True:\n"
                  "    c=s.recv(4096)\n"
                  "    if not c: break\n"
                  "    data+=c\n"
                  "sys.stdout.write(data.decode())\n")
        result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup",
                                 "--clear-groups", "/usr/bin/python3", "-c", script],
                                capture_output=True, text=True, timeout=20)
        assert result.returncode == 0, result
        lines = result.stdout.splitlines()
        assert len(lines) == 1, result.stdout  # one answer, then the sidecar closed
        answer = json.loads(lines[0])
        assert answer["ok"] is False and "uid 65534" in answer["error"], answer
        # The same link works for us: it is the uid that was refused, not the path.
        assert talk(link, {"cmd": "status"})["ok"] is True
    finally:
        for name in os.listdir(shared_dir):
            os.unlink(os.path.join(shared_dir, name))
        os.rmdir(shared_dir)
    assert ask(sidecar, cmd="status")["mode"] == "allowTLS"


def test_root_ctl_talks_to_a_service_user_sidecar_in_its_private_directory(procs):
    """The packaged unit runs the sidecar as its own user with the socket in that user's
    RuntimeDirectory: `sudo tls-sidecar ctl` must reach it there, and must still refuse the
    same sidecar's socket reached through a directory that others can write to."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root, to run the sidecar as nobody")
    standin = procs.standin()
    private = tempfile.mkdtemp(prefix="tls-sidecar-run-")
    shared = tempfile.mkdtemp(prefix="tls-sidecar-shared-")
    os.chown(private, 65534, 65534)
    os.chmod(shared, 0o1777)
    path = os.path.join(private, "control.sock")
    port = harness.free_port()
    sidecar = harness.Child("sidecar-as-nobody", [
        "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
        harness.sidecar_binary(), "--tlsMode", "disabled", "--bind_ip", "127.0.0.1",
        "--port", port, "--metrics", "", "--upstream", standin.address,
        "--control-socket", path], procs.workdir)
    try:
        wait_until(lambda: os.path.exists(path), what="the control socket")
        result = subprocess.run([str(harness.sidecar_binary()), "ctl", "--socket", path,
                                 "--json", "status"], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result
        assert json.loads(result.stdout)["mode"] == "disabled"
        link = os.path.join(shared, "control.sock")
        os.link(path, link)
        result = subprocess.run([str(harness.sidecar_binary()), "ctl", "--socket", link,
                                 "status"], stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 2, result
        assert "served by uid 65534" in result.stderr, result.stderr
    finally:
        assert sidecar.stop() == 0, sidecar.describe()
        for directory in (private, shared):
            for name in os.listdir(directory):
                os.unlink(os.path.join(directory, name))
            os.rmdir(directory)


def test_garbage_is_answered_while_traffic_continues(procs, pki):
    sidecar = start(procs, "allowTLS", pki)
    path = control_path(sidecar)
    client = plaintext_client(sidecar.port, "busy-app")
    client.e2e.busy.insert_one({"n": 0})
    stop = threading.Event()
    errors = []
    inserted = [0]

    def traffic():
        while not stop.is_set():
            try:
                client.e2e.busy.insert_one({"n": 1})
                inserted[0] += 1
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)
                return

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        for garbage in (b"\x00\x01\x02 not json\n", b"{\"cmd\": \n", b"[1,2,3]\n",
                        b"{\"cmd\":\"selfDestruct\"}\n", b"{\"cmd\":\"setMode\",\"mode\":7}\n",
                        "{\"cmd\":\"status\",\"x\":\"\u00e9\"}\n".encode()):
            answer = talk(path, garbage)
            assert answer["ok"] is False and answer["error"], (garbage, answer)
        # A line longer than 64 KiB is refused and the connection closed.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(path))
            try:
                s.sendall(b"{" + b" " * (70 * 1024))
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = json.loads(read_line(s))
            assert answer["ok"] is False and "too long" in answer["error"], answer
            s.shutdown(socket.SHUT_WR)
            assert s.recv(1) == b""  # then the sidecar closes
        # Several requests on one connection are answered in order; many connections at once.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(path))
            s.sendall(b'{"cmd":"status"}\nnope\n{"cmd":"clients"}\n')
            f = s.makefile("r")
            answers = [json.loads(f.readline()) for _ in range(3)]
            assert [a["ok"] for a in answers] == [True, False, True], answers
            assert "mode" in answers[0] and "clients" in answers[2], answers
        many = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(20)]
        for s in many:
            s.settimeout(10)
            s.connect(str(path))
        for s in many:
            s.sendall(b'{"cmd":"status"}\n')
        for s in many:
            assert json.loads(read_line(s))["ok"] is True
            s.close()
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not errors, errors
    assert inserted[0] > 0
    assert client.e2e.busy.count_documents({}) == inserted[0] + 1
    client.close()
    assert sidecar.alive()


# --- the socket file ---------------------------------------------------------------------

def test_socket_file_life_cycle(procs, pki):
    first = start(procs, "allowTLS", pki, name="first")
    path = control_path(first)
    standin = procs.standin(name="second-standin")
    # A second sidecar on the same control socket is a start-up error while the first lives.
    second = procs.sidecar("--tlsMode", "disabled", upstream=standin.address, name="second",
                           control_socket=path, wait=False)
    assert second.proc.wait(timeout=15) == 2
    assert "in use" in second.stderr_text(), second.describe()
    assert talk(path, {"cmd": "status"})["ok"] is True

    # A sidecar that died leaves its socket file; the next one removes it and starts.
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    assert path.exists()
    third = procs.sidecar("--tlsMode", "disabled", upstream=standin.address, name="third",
                          control_socket=path)
    assert talk(path, {"cmd": "status"})["mode"] == "disabled"
    # A clean stop removes it.
    third.proc.send_signal(signal.SIGTERM)
    assert third.proc.wait(timeout=15) == 0
    assert not path.exists()
