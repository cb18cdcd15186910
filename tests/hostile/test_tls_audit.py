"""TLS audit (issue 12 item 5, SPEC §10 TLS policy): testssl.sh, the scanner operators and
auditors run, against a sidecar in requireTLS, with its JSON findings asserted: no SSLv2,
SSLv3, TLS 1.0 or 1.1; only forward-secret AEAD suites; the server's own order for TLS 1.2;
no client-initiated renegotiation; no compression; no known vulnerability.

Findings about the throwaway test certificate itself (no CRL or OCSP URI, no CAA record)
say nothing about the sidecar and are not asserted."""

import json
import re
import shutil
import subprocess

import pytest

import harness

# Suite names as testssl prints them (OpenSSL names for TLS 1.2, IANA for TLS 1.3).
AEAD_FORWARD_SECRET = re.compile(
    r"^(ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)"
    r"|TLS_AES_(128|256)_GCM_SHA(256|384)|TLS_CHACHA20_POLY1305_SHA256)$")

VULNERABILITIES = ("heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_client_renego",
                   "CRIME_TLS", "POODLE_SSL", "fallback_SCSV", "SWEET32", "FREAK", "DROWN",
                   "LOGJAM", "BEAST", "LUCKY13", "RC4")

# Findings about the test certificate and the test host, not about the sidecar.
NOT_ABOUT_THE_SIDECAR = re.compile(r"^(cert|DNS_CAArecord|OCSP|engine_problem|service$)")


@pytest.fixture(scope="module")
def findings(tmp_path_factory):
    testssl = shutil.which("testssl") or shutil.which("testssl.sh")
    assert testssl, "testssl.sh is not installed (tests/run.sh installs the Debian package)"
    workdir = tmp_path_factory.mktemp("audit")
    pki = harness.make_pki(workdir / "pki")
    group = harness.ProcessGroup(workdir)
    try:
        standin = group.standin()
        sidecar = group.sidecar("--tlsMode", "requireTLS", "--tlsCertificateKeyFile",
                                pki["server"], "--tlsCAFile", pki["ca"],
                                "--tlsAllowConnectionsWithoutCertificates",
                                upstream=standin.address)
        report = workdir / "testssl.json"
        result = subprocess.run(
            [testssl, "--jsonfile", str(report), "--quiet", "--color", "0", "--warnings", "off",
             "--nodns", "none", "--add-ca", str(pki["ca"]), "--openssl-timeout", "10",
             "--protocols", "--std", "--server-preference", "--fs", "--server-defaults",
             "--vulnerable", f"127.0.0.1:{sidecar.port}"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600, cwd=workdir)
        assert report.is_file(), f"testssl wrote no report:\n{result.stdout}\n{result.stderr}"
        parsed = {entry["id"]: entry for entry in json.loads(report.read_text())}
        print(result.stdout)
        assert sidecar.alive(), sidecar.describe()
        yield parsed
    finally:
        print(group.describe())
        group.stop_all()
        reports = group.sanitizer_reports()
        assert not reports, "\n\n".join(reports)


def finding(findings, name):
    assert name in findings, f"testssl reported no {name}: {sorted(findings)}"
    return findings[name]["finding"]


def test_only_tls_1_2_and_1_3_are_offered(findings):
    for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert finding(findings, old) == "not offered", findings[old]
    assert finding(findings, "TLS1_2") == "offered"
    assert finding(findings, "TLS1_3").startswith("offered")


def test_only_forward_secret_aead_suites_in_the_servers_order(findings):
    for weak in ("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
                 "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"):
        assert finding(findings, weak) == "not offered", findings[weak]
    # The TLS 1.2 list in the server's order is every TLS 1.2 suite offered; TLS 1.3 suites
    # are all AEAD and forward secret by design, and listed among the forward-secret ones.
    offered = finding(findings, "cipherorder_TLSv1_2").split()
    offered += finding(findings, "PFS_ciphers").split()
    assert any(s.startswith("TLS_") for s in offered), offered
    for suite in offered:
        assert AEAD_FORWARD_SECRET.match(suite), f"{suite} is not a forward-secret AEAD suite"
    # testssl reported no server preference before SSL_OP_CIPHER_SERVER_PREFERENCE was set.
    assert finding(findings, "cipher_order").startswith("server"), findings["cipher_order"]


def test_no_renegotiation_no_compression_no_known_vulnerability(findings):
    assert finding(findings, "secure_client_renego").startswith("not vulnerable")
    assert finding(findings, "CRIME_TLS").startswith("not vulnerable")
    for name in VULNERABILITIES:
        text = finding(findings, name)
        assert "VULNERABLE" not in text and findings[name]["severity"] in ("OK", "INFO"), \
            findings[name]
    for name, entry in findings.items():
        if NOT_ABOUT_THE_SIDECAR.match(name):
            continue
        assert entry["severity"] not in ("MEDIUM", "HIGH", "CRITICAL", "WARN"), entry
        assert "NOT ok" not in entry["finding"], entry
