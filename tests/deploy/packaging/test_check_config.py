"""`tls-sidecar --check-config` (SPEC §5): loads the file, the flags, certificates and keys,
binds nothing, exits 0 or 2 with one error line. CI pipelines, the units' ExecStartPre= and
the manifests' test rely on it; the shipped example configuration passes it."""

import socket
import subprocess

import harness
from conftest import DEPLOY_DIR


def check(*args, cwd=None):
    return subprocess.run([str(harness.sidecar_binary()), "--check-config", *map(str, args)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                          cwd=cwd)


def listening_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_a_valid_configuration_exits_0_without_binding_anything(tmp_path, pki):
    # The port and the metrics port are taken: a start would fail, a check must not care,
    # and must leave the control socket alone.
    with listening_socket() as port, listening_socket() as metrics:
        control = tmp_path / "control.sock"
        config = tmp_path / "sidecar.toml"
        config.write_text(f"""
[net]
bindIp = "127.0.0.1"
port = {port.getsockname()[1]}
[net.tls]
mode = "preferTLS"
certificateKeyFile = "{pki['server']}"
CAFile = "{pki['ca']}"
[control]
socket = "{control}"
[metrics]
listen = "127.0.0.1:{metrics.getsockname()[1]}"
""")
        result = check("--config", config)
        assert result.returncode == 0, result.stderr
        assert result.stdout == (f"tls-sidecar: configuration OK: {config} (mode preferTLS, "
                                 "3 certificate(s) loaded)\n")
        assert not control.exists()
        # Flags override the file, as at a start.
        result = check("--config", config, "--tlsMode", "requireTLS")
        assert result.returncode == 0, result.stderr
        assert "(mode requireTLS," in result.stdout


def test_a_key_file_without_a_key_is_one_error_line_and_exit_2(tmp_path, pki):
    result = check("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["ca"])
    assert result.returncode == 2
    assert result.stdout == ""
    # Worded as a start words it: the flag that named the file, then the file.
    assert result.stderr == (f"tls-sidecar: error: --tlsCertificateKeyFile: {pki['ca']}: holds "
                             "no private key (expected the certificate and its key in one PEM "
                             "file)\n")


def test_an_unknown_key_names_the_file_and_the_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[net]\nprot = 27017\n')
    result = check("--config", config)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"tls-sidecar: error: {config}: net.prot: "), lines[0]


def test_the_shipped_example_configuration_checks(tmp_path, pki):
    # deploy/systemd/tls-sidecar.toml as installed in /etc/tls-sidecar, with the certificate
    # directory it names pointing at test certificates.
    text = (DEPLOY_DIR / "systemd" / "tls-sidecar.toml").read_text()
    assert '"/etc/tls-sidecar/certs/server.pem"' in text
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "server.pem").write_bytes(pki["server"].read_bytes())
    (certs / "ca.pem").write_bytes(pki["ca"].read_bytes())
    config = tmp_path / "tls-sidecar.toml"
    config.write_text(text.replace("/etc/tls-sidecar/certs/", f"{certs}/"))
    result = check("--config", config)
    assert result.returncode == 0, result.stderr
    assert "(mode allowTLS, 3 certificate(s) loaded)" in result.stdout
