"""SCRAM authentication passes through the sidecar (README "Known limits", SPEC §11).

The stand-in mongod runs with --auth, so it refuses every command but the handshake's until
the connection has authenticated with SCRAM-SHA-256 (tests/support/scram.h, checked against
RFC 7677's test vector in scram_test). Drivers authenticate as they do against mongod 4.4+:
saslSupportedMechs and speculativeAuthenticate in the hello, then saslContinue. The sidecar
neither knows nor touches any of it, which is the claim: pymongo and the Node.js driver
authenticate through it in every mode, over every transport the mode accepts, and a wrong
password fails with MongoDB's own error.
"""

import itertools
import json
import subprocess
import time
import urllib.parse
import uuid

import pymongo
import pytest

import harness

MODES = ("disabled", "allowTLS", "preferTLS", "requireTLS")
ACCEPTS = {
    "disabled": ("plaintext",),
    "allowTLS": ("plaintext", "tls"),
    "preferTLS": ("plaintext", "tls"),
    "requireTLS": ("tls",),
}
CASES = [(mode, transport) for mode in MODES for transport in ACCEPTS[mode]]
CLIENTS = ("pymongo", "node")
USER = "app"
PASSWORD = "s3cret-pw"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, pki):
    """One stand-in that requires authentication, and a sidecar per mode in front of it.
    No CAFile: the sidecars ask no client certificate, which is beside the point here."""
    group = harness.ProcessGroup(tmp_path_factory.mktemp("auth"))
    try:
        standin = group.standin("--auth", f"{USER}:{PASSWORD}")
        sidecars = {}
        for mode in MODES:
            args = ["--tlsMode", mode]
            if mode != "disabled":
                args += ["--tlsCertificateKeyFile", pki["server"]]
            sidecars[mode] = group.sidecar(*args, upstream=standin.address,
                                           name=f"sidecar-{mode}")
        yield standin, sidecars, group
    finally:
        print(group.describe())
        group.stop_all()
    reports = group.sanitizer_reports()
    assert not reports, "\n\n".join(reports)


def _pymongo(port, transport, ca, marker, password=PASSWORD, credentials=True):
    options = dict(serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, appname="e2e-auth")
    if credentials:
        options.update(username=USER, password=password, authSource="admin")
    if transport == "tls":
        options.update(tls=True, tlsCAFile=str(ca))
    client = pymongo.MongoClient("127.0.0.1", port, **options)
    try:
        collection = client.e2e.auth
        collection.insert_one({"marker": marker})
        found = collection.find_one({"marker": marker})
        return found is not None and found["marker"] == marker, repr(found)
    except pymongo.errors.PyMongoError as error:
        return False, f"{type(error).__name__}: {error} {getattr(error, 'details', '')}"
    finally:
        client.close()


def _node(port, transport, ca, marker, password=PASSWORD):
    params = {"serverSelectionTimeoutMS": "5000", "authSource": "admin"}
    if transport == "tls":
        params.update(tls="true", tlsCAFile=str(ca))
    uri = (f"mongodb://{USER}:{urllib.parse.quote(password, safe='')}@127.0.0.1:{port}/"
           f"?{urllib.parse.urlencode(params)}")
    result = harness.node_crud(uri, marker)
    return result.returncode == 0 and '"ok":true' in result.stdout, result.stdout + result.stderr


def _crud(client, port, transport, ca, marker, password=PASSWORD):
    if client == "pymongo":
        return _pymongo(port, transport, ca, marker, password)
    return _node(port, transport, ca, marker, password)


def _stored(standin, marker):
    """Whether `marker` reached the stand-in, read directly with credentials."""
    direct = pymongo.MongoClient("127.0.0.1", standin.port, username=USER, password=PASSWORD,
                                 authSource="admin", serverSelectionTimeoutMS=5000)
    try:
        for name in ("auth", "node"):
            if direct.e2e[name].find_one({"marker": marker}) is not None:
                return True
        return False
    finally:
        direct.close()


def test_the_standin_refuses_commands_before_authentication(deployment, pki):
    # Without this, a driver that skipped authentication would pass the tests below.
    standin, sidecars, group = deployment
    ok, text = _pymongo(standin.port, "plaintext", pki["ca"], "no-credentials",
                        credentials=False)
    assert not ok, text
    assert "requires authentication" in text, text
    ok, text = _pymongo(sidecars["allowTLS"].port, "tls", pki["ca"], "no-credentials",
                        credentials=False)
    assert not ok, text
    assert "requires authentication" in text, text


@pytest.mark.parametrize("mode,transport,client",
                         [(m, t, c) for (m, t), c in itertools.product(CASES, CLIENTS)])
def test_scram_sha_256_through_the_sidecar(deployment, pki, mode, transport, client):
    standin, sidecars, group = deployment
    marker = f"{client}-{mode}-{transport}-{uuid.uuid4().hex[:8]}"
    ok, text = _crud(client, sidecars[mode].port, transport, pki["ca"], marker)
    assert ok, f"{client} over {transport} in {mode}:\n{text}\n{group.describe()}"
    assert _stored(standin, marker), marker


@pytest.mark.parametrize("mode,transport,client",
                         [(m, t, c) for (m, t), c in itertools.product(
                             [("allowTLS", "plaintext"), ("requireTLS", "tls")], CLIENTS)])
def test_a_wrong_password_fails_with_mongodbs_error(deployment, pki, mode, transport, client):
    standin, sidecars, group = deployment
    marker = f"wrong-{client}-{mode}-{uuid.uuid4().hex[:8]}"
    ok, text = _crud(client, sidecars[mode].port, transport, pki["ca"], marker,
                     password="not-the-password")
    assert not ok, text
    # mongod's reply, passed on untouched: code 18, "Authentication failed."
    assert "Authentication failed" in text, text
    if client == "pymongo":
        assert "18" in text, text
    assert not _stored(standin, marker)
    assert sidecars[mode].alive()


def _accepted(sidecar):
    path = sidecar.stderr_path.parent / f"{sidecar.name}.sock"
    result = subprocess.run([str(harness.sidecar_binary()), "ctl", "--socket", str(path),
                             "--json", "status"], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)["accepted"]


def test_scram_between_members_through_tls_egress(procs, pki):
    """What keyFile authentication needs: a member authenticates to a peer over the local
    sidecar's egress, which originates TLS (preferTLS) to the peer's sidecar (requireTLS)."""
    standin = procs.standin("--auth", f"{USER}:{PASSWORD}", name="peer-standin")
    peer = procs.sidecar("--tlsMode", "requireTLS", "--tlsCertificateKeyFile", pki["server"],
                         upstream=standin.address, name="peer")
    egress_port = harness.free_port()
    local_standin = procs.standin(name="local-standin")
    config = harness.egress_config(pki, egress_port, f"127.0.0.1:{peer.port}")
    node = procs.sidecar(upstream=local_standin.address, config=config, name="local")
    deadline = time.monotonic() + 10
    while not harness.is_listening(egress_port):
        assert node.alive() and time.monotonic() < deadline, node.describe()
        time.sleep(0.02)
    before = _accepted(peer)["tls"]
    for password, expected in ((PASSWORD, True), ("not-the-password", False)):
        client = pymongo.MongoClient("127.0.0.1", egress_port, directConnection=True,
                                     username=USER, password=password, authSource="admin",
                                     serverSelectionTimeoutMS=5000)
        try:
            if expected:
                client.admin.command("ping")
                client.e2e.members.insert_one({"marker": "member"})
                assert client.e2e.members.find_one({"marker": "member"}) is not None
            else:
                with pytest.raises(pymongo.errors.OperationFailure) as failure:
                    client.e2e.members.find_one({})
                assert failure.value.code == 18, failure.value.details
        finally:
            client.close()
    # Both went to the peer over TLS: its requireTLS would have refused plaintext.
    assert _accepted(peer)["tls"] >= before + 2


def test_drivers_authenticate_speculatively_in_the_hello_through_the_sidecar(procs, pki):
    """Both drivers put their first SCRAM step in the hello (speculativeAuthenticate, MongoDB
    4.4+), which the sidecar's sniffing and hello inspection see first: the stand-in's log
    (--verbose) shows every exchange finished by saslContinue with no saslStart."""
    standin = procs.standin("--auth", f"{USER}:{PASSWORD}", "--verbose")
    sidecar = procs.sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["server"],
                            upstream=standin.address)
    for client in CLIENTS:
        for transport in ("plaintext", "tls"):
            ok, text = _crud(client, sidecar.port, transport, pki["ca"],
                             f"speculative-{client}-{transport}-{uuid.uuid4().hex[:8]}")
            assert ok, text
    log = standin.stderr_text()
    finished = log.count("saslContinue -> ok 1")
    assert finished >= 4, log
    assert "saslStart" not in log, log
