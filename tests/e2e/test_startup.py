"""Starting and stopping tls-sidecar as an operator does (SPEC §5, §8, §9, §10): mongod's
command line carries over, bad configuration is one line and exit status 2, logs are JSON
lines, the TLS library is BoringSSL, and SIGTERM exits 0 (test_shutdown.py has the drain)."""

import signal
import socket

import pymongo
import pytest


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
