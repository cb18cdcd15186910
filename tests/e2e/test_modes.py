"""The four modes of SPEC §2 seen by real drivers: pymongo, the Node.js driver and mongosh
doing CRUD through the sidecar, over plaintext and over TLS verified against the test CA,
and the client-readable rejections of SPEC §4."""

import itertools
import uuid

import pymongo
import pytest

import clients
import harness

MODES = ("disabled", "allowTLS", "preferTLS", "requireTLS")

# What ingress accepts in each mode: (plaintext, tls).
ACCEPTS = {
    "disabled": (True, False),
    "allowTLS": (True, True),
    "preferTLS": (True, True),
    "requireTLS": (False, True),
}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, pki):
    """One stand-in mongod and one sidecar per mode in front of it, shared by this module."""
    group = harness.ProcessGroup(tmp_path_factory.mktemp("modes"))
    try:
        standin = group.standin()
        sidecars = {}
        for mode in MODES:
            args = ["--tlsMode", mode]
            if mode != "disabled":
                args += ["--tlsCertificateKeyFile", pki["server"], "--tlsCAFile", pki["ca"]]
            sidecars[mode] = group.sidecar(*args, upstream=standin.address, name=f"sidecar-{mode}")
        yield standin, sidecars, group
    finally:
        group.stop_all()


def _marker(*parts):
    return "-".join(parts) + "-" + uuid.uuid4().hex[:8]


@pytest.mark.parametrize("mode,client,transport",
                         list(itertools.product(MODES, clients.CLIENTS, ("plaintext", "tls"))))
def test_crud_through_sidecar(deployment, pki, tmp_path, mode, client, transport):
    standin, sidecars, group = deployment
    tls = transport == "tls"
    marker = _marker(mode, client, transport)
    outcome = clients.crud(client, sidecars[mode].port, tls, pki["ca"], marker, tmp_path)
    accepted = ACCEPTS[mode][1 if tls else 0]
    context = f"{client} over {transport} in {mode}:\n{outcome.text}\n{group.describe()}"
    if accepted:
        assert outcome.ok, context
        # The document reached the stand-in behind the sidecar, not some other server.
        direct = pymongo.MongoClient("127.0.0.1", standin.port, serverSelectionTimeoutMS=5000)
        try:
            assert direct.e2e[client].find_one({"marker": marker}) is not None, context
        finally:
            direct.close()
    elif tls:
        # disabled: the ClientHello is answered with a handshake_failure alert.
        assert not outcome.ok, context
        assert "handshake failure" in outcome.text.lower(), context
    else:
        # requireTLS: the plaintext hello is answered with an error the driver shows.
        assert not outcome.ok, context
        assert "requires TLS" in outcome.text, context


@pytest.mark.parametrize("client,transport",
                         list(itertools.product(clients.CLIENTS, ("plaintext", "tls"))))
def test_stopped_upstream_is_named_in_the_driver_error(procs, pki, tmp_path, client, transport):
    standin = procs.standin()
    sidecar = procs.sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["server"],
                            "--tlsCAFile", pki["ca"], upstream=standin.address)
    tls = transport == "tls"
    before = clients.crud("pymongo", sidecar.port, tls, pki["ca"], _marker("before"), tmp_path)
    assert before.ok, before.text
    standin.stop()

    outcome = clients.crud(client, sidecar.port, tls, pki["ca"], _marker("after"), tmp_path)
    assert not outcome.ok, outcome.text
    text = outcome.text.lower()
    assert "upstream" in text and "connection refused" in text, outcome.text
    assert sidecar.alive()
    sidecar.wait_for_log("upstream_unavailable")


def test_rejections_are_logged_with_the_client_address(procs, pki, tmp_path):
    standin = procs.standin()
    sidecar = procs.sidecar("--tlsMode", "requireTLS", "--tlsCertificateKeyFile", pki["server"],
                            "--tlsCAFile", pki["ca"], upstream=standin.address)
    outcome = clients.crud("pymongo", sidecar.port, False, pki["ca"], _marker("plain"), tmp_path)
    assert not outcome.ok
    line = sidecar.wait_for_log("plaintext_in_requireTLS")
    assert "127.0.0.1" in line, line
    assert "e2e-pymongo" in line, line
