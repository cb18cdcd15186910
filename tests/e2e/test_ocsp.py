"""OCSP as mongod 4.4+ does it (issue 16, SPEC §5), against a real responder: Debian's
`openssl ocsp` on 127.0.0.1 answering from an index file, for certificates that
`tls-sidecar certs init --ocsp-url` made. Stapling is read by `openssl s_client -status`;
client certificates are presented by pymongo; egress runs between two sidecars."""

import pathlib
import re
import subprocess
import time
import urllib.request
import uuid

import pymongo
import pytest
from cryptography import x509

import harness


# --- the PKI and the responder -----------------------------------------------------------

def ocsp_pki(directory, responder_port):
    """certs init with every certificate naming http://127.0.0.1:PORT/ as its responder."""
    directory = pathlib.Path(directory)
    result = harness.run_checked(
        [str(harness.sidecar_binary()), "certs", "init", str(directory), "--hosts",
         "localhost,127.0.0.1", "--ocsp-url", f"http://127.0.0.1:{responder_port}/"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    roles = ("ca", "server", "cluster", "client", "ocsp-responder")
    return {role: directory / f"{role}.pem" for role in roles}


def serial_hex(pem):
    return format(x509.load_pem_x509_certificate(pathlib.Path(pem).read_bytes()).serial_number,
                  "X")


def write_index(path, pki, revoked=()):
    """openssl's CA database: every leaf valid (V), those in `revoked` revoked (R)."""
    expiry = "491231235959Z"
    lines = []
    for role in ("server", "cluster", "client"):
        serial = serial_hex(pki[role])
        if len(serial) % 2:
            serial = "0" + serial
        if role in revoked:
            lines.append(f"R\t{expiry}\t240101000000Z,keyCompromise\t{serial}\tunknown\t/CN={role}")
        else:
            lines.append(f"V\t{expiry}\t\t{serial}\tunknown\t/CN={role}")
    pathlib.Path(path).write_text("\n".join(lines) + "\n")
    pathlib.Path(str(path) + ".attr").write_text("unique_subject = no\n")


def start_responder(procs, pki, port, revoked=(), validity=("-ndays", "1")):
    index = procs.workdir / "index.txt"
    write_index(index, pki, revoked)
    child = harness.Child(
        "ocsp-responder",
        ["openssl", "ocsp", "-port", str(port), "-index", index, "-CA", pki["ca"], "-rsigner",
         pki["ocsp-responder"], "-rkey", pki["ocsp-responder"], *validity],
        procs.workdir)
    procs.children.append(child)
    harness.wait_until(lambda: harness.is_listening(port), timeout=10,
                       what="openssl ocsp listening")
    return child


def tls_args(pki):
    return ["--tlsMode", "requireTLS", "--tlsCertificateKeyFile", pki["server"], "--tlsCAFile",
            pki["ca"]]


def stapled(sidecar, pki):
    """What `openssl s_client -status` shows of the staple."""
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{sidecar.port}", "-servername",
         "localhost", "-status", "-CAfile", str(pki["ca"]), "-cert", str(pki["client"])],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    return result.stdout


def ask(sidecar, **request):
    return harness.control_request(sidecar.stderr_path.parent / f"{sidecar.name}.sock", request)


def rejected(sidecar, reason):
    return ask(sidecar, cmd="status")["rejected"].get(reason, 0)


def scrape(address, name, **labels):
    """The value of one series on /metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name):]
        if rest.startswith("{"):
            found = dict(re.findall(r'(\w+)="([^"]*)"', rest.split("}", 1)[0]))
        elif rest.startswith(" "):
            found = {}
        else:
            continue
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def ping_with_client_certificate(sidecar, pki):
    client = pymongo.MongoClient(
        "127.0.0.1", sidecar.port, directConnection=True, tls=True,
        tlsCAFile=str(pki["ca"]), tlsCertificateKeyFile=str(pki["client"]),
        serverSelectionTimeoutMS=8000, connectTimeoutMS=8000)
    try:
        return client.admin.command("ping")
    finally:
        client.close()


@pytest.fixture
def responder_port():
    return harness.free_port()


# --- stapling ----------------------------------------------------------------------------

def test_good_server_certificate_is_stapled(procs, tmp_path, responder_port):
    pki = ocsp_pki(tmp_path / "pki", responder_port)
    start_responder(procs, pki, responder_port)
    standin = procs.standin()
    metrics = f"127.0.0.1:{harness.free_port()}"
    sidecar = procs.sidecar(*tls_args(pki), upstream=standin.address, metrics=metrics)
    sidecar.wait_for_log("stapling a fresh OCSP response")

    shown = stapled(sidecar, pki)
    assert "OCSP Response Status: successful" in shown, shown
    assert "Cert Status: good" in shown, shown
    assert scrape(metrics, "tls_sidecar_ocsp_staple_status", status="good") == 1
    assert scrape(metrics, "tls_sidecar_ocsp_staple_next_update_timestamp_seconds") > time.time()

    status = ask(sidecar, cmd="status")
    assert status["ocsp"]["status"] == "good", status
    assert status["ocsp"]["responder"] == f"http://127.0.0.1:{responder_port}/"
    human = harness.run_checked(
        [str(harness.sidecar_binary()), "ctl", "--socket", str(tmp_path / "sidecar.sock"),
         "status"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert re.search(r"ocsp staple\s+good from http://127\.0\.0\.1", human.stdout), human.stdout


def test_revoked_server_certificate_is_stapled_as_revoked_with_a_warning(
        procs, tmp_path, responder_port):
    pki = ocsp_pki(tmp_path / "pki", responder_port)
    start_responder(procs, pki, responder_port, revoked=("server",))
    standin = procs.standin()
    sidecar = procs.sidecar(*tls_args(pki), upstream=standin.address)
    sidecar.wait_for_log("server certificate is REVOKED")

    shown = stapled(sidecar, pki)
    assert "Cert Status: revoked" in shown, shown
    warnings = ask(sidecar, cmd="status")["warnings"]
    assert any("revoked" in w for w in warnings), warnings


def test_staple_is_refreshed_before_its_next_update(procs, tmp_path, responder_port):
    pki = ocsp_pki(tmp_path / "pki", responder_port)
    # One minute of validity (openssl's shortest): the refresh is due halfway, at 30 s.
    start_responder(procs, pki, responder_port, validity=("-nmin", "1"))
    standin = procs.standin()
    metrics = f"127.0.0.1:{harness.free_port()}"
    sidecar = procs.sidecar(*tls_args(pki), upstream=standin.address, metrics=metrics)
    sidecar.wait_for_log("stapling a fresh OCSP response")
    first = scrape(metrics, "tls_sidecar_ocsp_staple_this_update_timestamp_seconds")
    next_update = scrape(metrics, "tls_sidecar_ocsp_staple_next_update_timestamp_seconds")
    next_refresh = scrape(metrics, "tls_sidecar_ocsp_staple_next_refresh_timestamp_seconds")
    assert first > 0 and first < next_refresh < next_update, (first, next_refresh, next_update)

    harness.wait_until(
        lambda: scrape(metrics, "tls_sidecar_ocsp_responder_requests_total",
                       purpose="staple", result="success") >= 2,
        timeout=next_update - time.time(), what="a second staple fetch before nextUpdate")
    assert time.time() < next_update
    assert scrape(metrics, "tls_sidecar_ocsp_staple_this_update_timestamp_seconds") > first
    assert "Cert Status: good" in stapled(sidecar, pki)


# --- client certificates (ingress) -------------------------------------------------------

def test_good_client_certificate_is_checked_and_accepted(procs, tmp_path, responder_port):
    pki = ocsp_pki(tmp_path / "pki", responder_port)
    start_responder(procs, pki, responder_port)
    standin = procs.standin()
    metrics = f"127.0.0.1:{harness.free_port()}"
    sidecar = procs.sidecar(*tls_args(pki), upstream=standin.address, metrics=metrics,
                            allow_without_certificates=False)
    assert ping_with_client_certificate(sidecar, pki)["ok"] == 1
    assert scrape(metrics, "tls_sidecar_ocsp_checks_total", result="good",
                  source="responder") >= 1
    assert scrape(metrics, "tls_sidecar_ocsp_soft_failures_total") == 0


def test_revoked_client_certificate_is_refused_with_a_counted_reason(
        procs, tmp_path, responder_port):
    pki = ocsp_pki(tmp_path / "pki", responder_port)
    start_responder(procs, pki, responder_port, revoked=("client",))
    standin = procs.standin()
    sidecar = procs.sidecar(*tls_args(pki), upstream=standin.address,
                            allow_without_certificates=False)
    with pytest.raises(pymongo.errors.PyMongoError):
        ping_with_client_certificate(sidecar, pki)
    assert rejected(sidecar, "certificate_revoked") >= 1
    sidecar.wait_for_log("peer certificate is revoked")


def test_unreachable_responder_soft_fails_accepts_and_counts(procs, tmp_path, responder_port):
    pki = ocsp_pki(tmp_path / "pki", responder_port)  # nothing listens on responder_port
    standin = procs.standin()
    metrics = f"127.0.0.1:{harness.free_port()}"
    sidecar = procs.sidecar(*tls_args(pki), upstream=standin.address, metrics=metrics,
                            allow_without_certificates=False)
    assert ping_with_client_certificate(sidecar, pki)["ok"] == 1
    assert scrape(metrics, "tls_sidecar_ocsp_soft_failures_total") >= 1
    assert scrape(metrics, "tls_sidecar_ocsp_checks_total", result="error",
                  source="responder") >= 1
    sidecar.wait_for_log("accepted (soft-fail)")


def test_unreachable_responder_refuses_in_hard_fail_mode(procs, tmp_path, responder_port):
    pki = ocsp_pki(tmp_path / "pki", responder_port)
    standin = procs.standin()
    sidecar = procs.sidecar(*tls_args(pki), "--ocspHardFail", upstream=standin.address,
                            allow_without_certificates=False)
    with pytest.raises(pymongo.errors.PyMongoError):
        ping_with_client_certificate(sidecar, pki)
    assert rejected(sidecar, "ocsp_unavailable") >= 1


def test_ocsp_disabled_checks_nothing(procs, tmp_path, responder_port):
    pki = ocsp_pki(tmp_path / "pki", responder_port)
    start_responder(procs, pki, responder_port, revoked=("client", "server"))
    standin = procs.standin()
    sidecar = procs.sidecar(*tls_args(pki), "--setParameter", "ocspEnabled=false",
                            upstream=standin.address, allow_without_certificates=False)
    assert ping_with_client_certificate(sidecar, pki)["ok"] == 1
    assert "OCSP response: no response sent" in stapled(sidecar, pki)
    assert ask(sidecar, cmd="status")["ocsp"]["stapling"] is False


# --- peers (egress) ----------------------------------------------------------------------

def test_revoked_peer_certificate_fails_egress_without_plaintext_fallback(
        procs, tmp_path, responder_port):
    pki = ocsp_pki(tmp_path / "pki", responder_port)
    start_responder(procs, pki, responder_port, revoked=("server",))
    peer_standin = procs.standin(name="peer-standin")
    peer = procs.sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["server"],
                         "--tlsCAFile", pki["ca"], upstream=peer_standin.address, name="peer")
    egress_port = harness.free_port()
    config = harness.egress_config(pki, egress_port, f"localhost:{peer.port}")
    local_standin = procs.standin(name="local-standin")
    local = procs.sidecar(upstream=local_standin.address, config=config, name="local")
    harness.wait_until(lambda: harness.is_listening(egress_port), what="egress listener")

    client = pymongo.MongoClient("127.0.0.1", egress_port, directConnection=True,
                                 serverSelectionTimeoutMS=5000, connectTimeoutMS=5000)
    try:
        with pytest.raises(pymongo.errors.PyMongoError):
            client.repl.e2e.insert_one({"marker": uuid.uuid4().hex})
    finally:
        client.close()
    assert rejected(local, "certificate_revoked") >= 1
    assert ask(peer, cmd="status")["accepted"]["plaintext"] == 0
