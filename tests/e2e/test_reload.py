"""Certificate rotation without a restart (SPEC §6 reload, §7, §10): `tls-sidecar ctl reload`
and SIGHUP swap in new certificates for new connections while connections opened before
keep theirs and go on working; a bad file at reload keeps the old certificates, says which
file failed, and is counted in tls_sidecar_certificate_reloads_total{result="failure"}."""

import json
import signal
import subprocess
import time
import urllib.request

import pytest

import certgen
import harness
from tlsclient import attempt, client_context, hello_round_trip, tls_connect


def ctl(sidecar, *args):
    socket_path = sidecar.stderr_path.parent / f"{sidecar.name}.sock"
    return harness.run_checked(
        [str(harness.sidecar_binary()), "ctl", "--socket", str(socket_path), *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


def reload_json(sidecar):
    result = ctl(sidecar, "--json", "reload")
    return result.returncode, json.loads(result.stdout)


def scrape(metrics_address):
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as response:
        return response.read().decode()


def reloads(metrics_address):
    """tls_sidecar_certificate_reloads_total by result, as exported."""
    counts = {}
    for line in scrape(metrics_address).splitlines():
        if line.startswith("tls_sidecar_certificate_reloads_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            counts[result] = float(line.rsplit(" ", 1)[1])
    return counts


def serial_on(sock):
    return certgen.serial_of_der(sock.getpeercert(binary_form=True))


def new_connection_serial(port, ca_file):
    ok, detail, serial = attempt(port, client_context(ca_file))
    assert ok, detail
    return serial


def wait_for_log_count(sidecar, message, count, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        seen = [line for line in sidecar.log_lines() if line.get("msg") == message]
        if len(seen) >= count:
            return seen
        if time.monotonic() >= deadline:
            raise AssertionError(f"{len(seen)} of {count} {message!r} lines\n{sidecar.describe()}")
        time.sleep(0.05)


@pytest.fixture
def rotation(procs, tmp_path):
    """A sidecar serving certificate A (serial 1001) from server.pem, with metrics on, and
    certificates B (1002) and C (1003) from the same CA ready to be rotated in."""
    ca = certgen.Authority()
    ca_file = ca.write_certificate(tmp_path / "ca.pem")
    leaves = {name: ca.issue(f"node-{name}", serial=serial)
              for name, serial in (("A", 1001), ("B", 1002), ("C", 1003))}
    server_file = leaves["A"].write(tmp_path / "server.pem")
    metrics_address = f"127.0.0.1:{harness.free_port()}"
    standin = procs.standin()
    sidecar = procs.sidecar("--tlsMode", "requireTLS", "--tlsCertificateKeyFile", server_file,
                            "--tlsCAFile", ca_file, upstream=standin.address,
                            metrics=metrics_address)
    return sidecar, ca_file, server_file, leaves, metrics_address


def test_ctl_reload_serves_the_new_certificate_while_old_connections_keep_theirs(rotation):
    sidecar, ca_file, server_file, leaves, metrics_address = rotation
    under_a = tls_connect(sidecar.port, client_context(ca_file))
    try:
        assert hello_round_trip(under_a, request_id=1)["ok"] == 1
        assert serial_on(under_a) == 1001

        leaves["B"].write(server_file)
        status, answer = reload_json(sidecar)
        assert status == 0 and answer["ok"] is True, answer
        assert any(cert["subject"] == "CN=node-B" for cert in answer["certificates"]), answer

        # A new connection gets B; the one opened under A is untouched and still forwards.
        # (Its peer certificate is the one of its own handshake, cached by the client: reading
        # it again would prove nothing.)
        assert new_connection_serial(sidecar.port, ca_file) == 1002
        assert hello_round_trip(under_a, request_id=2)["ok"] == 1
        assert reloads(metrics_address) == {"success": 1, "failure": 0}

        # A corrupt key: the reload is refused naming the file, and B stays in service.
        server_file.write_bytes(leaves["B"].certificate_pem() +
                                b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n"
                                b"-----END PRIVATE KEY-----\n")
        status, answer = reload_json(sidecar)
        assert status == 1 and answer["ok"] is False, answer
        assert str(server_file) in answer["error"], answer
        assert "private key" in answer["error"], answer
        assert new_connection_serial(sidecar.port, ca_file) == 1002
        assert hello_round_trip(under_a, request_id=3)["ok"] == 1
        assert reloads(metrics_address) == {"success": 1, "failure": 1}
        line = sidecar.wait_for_log("certificate reload failed")
        assert str(server_file) in line, line

        # The human form says the same and exits 1.
        human = ctl(sidecar, "reload")
        assert human.returncode == 1, human
        assert str(server_file) in human.stdout + human.stderr, human
        assert reloads(metrics_address) == {"success": 1, "failure": 2}
    finally:
        under_a.close()
    assert sidecar.alive()


def test_sighup_reloads(rotation):
    sidecar, ca_file, server_file, leaves, metrics_address = rotation
    under_a = tls_connect(sidecar.port, client_context(ca_file))
    try:
        assert hello_round_trip(under_a, request_id=1)["ok"] == 1
        assert serial_on(under_a) == 1001  # before: the handshake under A
        leaves["C"].write(server_file)
        sidecar.proc.send_signal(signal.SIGHUP)
        wait_for_log_count(sidecar, "certificates reloaded", 1)
        # A new connection gets C; the one opened under A still forwards.
        assert new_connection_serial(sidecar.port, ca_file) == 1003
        assert hello_round_trip(under_a, request_id=2)["ok"] == 1
        assert reloads(metrics_address) == {"success": 1, "failure": 0}
    finally:
        under_a.close()
    assert sidecar.alive()


def test_reload_rereads_the_crl(procs, tmp_path):
    ca = certgen.Authority()
    ca_file = ca.write_certificate(tmp_path / "ca.pem")
    ca.issue("server").write(tmp_path / "server.pem")
    ca.issue("client", serial=4242).write(tmp_path / "client.pem")
    crl_file = ca.write_crl(tmp_path / "crl.pem", revoked=[])
    standin = procs.standin()
    sidecar = procs.sidecar("--tlsMode", "requireTLS", "--tlsCertificateKeyFile",
                            tmp_path / "server.pem", "--tlsCAFile", ca_file, "--tlsCRLFile",
                            crl_file, upstream=standin.address)
    client = client_context(ca_file, tmp_path / "client.pem")
    ok, detail, _ = attempt(sidecar.port, client)
    assert ok, detail

    ca.write_crl(crl_file, revoked=[4242])
    status, answer = reload_json(sidecar)
    assert status == 0 and answer["ok"] is True, answer
    ok, detail, _ = attempt(sidecar.port, client)
    assert not ok
    assert "REVOKED" in detail.upper(), detail


def test_failed_reload_of_a_missing_ca_keeps_serving(rotation):
    sidecar, ca_file, server_file, leaves, metrics_address = rotation
    client_ca = ca_file.with_name("client-ca.pem")
    client_ca.write_bytes(ca_file.read_bytes())
    ca_file.unlink()
    leaves["B"].write(server_file)  # a good server file does not save a reload without its CA
    status, answer = reload_json(sidecar)
    assert status == 1 and answer["ok"] is False, answer
    assert str(ca_file) in answer["error"] and "not found" in answer["error"], answer
    assert reloads(metrics_address) == {"success": 0, "failure": 1}
    assert new_connection_serial(sidecar.port, client_ca) == 1001


# --- net.tls.watchCertificates ----------------------------------------------------------

def watched_sidecar(procs, certs_dir, server_file, ca_file, metrics_address):
    standin = procs.standin()
    config = "[net.tls]\nmode = \"requireTLS\"\nwatchCertificates = true\n"
    sidecar = procs.sidecar("--tlsCertificateKeyFile", server_file, "--tlsCAFile", ca_file,
                            upstream=standin.address, metrics=metrics_address, config=config)
    line = sidecar.wait_for_log("watching certificate files")
    assert str(certs_dir) in line, line
    return sidecar


def test_watch_reloads_when_the_file_is_replaced_and_ignores_other_files(procs, tmp_path):
    certs_dir = tmp_path / "certs"
    certs_dir.mkdir()
    ca = certgen.Authority()
    ca_file = ca.write_certificate(certs_dir / "ca.pem")
    server_file = ca.issue("node-A", serial=2001).write(certs_dir / "server.pem")
    metrics_address = f"127.0.0.1:{harness.free_port()}"
    sidecar = watched_sidecar(procs, certs_dir, server_file, ca_file, metrics_address)
    under_a = tls_connect(sidecar.port, client_context(ca_file))
    try:
        assert hello_round_trip(under_a, request_id=1)["ok"] == 1
        ca.issue("node-B", serial=2002).write(server_file)  # by rename, as editors and cp do
        wait_for_log_count(sidecar, "certificates reloaded", 1)
        assert new_connection_serial(sidecar.port, ca_file) == 2002
        assert hello_round_trip(under_a, request_id=2)["ok"] == 1

        # Something else in the directory changes: no reload.
        (certs_dir / "README").write_text("rotated by the operator\n")
        # No log line says "ignored", so this needs a window. The watcher decides on its
        # quiet timer, 0.5 s after the last event of the directory (kDefaultDebounceMs). The
        # window is four of those, then a control-socket round trip: the control socket is
        # served on the same loop as that timer, and libuv runs a timer that is due before it
        # polls for I/O, so the answer arrives only after the decision was made.
        time.sleep(2.0)
        assert ctl(sidecar, "status").returncode == 0
        assert reloads(metrics_address) == {"success": 1, "failure": 0}

        # A broken write is one failed reload, the old certificate stays; fixing it reloads.
        server_file.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        wait_for_log_count(sidecar, "certificate reload failed; keeping the old certificates", 1)
        assert new_connection_serial(sidecar.port, ca_file) == 2002
        ca.issue("node-C", serial=2003).write(server_file)
        wait_for_log_count(sidecar, "certificates reloaded", 2)
        assert new_connection_serial(sidecar.port, ca_file) == 2003
        assert reloads(metrics_address) == {"success": 2, "failure": 1}
    finally:
        under_a.close()


def test_watch_follows_a_kubernetes_secret_symlink_swap(procs, tmp_path):
    # The layout kubelet's atomic writer makes for a mounted secret: the visible files are
    # symlinks through `..data`, which is renamed over to point at a new timestamped
    # directory holding every file of the new version.
    mount = tmp_path / "secret"
    mount.mkdir()
    ca = certgen.Authority()

    def write_version(name, serial):
        version = mount / name
        version.mkdir()
        ca.write_certificate(version / "ca.pem")
        ca.issue(f"node-{serial}", serial=serial).write(version / "server.pem")
        (mount / "..data_tmp").symlink_to(name)
        (mount / "..data_tmp").rename(mount / "..data")

    write_version("..2024_01_01_00_00_00.1", 3001)
    for name in ("ca.pem", "server.pem"):
        (mount / name).symlink_to(f"..data/{name}")
    client_ca = tmp_path / "client-ca.pem"
    ca.write_certificate(client_ca)
    metrics_address = f"127.0.0.1:{harness.free_port()}"
    sidecar = watched_sidecar(procs, mount, mount / "server.pem", mount / "ca.pem",
                              metrics_address)
    assert new_connection_serial(sidecar.port, client_ca) == 3001
    under_first = tls_connect(sidecar.port, client_context(client_ca))
    try:
        assert hello_round_trip(under_first, request_id=1)["ok"] == 1
        assert serial_on(under_first) == 3001  # the handshake before the swap
        write_version("..2024_02_01_00_00_00.2", 3002)
        wait_for_log_count(sidecar, "certificates reloaded", 1)
        # A new connection gets the new version; the one opened before still forwards.
        assert new_connection_serial(sidecar.port, client_ca) == 3002
        assert hello_round_trip(under_first, request_id=2)["ok"] == 1
        assert reloads(metrics_address) == {"success": 1, "failure": 0}
    finally:
        under_first.close()
