"""Certificates end to end (SPEC §5, §10): client certificates verified as mongod does
(allowConnectionsWithoutCertificates, CRL), selectors picking a certificate out of a store,
the TLS 1.0/1.1 policy, encrypted keys, and start-up errors that name the file. Every
certificate is generated at run time (certgen.py, or `tls-sidecar certs init`)."""

import datetime
import json
import ssl
import subprocess
import time
import urllib.request

import pymongo
import pytest

import certgen
import harness
from tlsclient import attempt, client_context, hello_round_trip, served_serial, tls_connect

# TLS 1.0 and 1.1 clients are the point of some tests here; Python warns that they are old.
pytestmark = pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")


# --- helpers ---------------------------------------------------------------------------

def write_pki(directory, names=("server",)):
    """A fresh CA (ca.pem) and one leaf per name written as NAME.pem."""
    ca = certgen.Authority()
    ca.write_certificate(directory / "ca.pem")
    leaves = {}
    for name in names:
        leaves[name] = ca.issue(name)
        leaves[name].write(directory / f"{name}.pem")
    return ca, leaves


def tls_config(**tls):
    """A TOML configuration with `tls` as the [net.tls] table (lists and booleans too)."""
    lines = ["[net.tls]"]
    for key, value in tls.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


# --- client certificates ---------------------------------------------------------------

def _rejected(metrics_address, reason):
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as response:
        text = response.read().decode()
    prefix = f'tls_sidecar_connections_rejected_total{{reason="{reason}"}} '
    values = [float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)]
    return values[0] if values else 0.0


def test_by_default_a_ca_file_requires_client_certificates_as_mongod(procs, pki):
    standin = procs.standin()
    metrics = f"127.0.0.1:{harness.free_port()}"
    # mongod's own command line: a CA file and nothing about connections without certificates.
    sidecar = procs.sidecar("--sslMode", "requireSSL", "--sslPEMKeyFile", pki["server"],
                            "--sslCAFile", pki["ca"], upstream=standin.address, metrics=metrics,
                            allow_without_certificates=False)
    assert "AllowConnectionsWithoutCertificates" not in " ".join(sidecar.args)
    line = sidecar.wait_for_log("client certificate policy")
    assert '"clientCertificates":"required"' in line, line

    ok, detail, _ = attempt(sidecar.port, client_context(pki["ca"]))
    assert not ok
    assert "CERTIFICATE_REQUIRED" in detail.upper(), detail
    # Counted and logged in words an operator can act on.
    line = sidecar.wait_for_log("TLS handshake failed")
    assert "the client presented no certificate" in line, line
    assert "allowConnectionsWithoutCertificates" in line, line
    deadline = time.monotonic() + 10
    while _rejected(metrics, "handshake_failed") < 1:
        assert time.monotonic() < deadline, "handshake_failed was not counted"
        time.sleep(0.1)

    # With the client certificate the same command line serves the client (pymongo too).
    ok, detail, _ = attempt(sidecar.port, client_context(pki["ca"], pki["client"]))
    assert ok, detail
    client = pymongo.MongoClient("127.0.0.1", sidecar.port, tls=True, tlsCAFile=str(pki["ca"]),
                                 tlsCertificateKeyFile=str(pki["client"]),
                                 serverSelectionTimeoutMS=5000)
    try:
        assert client.admin.command("ping")["ok"] == 1
    finally:
        client.close()


def test_the_option_lets_clients_without_certificates_in_and_says_so(procs, pki):
    standin = procs.standin()
    sidecar = procs.sidecar("--sslMode", "requireSSL", "--sslPEMKeyFile", pki["server"],
                            "--sslCAFile", pki["ca"], "--tlsAllowConnectionsWithoutCertificates",
                            upstream=standin.address)
    line = sidecar.wait_for_log("client certificate policy")
    assert '"clientCertificates":"optional"' in line, line
    assert "--tlsAllowConnectionsWithoutCertificates" in line, line
    ok, detail, _ = attempt(sidecar.port, client_context(pki["ca"]))
    assert ok, detail
    ok, detail, _ = attempt(sidecar.port, client_context(pki["ca"], pki["client"]))
    assert ok, detail


def test_certs_init_says_how_clients_present_their_certificate(procs, tmp_path):
    result = procs.run_sidecar("certs", "init", tmp_path / "pki")
    assert result.returncode == 0, result.stderr
    assert f"tlsCertificateKeyFile={tmp_path / 'pki'}/client.pem" in result.stdout, result.stdout
    assert "--tlsAllowConnectionsWithoutCertificates" in result.stdout, result.stdout


def test_client_with_a_valid_certificate_is_accepted_by_pymongo(procs, pki):
    standin = procs.standin()
    sidecar = procs.sidecar(
        upstream=standin.address,
        config=tls_config(mode="requireTLS", certificateKeyFile=str(pki["server"]),
                          CAFile=str(pki["ca"]), allowConnectionsWithoutCertificates=False))
    client = pymongo.MongoClient("127.0.0.1", sidecar.port, tls=True, tlsCAFile=str(pki["ca"]),
                                 tlsCertificateKeyFile=str(pki["client"]),
                                 serverSelectionTimeoutMS=5000)
    try:
        assert client.admin.command("ping")["ok"] == 1
    finally:
        client.close()


@pytest.mark.parametrize("allow_without", [True, False])
def test_client_without_certificate_follows_allow_connections_without_certificates(
        procs, pki, allow_without):
    standin = procs.standin()
    sidecar = procs.sidecar(
        upstream=standin.address,
        config=tls_config(mode="requireTLS", certificateKeyFile=str(pki["server"]),
                          CAFile=str(pki["ca"]),
                          allowConnectionsWithoutCertificates=allow_without))
    with_certificate = attempt(sidecar.port, client_context(pki["ca"], pki["client"]))
    assert with_certificate[0], with_certificate[1]

    without = attempt(sidecar.port, client_context(pki["ca"]))
    if allow_without:
        assert without[0], without[1]
    else:
        assert not without[0]
        assert "CERTIFICATE_REQUIRED" in without[1].upper(), without[1]
        sidecar.wait_for_log("handshake_failed")
    assert sidecar.alive()


def test_revoked_client_certificate_is_refused(procs, tmp_path):
    ca, leaves = write_pki(tmp_path, ("server",))
    good = ca.issue("good-client", serial=7001)
    revoked = ca.issue("revoked-client", serial=7002)
    good.write(tmp_path / "good.pem")
    revoked.write(tmp_path / "revoked.pem")
    ca.write_crl(tmp_path / "crl.pem", revoked=[7002])
    standin = procs.standin()
    sidecar = procs.sidecar("--tlsMode", "requireTLS",
                            "--tlsCertificateKeyFile", tmp_path / "server.pem",
                            "--tlsCAFile", tmp_path / "ca.pem",
                            "--tlsCRLFile", tmp_path / "crl.pem", upstream=standin.address)

    ok, detail, _ = attempt(sidecar.port, client_context(tmp_path / "ca.pem", tmp_path / "good.pem"))
    assert ok, detail
    ok, detail, _ = attempt(sidecar.port,
                            client_context(tmp_path / "ca.pem", tmp_path / "revoked.pem"))
    assert not ok
    assert "REVOKED" in detail.upper(), detail
    line = sidecar.wait_for_log("TLS handshake failed")
    assert "REVOKED" in line.upper(), line


def test_client_signed_by_another_ca_is_refused(procs, tmp_path):
    write_pki(tmp_path, ("server",))
    stranger = certgen.Authority("someone else's CA").issue("stranger")
    stranger.write(tmp_path / "stranger.pem")
    standin = procs.standin()
    sidecar = procs.sidecar("--tlsMode", "requireTLS",
                            "--tlsCertificateKeyFile", tmp_path / "server.pem",
                            "--tlsCAFile", tmp_path / "ca.pem", upstream=standin.address)
    ok, detail, _ = attempt(sidecar.port,
                            client_context(tmp_path / "ca.pem", tmp_path / "stranger.pem"))
    assert not ok, detail
    assert "UNKNOWN CA" in detail.upper().replace("_", " "), detail


def test_verified_client_subject_is_in_the_clients_table_and_rejection_log(procs, tmp_path):
    ca, _ = write_pki(tmp_path, ("server",))
    ca.issue("reporting-client", organization="Example").write(tmp_path / "client.pem")
    standin = procs.standin()
    sidecar = procs.sidecar("--tlsMode", "requireTLS",
                            "--tlsCertificateKeyFile", tmp_path / "server.pem",
                            "--tlsCAFile", tmp_path / "ca.pem", upstream=standin.address)
    with tls_connect(sidecar.port,
                     client_context(tmp_path / "ca.pem", tmp_path / "client.pem")) as sock:
        assert hello_round_trip(sock)["ok"] == 1
        # The clients table shows who the open TLS connection is.
        clients = harness.run_checked(
            [str(harness.sidecar_binary()), "ctl", "--socket", str(tmp_path / "sidecar.sock"),
             "--json", "clients", "--transport", "tls"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        assert clients.returncode == 0, clients.stderr
        rows = json.loads(clients.stdout)["clients"]
        assert [(r["subject"], r["active"]) for r in rows] == [
            ("CN=reporting-client,O=Example", 1)], rows
        table = harness.run_checked(
            [str(harness.sidecar_binary()), "ctl", "--socket", str(tmp_path / "sidecar.sock"),
             "clients", "--transport", "tls"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        assert table.returncode == 0, table.stderr
        assert "CERTIFICATE SUBJECT" in table.stdout, table.stdout
        assert "CN=reporting-client,O=Example" in table.stdout, table.stdout
    standin.stop()
    with tls_connect(sidecar.port,
                     client_context(tmp_path / "ca.pem", tmp_path / "client.pem")) as sock:
        reply = hello_round_trip(sock)
    assert reply.get("ok") == 0 and "upstream" in reply.get("errmsg", ""), reply
    sidecar.wait_for_log("upstream_unavailable")
    rejections = [line["attr"] for line in sidecar.log_lines()
                  if line.get("msg") == "connection rejected"]
    assert any(r.get("reason") == "upstream_unavailable" and
               r.get("clientSubject") == "CN=reporting-client,O=Example"
               for r in rejections), rejections


# --- selectors -------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path):
    """A certificate store of three certificate+key files from one CA, with distinct
    subjects and serials. Returns (directory, ca file, {cn: leaf})."""
    directory = tmp_path / "store"
    directory.mkdir()
    ca = certgen.Authority()
    ca_file = ca.write_certificate(tmp_path / "ca.pem")
    leaves = {}
    for index, cn in enumerate(("node-a", "node-b", "node-c")):
        leaves[cn] = ca.issue(cn, serial=5001 + index, organization="Example")
        leaves[cn].write(directory / f"{cn}.pem")
    return directory, ca_file, leaves


def test_subject_selector_picks_from_the_store_by_cn_and_by_dn(procs, store):
    directory, ca_file, leaves = store
    standin = procs.standin()
    by_cn = procs.sidecar("--tlsMode", "requireTLS", "--certificate-store", directory,
                          "--tlsCertificateSelector", "subject=node-b", upstream=standin.address,
                          name="by-cn")
    assert served_serial(by_cn.port, ca_file) == leaves["node-b"].serial
    by_dn = procs.sidecar("--tlsMode", "requireTLS", "--certificate-store", directory,
                          "--tlsCertificateSelector", "subject=CN=node-c,O=Example",
                          upstream=standin.address, name="by-dn")
    assert served_serial(by_dn.port, ca_file) == leaves["node-c"].serial


def test_thumbprint_selector_picks_from_the_store(procs, store):
    directory, ca_file, leaves = store
    standin = procs.standin()
    sidecar = procs.sidecar(upstream=standin.address, config=tls_config(
        mode="requireTLS", certificateStore=str(directory),
        certificateSelector=f"thumbprint={leaves['node-a'].sha1_hex()}"))
    assert served_serial(sidecar.port, ca_file) == leaves["node-a"].serial


def test_mongod_ssl_selector_flag_with_the_store_from_toml(procs, store):
    directory, ca_file, leaves = store
    standin = procs.standin()
    # The mongod spelling on the command line, the store from the configuration file.
    sidecar = procs.sidecar("--sslMode", "requireSSL", "--sslCertificateSelector",
                            "subject=node-c", upstream=standin.address,
                            config=tls_config(certificateStore=str(directory)))
    assert served_serial(sidecar.port, ca_file) == leaves["node-c"].serial
    # pymongo, verifying the host name against node-c's SANs, does CRUD through it.
    client = pymongo.MongoClient("127.0.0.1", sidecar.port, tls=True, tlsCAFile=str(ca_file),
                                 serverSelectionTimeoutMS=5000)
    try:
        assert client.admin.command("ping")["ok"] == 1
    finally:
        client.close()


def test_selector_matching_nothing_is_a_start_up_error_listing_the_store(procs, store):
    directory, _, _ = store
    result = procs.run_sidecar("--tlsMode", "requireTLS", "--certificate-store", directory,
                               "--tlsCertificateSelector", "subject=node-z",
                               *_start_up_flags(procs))
    assert result.returncode == 2, result.stderr
    line = _error_line(result.stderr)
    assert "node-z" in line and "node-a" in line, line


# --- protocol versions -----------------------------------------------------------------

OLD_VERSIONS = [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1]


@pytest.fixture(scope="module")
def old_and_new(tmp_path_factory):
    """Two sidecars on the same certificate: one with the default disabledProtocols, one
    with disabledProtocols = ["none"]."""
    workdir = tmp_path_factory.mktemp("protocols")
    pki = harness.make_pki(workdir / "pki")
    group = harness.ProcessGroup(workdir)
    try:
        standin = group.standin()
        default = group.sidecar(
            upstream=standin.address, name="default",
            config=tls_config(mode="requireTLS", certificateKeyFile=str(pki["server"])))
        legacy = group.sidecar(
            upstream=standin.address, name="legacy",
            config=tls_config(mode="requireTLS", certificateKeyFile=str(pki["server"]),
                              disabledProtocols=["none"]))
        yield pki, default, legacy, group
    finally:
        group.stop_all()


@pytest.mark.parametrize("version", OLD_VERSIONS, ids=["TLSv1.0", "TLSv1.1"])
def test_old_tls_versions_are_refused_by_default(old_and_new, version):
    pki, default, _, group = old_and_new
    ok, detail, _ = attempt(default.port, client_context(pki["ca"], version=version))
    assert not ok, detail
    assert "PROTOCOL" in detail.upper() or "VERSION" in detail.upper(), detail
    assert default.alive(), group.describe()


@pytest.mark.parametrize("version,name", [(ssl.TLSVersion.TLSv1, "TLSv1"),
                                          (ssl.TLSVersion.TLSv1_1, "TLSv1.1"),
                                          (ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                                          (ssl.TLSVersion.TLSv1_3, "TLSv1.3")])
def test_disabled_protocols_none_accepts_every_version(old_and_new, version, name):
    pki, _, legacy, group = old_and_new
    ok, detail, _ = attempt(legacy.port, client_context(pki["ca"], version=version))
    assert ok, f"{detail}\n{group.describe()}"
    assert detail == name


@pytest.mark.parametrize("version,name", [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                                          (ssl.TLSVersion.TLSv1_3, "TLSv1.3")])
def test_default_accepts_tls_1_2_and_1_3(old_and_new, version, name):
    pki, default, _, _ = old_and_new
    ok, detail, _ = attempt(default.port, client_context(pki["ca"], version=version))
    assert ok, detail
    assert detail == name


# --- keys and start-up errors ----------------------------------------------------------

def _start_up_flags(procs):
    return ["--bind_ip", "127.0.0.1", "--port", str(harness.free_port()), "--metrics", "",
            "--control-socket", procs.workdir / "start-up.sock", "--upstream", "127.0.0.1:9"]


def _error_line(stderr):
    """The one plain (non-JSON) line of a failed start: `tls-sidecar: error: ...`."""
    lines = [line for line in stderr.splitlines() if line]
    plain = [line for line in lines if not line.startswith("{")]
    assert len(plain) == 1, stderr
    assert plain[0].startswith("tls-sidecar: error: "), stderr
    # Last, so that `tail -1` of the log or the unit's status shows it.
    assert lines[-1] == plain[0], stderr
    return plain[0]


def test_encrypted_key_loads_with_the_right_password(procs, tmp_path):
    ca, _ = write_pki(tmp_path, ())
    leaf = ca.issue("encrypted-node", serial=9001)
    leaf.write(tmp_path / "encrypted.pem", password="correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "encrypted.pem").read_bytes()
    standin = procs.standin()
    sidecar = procs.sidecar("--tlsMode", "requireTLS",
                            "--tlsCertificateKeyFile", tmp_path / "encrypted.pem",
                            "--tlsCertificateKeyFilePassword", "correct horse",
                            upstream=standin.address)
    assert served_serial(sidecar.port, tmp_path / "ca.pem") == 9001
    # The password itself never reaches the log.
    assert "correct horse" not in sidecar.stderr_text()


def _bad_files(tmp_path):
    """(name, extra flags, words the error must contain) for each start-up failure."""
    ca, _ = write_pki(tmp_path, ())
    leaf = ca.issue("node1")
    leaf.write(tmp_path / "encrypted.pem", password="right")
    leaf.write(tmp_path / "good.pem")
    (tmp_path / "not-pem.pem").write_text("this is not a certificate\n")
    (tmp_path / "mismatch.pem").write_bytes(leaf.certificate_pem() + ca.issue("x").key_pem())
    ca.issue("old-node", valid_from=datetime.timedelta(days=-3),
             lifetime=datetime.timedelta(days=1)).write(tmp_path / "expired.pem")
    ca.issue("future-node", valid_from=datetime.timedelta(days=2)).write(tmp_path / "future.pem")
    (tmp_path / "corrupt-key.pem").write_bytes(
        leaf.certificate_pem() +
        b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    key = ["--tlsCertificateKeyFile"]
    # (flags, the flag the error names, the file it names, words of the reason)
    return {
        "wrong password": (key + [tmp_path / "encrypted.pem", "--tlsCertificateKeyFilePassword",
                                  "wrong"], key[0], tmp_path / "encrypted.pem", "wrong password"),
        "no password": (key + [tmp_path / "encrypted.pem"], key[0], tmp_path / "encrypted.pem",
                        "encrypted"),
        "missing": (key + [tmp_path / "absent.pem"], key[0], tmp_path / "absent.pem",
                    "not found"),
        "not PEM": (key + [tmp_path / "not-pem.pem"], key[0], tmp_path / "not-pem.pem",
                    "not PEM"),
        "key mismatch": (key + [tmp_path / "mismatch.pem"], key[0], tmp_path / "mismatch.pem",
                         "does not match"),
        "expired": (key + [tmp_path / "expired.pem"], key[0], tmp_path / "expired.pem",
                    "expired"),
        "not yet valid": (key + [tmp_path / "future.pem"], key[0], tmp_path / "future.pem",
                          "not yet valid"),
        "corrupt key": (key + [tmp_path / "corrupt-key.pem"], key[0],
                        tmp_path / "corrupt-key.pem", "cannot be parsed"),
        "missing CA": (key + [tmp_path / "good.pem", "--tlsCAFile", tmp_path / "no-ca.pem"],
                       "--tlsCAFile", tmp_path / "no-ca.pem", "not found"),
    }


BAD_FILE_CASES = ["wrong password", "no password", "missing", "not PEM", "key mismatch",
                  "expired", "not yet valid", "corrupt key", "missing CA"]


@pytest.mark.parametrize("case", BAD_FILE_CASES)
def test_bad_certificate_file_is_one_error_line_naming_it_and_exit_2(procs, tmp_path, case):
    flags, flag, path, words = _bad_files(tmp_path)[case]
    result = procs.run_sidecar("--tlsMode", "requireTLS", *flags, *_start_up_flags(procs))
    assert result.returncode == 2, result.stderr
    line = _error_line(result.stderr)
    # The option that named the file, then the file, then what is wrong with it.
    assert line.startswith(f"tls-sidecar: error: {flag}: {path}: "), line
    assert words.lower() in line.lower(), line


def test_certificate_expiring_soon_is_warned_about_at_start(procs, tmp_path):
    ca = certgen.Authority()
    ca.write_certificate(tmp_path / "ca.pem")
    ca.issue("short-lived", lifetime=datetime.timedelta(days=5)).write(tmp_path / "short.pem")
    ca.issue("long-lived-client").write(tmp_path / "client.pem")
    standin = procs.standin()
    sidecar = procs.sidecar("--tlsMode", "requireTLS", "--tlsCertificateKeyFile",
                            tmp_path / "short.pem", "--tlsCAFile", tmp_path / "ca.pem",
                            upstream=standin.address)
    sidecar.wait_for_log("expires soon")
    warnings = [line for line in sidecar.log_lines() if line.get("msg") == "certificate expires soon"]
    assert len(warnings) == 1, warnings
    assert warnings[0]["s"] == "W", warnings
    assert "CN=short-lived" in warnings[0]["attr"]["warning"], warnings
    assert str(tmp_path / "short.pem") in warnings[0]["attr"]["warning"], warnings
