"""Egress (SPEC §1, §2) and preflight (SPEC §6) with two real sidecars on loopback: a local
one whose [[egress.peers]] listener pymongo dials as mongod would, and the peer's sidecar in
front of its own stand-in mongod. What travels between them is read from the peer's
accepted counts by transport; refusals from the local sidecar's log and counters."""

import os
import shutil
import pathlib
import subprocess
import time
import urllib.request
import uuid

import pymongo
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

import harness


# --- helpers ---------------------------------------------------------------------------

def ask(sidecar, **request):
    """Sends one request on the sidecar's control socket; returns the parsed answer."""
    answer = harness.control_request(sidecar.stderr_path.parent / f"{sidecar.name}.sock",
                                     request)
    assert "ok" in answer, answer
    if answer["ok"] is False:
        assert isinstance(answer.get("error"), str) and answer["error"], answer
    return answer


def ctl(sidecar, *args):
    path = sidecar.stderr_path.parent / f"{sidecar.name}.sock"
    return harness.run_checked(
        [str(harness.sidecar_binary()), "ctl", "--socket", str(path), *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def accepted(sidecar):
    """Ingress connections the sidecar admitted, by transport."""
    return ask(sidecar, cmd="status")["accepted"]


def rejected(sidecar, reason):
    return ask(sidecar, cmd="status")["rejected"].get(reason, 0)


def tls_args(pki):
    return ["--tlsCertificateKeyFile", pki["server"], "--tlsCAFile", pki["ca"]]


def peer(procs, pki, mode, name="peer", metrics=""):
    """The peer node: a stand-in mongod behind a sidecar in `mode`."""
    standin = procs.standin(name=f"{name}-standin")
    args = ["--tlsMode", mode] + (tls_args(pki) if mode != "disabled" else [])
    return standin, procs.sidecar(*args, upstream=standin.address, name=name, metrics=metrics)


def ingress_handshakes(metrics_address):
    """tls_sidecar_tls_handshakes_total{direction="ingress"} by TLS version, scraped."""
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as response:
        text = response.read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("tls_sidecar_tls_handshakes_total{") and \
                'direction="ingress"' in line:
            version = line.split('version="', 1)[1].split('"', 1)[0]
            counts[version] = counts.get(version, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def common_name(pem_file):
    certificate = x509.load_pem_x509_certificate(pathlib.Path(pem_file).read_bytes())
    return certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def local(procs, pki, mode, target, ca=None, name="local", extra=""):
    """The local node's sidecar with one egress peer `target` ("host:port"); returns it and
    the port of its egress listener."""
    egress_port = harness.free_port()
    standin = procs.standin(name=f"{name}-standin")
    config = harness.egress_config(pki, egress_port, target, mode=mode, ca=ca, tls_extra=extra)
    sidecar = procs.sidecar(upstream=standin.address, config=config, name=name)
    harness_wait_port(egress_port, sidecar)
    return sidecar, egress_port


def harness_wait_port(port, sidecar, timeout=10):
    deadline = time.monotonic() + timeout
    while not harness.is_listening(port):
        assert sidecar.alive(), sidecar.describe()
        assert time.monotonic() < deadline, f"egress listener :{port} not up\n{sidecar.describe()}"
        time.sleep(0.02)


def through_egress(port, timeout_ms=5000):
    """A pymongo client that dials the egress listener as the local mongod would."""
    return pymongo.MongoClient("127.0.0.1", port, directConnection=True, appname="egress-e2e",
                               serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)


def round_trip(port):
    """Inserts a marker through the egress listener and reads it back."""
    marker = uuid.uuid4().hex
    client = through_egress(port)
    try:
        client.repl.e2e.insert_one({"marker": marker})
        assert client.repl.e2e.find_one({"marker": marker})["marker"] == marker
    finally:
        client.close()
    return marker


# --- egress ----------------------------------------------------------------------------

def test_allow_tls_sends_plaintext_and_prefer_tls_sends_tls_to_new_connections(procs, pki):
    peer_metrics = f"127.0.0.1:{harness.free_port()}"
    peer_standin, peer_sidecar = peer(procs, pki, "allowTLS", metrics=peer_metrics)
    node, egress = local(procs, pki, "allowTLS", f"127.0.0.1:{peer_sidecar.port}")

    # allowTLS: the bytes reach the peer's sidecar in plaintext, and its mongod stores them.
    before = accepted(peer_sidecar)
    marker = round_trip(egress)
    after = accepted(peer_sidecar)
    assert after["plaintext"] > before["plaintext"], (before, after)
    assert after["tls"] == before["tls"], (before, after)
    direct = pymongo.MongoClient("127.0.0.1", peer_standin.port, serverSelectionTimeoutMS=5000)
    assert direct.repl.e2e.find_one({"marker": marker}) is not None
    direct.close()

    # A connection opened before the switch stays as it was (plaintext to the peer).
    old = through_egress(egress)
    old.admin.command("ping")

    # preferTLS needs a passed preflight first; then new egress connections use TLS.
    refused = ask(node, cmd="setMode", mode="preferTLS")
    assert refused["ok"] is False and "preflight" in refused["error"], refused
    assert ask(node, cmd="preflight", mode="preferTLS")["ok"] is True
    assert ask(node, cmd="setMode", mode="preferTLS")["ok"] is True

    handshakes_before = ingress_handshakes(peer_metrics)
    before = accepted(peer_sidecar)
    marker = round_trip(egress)
    after = accepted(peer_sidecar)
    assert after["tls"] > before["tls"], (before, after)
    assert after["plaintext"] == before["plaintext"], (before, after)

    # The peer's view of those connections: TLS 1.3 handshakes, one per TLS connection, from
    # a client that presented our cluster certificate and that the peer verified (the
    # clients table names only verified subjects) while the connection is open.
    handshakes_after = ingress_handshakes(peer_metrics)
    new_tls = after["tls"] - before["tls"]
    assert handshakes_after.get("TLSv1.3", 0) - handshakes_before.get("TLSv1.3", 0) == new_tls, \
        (handshakes_before, handshakes_after)
    assert sum(handshakes_after.values()) - sum(handshakes_before.values()) == new_tls
    held = through_egress(egress)
    try:
        held.admin.command("ping")
        rows = ask(peer_sidecar, cmd="clients", transport="tls")["clients"]
        assert any(f"CN={common_name(pki['cluster'])}" in (row.get("subject") or "").split(",")
                   for row in rows), rows
    finally:
        held.close()

    old.admin.command("ping")  # still served, still plaintext: no new peer connection
    assert accepted(peer_sidecar)["plaintext"] == after["plaintext"]
    old.close()


def test_peer_that_refuses_tls_gets_no_plaintext_fallback(procs, pki):
    _, peer_sidecar = peer(procs, pki, "disabled")
    node, egress = local(procs, pki, "allowTLS", f"127.0.0.1:{peer_sidecar.port}")
    round_trip(egress)  # plaintext works while the local node is in allowTLS
    plaintext_before = accepted(peer_sidecar)["plaintext"]

    # The preflight sees the refusal, so only force gets to preferTLS.
    check = ask(node, cmd="preflight", mode="preferTLS")
    assert check["ok"] is False, check
    assert check["peers"][0]["handshake"] is False
    assert "TLS" in check["peers"][0]["error"], check
    assert ask(node, cmd="setMode", mode="preferTLS")["ok"] is False
    assert ask(node, cmd="setMode", mode="preferTLS", force=True)["ok"] is True

    client = through_egress(egress, timeout_ms=2500)
    with pytest.raises(pymongo.errors.PyMongoError):
        client.admin.command("ping")
    client.close()

    node.wait_for_log("egress TLS handshake with peer failed")
    assert rejected(node, "egress_handshake_failed") >= 1
    assert rejected(peer_sidecar, "tls_in_disabled") >= 1
    # Nothing reached the peer in plaintext after the switch.
    assert accepted(peer_sidecar)["plaintext"] == plaintext_before


def test_unreachable_peer_is_counted(procs, pki):
    node, egress = local(procs, pki, "allowTLS", f"127.0.0.1:{harness.free_port()}")
    client = through_egress(egress, timeout_ms=1500)
    with pytest.raises(pymongo.errors.PyMongoError):
        client.admin.command("ping")
    client.close()
    node.wait_for_log("egress peer unavailable")
    assert rejected(node, "egress_peer_unavailable") >= 1


def test_a_named_peer_is_resolved_per_connection_and_verified_by_name(procs, pki):
    # "localhost" is looked up for each connection (a peer that moves is followed), and in
    # preferTLS the peer's certificate must carry that name.
    peer_standin, peer_sidecar = peer(procs, pki, "allowTLS")
    node, egress = local(procs, pki, "preferTLS", f"localhost:{peer_sidecar.port}")
    before = accepted(peer_sidecar)
    round_trip(egress)
    after = accepted(peer_sidecar)
    assert after["tls"] > before["tls"], (before, after)


def test_a_peer_name_is_looked_up_again_for_every_connection(procs, tmp_path):
    """The sidecar runs in a mount namespace of its own whose /etc/hosts is a file the test
    rewrites: the egress target's name moves from one stand-in to another between two
    connections, as a rescheduled pod's does, and the second connection follows it while
    the first stays where it was. No resolver outside this machine is involved."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private /etc/hosts")
    port = harness.free_port()
    first = procs.standin("--bind", "127.0.0.1", "--port", str(port), name="first")
    second = procs.standin("--bind", "127.0.0.2", "--port", str(port), name="second")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.0.1 moving-peer.test\n")
    egress_port = harness.free_port()
    config = tmp_path / "moving.toml"
    config.write_text(f"""
[net]
bindIp = "127.0.0.1"
port = {harness.free_port()}
upstream = "{first.address}"
[net.tls]
mode = "disabled"  # plaintext egress: the name, not TLS, is under test
[metrics]
listen = ""
[[egress.peers]]
listen = "127.0.0.1:{egress_port}"
target = "moving-peer.test:{port}"
""")
    # /etc/hosts is bind-mounted over in the new namespace only; it is rewritten in place
    # below (same inode), which the bind mount then shows.
    script = f'mount --bind "{hosts}" /etc/hosts && exec "$0" "$@"'
    child = harness.Child("moving", ["unshare", "--mount", "--propagation", "private", "sh",
                                     "-c", script, harness.sidecar_binary(), "--config", config,
                                     "--control-socket", tmp_path / "moving.sock"], tmp_path)
    procs.children.append(child)
    harness_wait_port(egress_port, child)

    def stored(standin, marker):
        direct = pymongo.MongoClient("127.0.0.1" if standin is first else "127.0.0.2", port,
                                     directConnection=True, serverSelectionTimeoutMS=5000)
        try:
            return direct.repl.e2e.find_one({"marker": marker}) is not None
        finally:
            direct.close()

    held = through_egress(egress_port)
    try:
        before = uuid.uuid4().hex
        held.repl.e2e.insert_one({"marker": before})
        assert stored(first, before) and not stored(second, before)

        with open(hosts, "r+") as f:  # in place: the bind mount follows the inode
            f.write("127.0.0.1 localhost\n127.0.0.2 moving-peer.test\n")
            f.truncate()
        after = round_trip(egress_port)  # a new client, so a new connection
        assert stored(second, after) and not stored(first, after), child.describe()

        # The connection made before the move stays with the first stand-in.
        kept = uuid.uuid4().hex
        held.repl.e2e.insert_one({"marker": kept})
        assert stored(first, kept) and not stored(second, kept)
    finally:
        held.close()


def test_a_peer_name_that_does_not_resolve_does_not_stop_start_up(procs, pki):
    node, egress = local(procs, pki, "allowTLS", "no-such-peer.invalid:27017")
    node.wait_for_log("egress peer does not resolve now")
    client = through_egress(egress, timeout_ms=1500)
    with pytest.raises(pymongo.errors.PyMongoError):
        client.admin.command("ping")
    client.close()
    node.wait_for_log("cannot resolve no-such-peer.invalid")
    assert rejected(node, "egress_peer_unavailable") >= 1


# --- preflight -------------------------------------------------------------------------

def test_preflight_passes_against_a_tls_peer(procs, pki):
    _, peer_sidecar = peer(procs, pki, "allowTLS")
    node, _ = local(procs, pki, "allowTLS", f"127.0.0.1:{peer_sidecar.port}")
    answer = ask(node, cmd="preflight", mode="preferSSL")
    assert answer["ok"] is True, answer
    assert answer["mode"] == "preferTLS"
    [row] = answer["peers"]
    assert row == {"target": f"127.0.0.1:{peer_sidecar.port}", "connected": True,
                   "handshake": True, "verification": "ok", "version": "TLSv1.3",
                   "error": ""}, row
    # The preflight's handshake was a real one on the peer.
    assert accepted(peer_sidecar)["tls"] >= 1

    table = ctl(node, "preflight", "preferTLS")
    assert table.returncode == 0, table.stderr
    assert "HANDSHAKE" in table.stdout and "TLSv1.3" in table.stdout, table.stdout
    # A plaintext mode only checks that the peer is reachable.
    plain = ask(node, cmd="preflight", mode="allowTLS")
    assert plain["ok"] is True and plain["transport"] == "plaintext"
    assert "handshake" not in plain["peers"][0]


def test_preflight_fails_clearly_against_a_plaintext_only_listener(procs, pki):
    standin = procs.standin(name="plain-standin")  # a mongod without TLS
    node, _ = local(procs, pki, "allowTLS", standin.address)
    answer = ask(node, cmd="preflight", mode="preferTLS")
    assert answer["ok"] is False, answer
    [row] = answer["peers"]
    assert row["connected"] is True and row["handshake"] is False, row
    assert "TLS" in row["error"] and "plaintext" in row["error"], row
    table = ctl(node, "preflight", "preferTLS")
    assert table.returncode == 1
    assert "refused" in table.stderr and standin.address in table.stdout, table


def test_preflight_fails_clearly_with_a_wrong_ca(procs, pki, tmp_path):
    other = harness.make_pki(tmp_path / "other-pki")
    _, peer_sidecar = peer(procs, pki, "allowTLS")
    node, _ = local(procs, pki, "allowTLS", f"127.0.0.1:{peer_sidecar.port}", ca=other["ca"])
    answer = ask(node, cmd="preflight", mode="requireTLS")
    assert answer["ok"] is False, answer
    [row] = answer["peers"]
    assert row["handshake"] is False
    assert row["verification"] not in (None, "ok"), row
    assert "certificate" in row["error"], row
    # And the gate holds: a failed preflight keeps preferTLS refused.
    refused = ask(node, cmd="setMode", mode="preferTLS")
    assert refused["ok"] is False and "the last preflight failed" in refused["error"], refused


def test_preflight_checks_the_peer_hostname(procs, pki):
    # The test certificates name localhost, 127.0.0.1 and ::1; a peer reached as 127.0.0.2
    # presents a valid chain for the wrong name.
    standin = procs.standin(name="peer-standin")
    port = harness.free_port()
    peer_sidecar = harness.Child(
        "peer", [harness.sidecar_binary(), "--bind_ip", "127.0.0.2", "--port", port,
                 "--metrics", "", "--control-socket", procs.workdir / "peer.sock",
                 "--upstream", standin.address, "--tlsMode", "allowTLS", *tls_args(pki)],
        procs.workdir)
    procs.children.append(peer_sidecar)
    harness_wait_port(port, peer_sidecar)
    node, _ = local(procs, pki, "allowTLS", f"127.0.0.2:{port}")
    answer = ask(node, cmd="preflight", mode="preferTLS")
    assert answer["ok"] is False, answer
    [row] = answer["peers"]
    assert row["handshake"] is False
    assert "mismatch" in (row["verification"] or "").lower(), row

    # allowInvalidHostnames accepts it, as mongod's option does.
    lenient, _ = local(procs, pki, "allowTLS", f"127.0.0.2:{port}", name="lenient",
                       extra="allowInvalidHostnames = true")
    assert ask(lenient, cmd="preflight", mode="preferTLS")["ok"] is True


# --- replication traffic of the stand-in through egress --------------------------------

def repl_stats(standin):
    client = pymongo.MongoClient("127.0.0.1", standin.port, directConnection=True,
                                 serverSelectionTimeoutMS=5000)
    try:
        return client.admin.command("replStats")
    finally:
        client.close()


def wait_for(predicate, what, timeout=15):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_member_traffic_moves_to_tls_after_prefer_tls_and_a_drain(procs, pki):
    """The stand-in's replication connection goes through the local egress listener; after
    preferTLS it stays plaintext (established connections are untouched) until the peer
    drains its plaintext connections, then comes back over TLS, without a failed heartbeat."""
    _, peer_sidecar = peer(procs, pki, "preferTLS")
    egress_port = harness.free_port()
    member = procs.standin("--peer", f"127.0.0.1:{egress_port}", name="member")
    config = f"""
[net.tls]
mode = "allowTLS"
certificateKeyFile = "{pki['server']}"
CAFile = "{pki['ca']}"
[[egress.peers]]
listen = "127.0.0.1:{egress_port}"
target = "127.0.0.1:{peer_sidecar.port}"
"""
    node = procs.sidecar(upstream=member.address, config=config, name="local")
    wait_for(lambda: repl_stats(member)["hellosOk"] >= 5, "heartbeats through egress")
    baseline = repl_stats(member)["failures"]  # connect failures before the sidecar listened
    assert accepted(peer_sidecar)["plaintext"] >= 1
    members = ask(peer_sidecar, cmd="clients")["clients"]
    assert [c["kind"] for c in members if c["transport"] == "plaintext"] == ["member"], members

    assert ask(node, cmd="preflight", mode="preferTLS")["ok"] is True
    assert ask(node, cmd="setMode", mode="preferTLS")["ok"] is True
    tls_before = accepted(peer_sidecar)["tls"]  # the preflight's own handshake
    # The window is five heartbeats (one every 100 ms) answered after the change, on
    # whatever connection the member uses: had preferTLS replaced it, they would have needed
    # a new connection, and that one would be TLS.
    stats = repl_stats(member)
    wait_for(lambda: repl_stats(member)["hellosOk"] >= stats["hellosOk"] + 5,
             "heartbeats after preferTLS")
    # The replication connection is still the old plaintext one.
    assert repl_stats(member)["reconnects"] == stats["reconnects"]
    assert accepted(peer_sidecar)["tls"] == tls_before

    drained = ask(peer_sidecar, cmd="drainPlaintext", overSeconds=0)
    assert drained["ok"] is True and drained["members"] == 1, drained
    wait_for(lambda: accepted(peer_sidecar)["tls"] > tls_before, "the member reconnecting over TLS")
    before = repl_stats(member)["hellosOk"]
    wait_for(lambda: repl_stats(member)["hellosOk"] >= before + 5, "heartbeats over TLS")
    stats = repl_stats(member)
    assert stats["reconnects"] >= 1, stats
    assert stats["failures"] == baseline, stats
    assert ask(peer_sidecar, cmd="status")["active"] == {"tls": 1, "plaintext": 0}
