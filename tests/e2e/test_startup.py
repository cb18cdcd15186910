"""Starting and stopping tls-sidecar as an operator does (SPEC §5, §8, §9, §10): mongod's
command line carries over, bad configuration is one line and exit status 2, logs are JSON
lines, the TLS library is BoringSSL, and SIGTERM exits 0 (test_shutdown.py has the drain)."""

import json
import os
import pathlib
import signal
import socket
import stat
import subprocess
import time

import pymongo
import pytest

import harness


def _ping(port, tls=False, ca=None):
    options = dict(tls=True, tlsCAFile=str(ca)) if tls else {}
    client = pymongo.MongoClient("127.0.0.1", port, serverSelectionTimeoutMS=5000, **options)
    try:
        return client.admin.command("ping")["ok"]
    finally:
        client.close()


def test_version_names_the_tls_library(procs):
    result = procs.run_sidecar("--version")
    assert result.returncode == 0, result.stderr
    assert "tls-sidecar" in result.stdout
    assert "BoringSSL" in result.stdout


def test_mongod_ssl_command_line_starts_and_serves_both_kinds(procs, pki):
    standin = procs.standin()
    sidecar = procs.sidecar("--sslMode", "allowSSL", "--sslPEMKeyFile", pki["server"],
                            "--sslCAFile", pki["ca"], "--replSet", "rs0",
                            upstream=standin.address)
    assert _ping(sidecar.port) == 1
    assert _ping(sidecar.port, tls=True, ca=pki["ca"]) == 1
    # --replSet is accepted and ignored, with a notice rather than silently.
    sidecar.wait_for_log("replSet")


def test_runs_on_boringssl_not_openssl(procs, pki):
    standin = procs.standin()
    sidecar = procs.sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["server"],
                            "--tlsCAFile", pki["ca"], upstream=standin.address)
    assert _ping(sidecar.port, tls=True, ca=pki["ca"]) == 1
    maps = open(f"/proc/{sidecar.proc.pid}/maps").read()
    assert "libssl.so.3" not in maps and "libcrypto.so.3" not in maps


def test_logs_are_json_lines_and_sigterm_exits_zero(procs, pki):
    standin = procs.standin()
    sidecar = procs.sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["server"],
                            "--tlsCAFile", pki["ca"], upstream=standin.address)
    assert _ping(sidecar.port) == 1
    assert _ping(sidecar.port, tls=True, ca=pki["ca"]) == 1
    with socket.create_connection(("127.0.0.1", sidecar.port)) as sock:
        sock.sendall(b"\x00" * 32)
        sock.settimeout(5)
        while sock.recv(4096):
            pass
    sidecar.wait_for_log("invalid_first_bytes")
    assert sidecar.stop(signal.SIGTERM, timeout=15) == 0
    lines = sidecar.log_lines()
    assert lines, "the sidecar logged nothing"
    for entry in lines:
        assert isinstance(entry, dict)
        assert {"t", "s", "c", "msg"} <= entry.keys(), entry


BAD_TOML = {
    "unknown-key": ("[net]\nbogusKey = 1\n", "net.bogusKey"),
    "wrong-type": ('[net]\nport = "many"\n', "net.port"),
    "unknown-mode": ('[net.tls]\nmode = "sometimesTLS"\n', "net.tls.mode"),
}


@pytest.mark.parametrize("name", sorted(BAD_TOML))
def test_bad_config_file_exits_2_naming_file_and_key(procs, tmp_path, name):
    text, key = BAD_TOML[name]
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    result = procs.run_sidecar("--config", path, "--upstream", "127.0.0.1:1", timeout=10)
    _assert_one_line_error(result, f"{path}: {key}:")


def test_unknown_mode_flag_lists_the_valid_names(procs):
    result = procs.run_sidecar("--tlsMode", "sometimesTLS", timeout=10)
    line = _assert_one_line_error(result, "--tlsMode")
    for name in ("disabled", "allowTLS", "preferTLS", "requireTLS"):
        assert name in line


# SPEC §5: "tls-sidecar: error: FILE: KEY: what is wrong", the flag's name instead of FILE: KEY
# for a flag; the file itself when it cannot be read. Each line must name what to fix.
@pytest.mark.parametrize("args,named", [
    (["--config", "/nonexistent/tls-sidecar.toml"], ["/nonexistent/tls-sidecar.toml"]),
    (["--port", "70000"], ["--port: ", "70000"]),
    (["--tlsMode", "requireTLS"], ["--tlsMode: ", "certificateKeyFile"]),
    (["--no-such-flag"], ["--no-such-flag: "]),
], ids=["unreadable-file", "port-out-of-range", "tls-without-certificate", "unknown-flag"])
def test_bad_flags_exit_2_with_one_line(procs, args, named):
    result = procs.run_sidecar(*args, timeout=10)
    _assert_one_line_error(result, *named)


def test_crl_without_ca_is_refused(procs, pki):
    result = procs.run_sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["server"],
                               "--tlsCRLFile", pki["ca"], timeout=10)
    _assert_one_line_error(result, "--tlsCRLFile: ", "CAFile")


def _assert_one_line_error(result, *expected):
    """The one plain line of SPEC §5, exit 2; each of `expected` in it (the first right
    after the "tls-sidecar: error: " prefix when it is a flag)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tls-sidecar: error: "), lines[0]
    for text in expected:
        assert text, "an expected error text must not be empty"
        assert text in lines[0], lines[0]
    if expected and expected[0].startswith("--"):
        assert lines[0].startswith("tls-sidecar: error: " + expected[0]), lines[0]
    return lines[0]


def _last_line_error(result, expected):
    """A failed start: exit status 2 and, whatever JSON lines came before, the last line on
    stderr is the plain `tls-sidecar: error: ...` naming what is wrong."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert lines, "nothing on stderr"
    assert lines[-1].startswith("tls-sidecar: error: "), result.stderr
    assert expected in lines[-1], result.stderr
    assert all(line.startswith("{") for line in lines[:-1]), result.stderr
    return lines[-1]


def _start_flags(port, workdir, name):
    return ["--bind_ip", "127.0.0.1", "--port", port, "--metrics", "",
            "--control-socket", workdir / f"{name}.sock", "--upstream", "127.0.0.1:9"]


# --- one sidecar per port (SPEC §8) -------------------------------------------------------

def test_second_sidecar_on_the_same_port_exits_2_and_the_first_keeps_every_connection(
        procs, pki):
    standin = procs.standin()
    first = procs.sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["server"],
                          "--tlsCAFile", pki["ca"], upstream=standin.address)
    # A second one, configured differently and with its own control socket.
    result = procs.run_sidecar("--bind_ip", "127.0.0.1", "--port", first.port, "--metrics", "",
                               "--control-socket", procs.workdir / "second.sock",
                               "--upstream", standin.address)
    _last_line_error(result, f"--port: 127.0.0.1:{first.port} is already in use "
                             f"(by another tls-sidecar, pid {first.proc.pid})")
    # On all addresses, overlapping the first one's: refused as well.
    result = procs.run_sidecar("--bind_ip", "0.0.0.0", "--port", first.port, "--metrics", "",
                               "--control-socket", procs.workdir / "third.sock",
                               "--upstream", standin.address)
    _last_line_error(result, "already in use")
    # Every connection still reaches the first sidecar: TLS pings would fail on a plaintext
    # second one, and its log counts them all.
    for _ in range(20):
        assert _ping(first.port, tls=True, ca=pki["ca"]) == 1
    assert first.alive()


def test_a_port_held_by_another_program_is_address_already_in_use(procs):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = procs.run_sidecar(*_start_flags(port, procs.workdir, "held"))
    _last_line_error(result, f"--port: cannot listen on 127.0.0.1:{port}: "
                             "Address already in use")


def test_sidecars_on_different_addresses_share_a_port_number(procs):
    standin = procs.standin()
    first = procs.sidecar(upstream=standin.address)
    port = first.port
    second = harness.Sidecar(procs.workdir, upstream=standin.address, name="second", port=port,
                             bind_ip="127.0.0.2")
    procs.children.append(second)
    deadline = time.monotonic() + 15
    while True:
        assert second.alive(), second.describe()
        try:
            socket.create_connection(("127.0.0.2", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, second.describe()
            time.sleep(0.05)
    assert _ping(port) == 1
    client = pymongo.MongoClient("127.0.0.2", port, serverSelectionTimeoutMS=5000)
    try:
        assert client.admin.command("ping")["ok"] == 1
    finally:
        client.close()


# --- errors that name what to fix ----------------------------------------------------------

def test_metrics_port_in_use_names_the_flag_or_key(procs, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = f"127.0.0.1:{holder.getsockname()[1]}"
        flags = _start_flags(harness.free_port(), procs.workdir, "m1")
        flags[flags.index("--metrics") + 1] = taken
        result = procs.run_sidecar(*flags)
        _last_line_error(result, f"--metrics: cannot serve on {taken}: address already in use")

        config = tmp_path / "metrics.toml"
        config.write_text(f'[metrics]\nlisten = "{taken}"\n')
        flags = _start_flags(harness.free_port(), procs.workdir, "m2")
        del flags[flags.index("--metrics"):flags.index("--metrics") + 2]
        result = procs.run_sidecar("--config", config, *flags)
        _last_line_error(result, f"{config}: metrics.listen: cannot serve on {taken}: "
                                 "address already in use")


def test_certificate_file_errors_name_the_option(procs, tmp_path, pki):
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    flags = _start_flags(harness.free_port(), procs.workdir, "c1")
    result = procs.run_sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["server"],
                               "--tlsCAFile", pki_dir, *flags)
    _last_line_error(result, f"--tlsCAFile: {pki_dir}: is a directory, not a file")

    config = tmp_path / "ca.toml"
    config.write_text(f'[net.tls]\nmode = "allowTLS"\ncertificateKeyFile = "{pki["server"]}"\n'
                      f'CAFile = "{pki_dir}"\n')
    result = procs.run_sidecar("--config", config,
                               *_start_flags(harness.free_port(), procs.workdir, "c2"))
    _last_line_error(result, f"{config}: net.tls.CAFile: {pki_dir}: is a directory, not a file")

    result = procs.run_sidecar("--tlsMode", "allowTLS", "--sslPEMKeyFile", tmp_path / "none.pem",
                               *_start_flags(harness.free_port(), procs.workdir, "c3"))
    _last_line_error(result, f"--sslPEMKeyFile: {tmp_path / 'none.pem'}: not found")


def test_help_lists_every_configuration_key_with_its_default(procs):
    result = procs.run_sidecar("--help")
    assert result.returncode == 0, result.stderr
    for text in ("egress.transparent.mark", "default: 0x5ec", "egress.transparent.listen",
                 "limits.drainSeconds", "net.tls.allowConnectionsWithoutCertificates",
                 "control.socket", "<runtime dir>/<port>.sock"):
        assert text in result.stdout, text


# --- the control socket's default place (SPEC §5) ------------------------------------------

def _ctl(args, env):
    return subprocess.run([str(harness.sidecar_binary()), "ctl", *map(str, args)], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


def test_default_control_socket_is_in_a_private_runtime_directory_and_ctl_finds_it(
        procs, tmp_path):
    standin = procs.standin()
    runtime = tmp_path / "run"
    env = dict(os.environ, RUNTIME_DIRECTORY=str(runtime))
    # The old default path, squatted by another user, no longer matters.
    port = harness.free_port()
    squat = pathlib.Path(f"/tmp/tls-sidecar-{port}.sock")
    squat.write_text("not a socket")
    try:
        os.chown(squat, 65534, 65534)
        sidecar = harness.Sidecar(procs.workdir, upstream=standin.address, port=port,
                                  control_socket="default", env=env)
        procs.children.append(sidecar)
        sidecar.wait_listening()
        path = runtime / f"{port}.sock"
        deadline = time.monotonic() + 10
        while not path.exists():
            assert time.monotonic() < deadline, sidecar.describe()
            time.sleep(0.05)
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
        assert runtime.stat().st_uid == os.geteuid()

        status = _ctl(["--port", port, "--json", "status"], env)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["ok"] is True
        # --socket overrides the default.
        status = _ctl(["--socket", path, "status"], dict(os.environ))
        assert status.returncode == 0, status.stderr
        # Another port's default is another socket: nobody answers there.
        other = _ctl(["--port", harness.free_port(), "status"], env)
        assert other.returncode == 2, other.stdout
    finally:
        squat.unlink()


def test_a_runtime_directory_of_another_user_is_refused(procs, tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    os.chown(runtime, 65534, 65534)
    env = dict(os.environ, RUNTIME_DIRECTORY=str(runtime))
    port = harness.free_port()
    result = subprocess.run([str(harness.sidecar_binary()), "--port", str(port), "--metrics", "",
                             "--upstream", "127.0.0.1:9"], env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=20)
    _last_line_error(result, f"control.socket: runtime directory {runtime} belongs to uid 65534")
    assert not (runtime / f"{port}.sock").exists()
