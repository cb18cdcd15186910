"""`readiness` (SPEC §6) on the real binary, against every gate case that e2e_control walks:
whenever readiness says ready, setMode without force succeeds; whenever a gate refuses,
readiness said not ready with the same reasons. Also `tls-sidecar ctl readiness` (exit
status 0 when ready, 1 when not) and tls_sidecar_next_mode_ready on /metrics."""

import json
import subprocess
import urllib.request

import pymongo

import harness
from harness import wait_until


def control_path(sidecar):
    return sidecar.stderr_path.parent / f"{sidecar.name}.sock"


def ask(sidecar, **request):
    answer = harness.control_request(control_path(sidecar), request)
    assert "ok" in answer, answer
    return answer


def ctl(sidecar, *args):
    return harness.run_checked(
        [str(harness.sidecar_binary()), "ctl", "--socket", str(control_path(sidecar)), *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


def start(procs, mode, pki=None, name="sidecar", config=None, metrics=""):
    standin = procs.standin(name=f"{name}-standin")
    args = [] if config is not None else ["--tlsMode", mode]
    if pki is not None and config is None:
        args += ["--tlsCertificateKeyFile", pki["server"], "--tlsCAFile", pki["ca"]]
    return procs.sidecar(*args, upstream=standin.address, config=config, name=name,
                         metrics=metrics)


def plaintext_client(port, appname):
    return pymongo.MongoClient("127.0.0.1", port, appname=appname, directConnection=True,
                               serverSelectionTimeoutMS=4000, connectTimeoutMS=4000,
                               maxPoolSize=1)


def agree(sidecar, mode):
    """Asks readiness about `mode`, then setMode (no force), and checks they agree; returns
    both answers."""
    readiness = ask(sidecar, cmd="readiness", mode=mode)
    assert readiness["ok"] is True and isinstance(readiness["ready"], bool), readiness
    before = ask(sidecar, cmd="status")["mode"]
    assert readiness["mode"] == before, readiness
    changed = ask(sidecar, cmd="setMode", mode=mode)
    assert readiness["ready"] == changed["ok"], (readiness, changed)
    if changed["ok"]:
        assert readiness["reasons"] == [] and readiness["verdict"] != "not ready", readiness
    else:
        assert readiness["verdict"] == "not ready", readiness
        assert readiness["reasonCodes"] == changed["reasonCodes"], (readiness, changed)
        assert readiness["reasons"], readiness
        for reason in readiness["reasons"]:
            assert reason in changed["error"], (reason, changed["error"])
        assert ask(sidecar, cmd="status")["mode"] == before
    return readiness, changed


def test_readiness_agrees_with_set_mode_on_the_transition_rules(procs, pki):
    sidecar = start(procs, "allowTLS", pki)
    same, _ = agree(sidecar, "allowTLS")
    assert same["ready"] is True and "already runs allowTLS" in same["note"], same
    skip, _ = agree(sidecar, "requireTLS")
    assert skip["reasonCodes"] == ["not_one_step"] and "skips preferTLS" in skip["reasons"][0]
    down, _ = agree(sidecar, "disabled")
    assert down["reasonCodes"] == ["not_one_step"] and "step down" in down["reasons"][0]
    up, changed = agree(sidecar, "preferTLS")
    assert up["ready"] is True and changed["from"] == "allowTLS", (up, changed)
    back, _ = agree(sidecar, "allowTLS")
    assert back["ready"] is False
    final, _ = agree(sidecar, "requireTLS")
    assert final["ready"] is True
    # At the last step there is no next one: ready, and says so.
    last = ask(sidecar, cmd="readiness")
    assert last["ready"] is True and last["nextMode"] == "requireTLS", last
    assert "last step" in last["note"], last


def test_readiness_agrees_on_the_certificate_rule(procs, pki):
    bare = start(procs, "disabled", name="bare")
    refused, _ = agree(bare, "allowTLS")
    assert refused["reasonCodes"] == ["no_certificate"], refused
    assert "net.tls.certificateKeyFile" in refused["reasons"][0], refused
    with_cert = start(procs, "disabled", pki, name="with-cert")
    allowed, _ = agree(with_cert, "allowTLS")
    assert allowed["ready"] is True, allowed


def test_readiness_agrees_on_the_plaintext_gate_with_a_pymongo_client(procs, pki):
    sidecar = start(procs, "preferTLS", pki)
    client = plaintext_client(sidecar.port, "billing-service")
    client.e2e.gate.insert_one({"x": 1})

    # Without a mode: the next step, requireTLS.
    implied = ask(sidecar, cmd="readiness")
    assert implied["nextMode"] == "requireTLS" and implied["ready"] is False, implied
    blocked, refused = agree(sidecar, "requireTLS")
    assert blocked["reasonCodes"] == ["plaintext_clients"], blocked
    rows = [r for r in blocked["plaintextClients"] if r["application"] == "billing-service"]
    assert rows and rows[0]["address"] == "127.0.0.1", blocked
    assert refused["plaintextClients"] == blocked["plaintextClients"], (blocked, refused)

    shown = ctl(sidecar, "readiness")
    assert shown.returncode == 1, shown
    assert "preferTLS -> requireTLS: not ready" in shown.stdout, shown.stdout
    assert "billing-service" in shown.stdout, shown.stdout
    assert "tls-sidecar ctl drain-plaintext SECONDS" in shown.stdout, shown.stdout
    as_json = ctl(sidecar, "readiness", "requireTLS", "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["ready"] is False, as_json

    client.close()
    wait_until(lambda: ask(sidecar, cmd="status")["active"]["plaintext"] == 0,
               what="the plaintext connections to close")
    shown = ctl(sidecar, "readiness")
    assert shown.returncode == 0 and "preferTLS -> requireTLS: ready" in shown.stdout, shown
    allowed, changed = agree(sidecar, "requireTLS")
    assert allowed["ready"] is True and changed["forced"] is False, (allowed, changed)


def test_readiness_agrees_on_the_preflight_rule(procs, pki):
    egress_port = harness.free_port()
    nobody = harness.free_port()
    config = f"""
[net.tls]
mode = "allowTLS"
certificateKeyFile = "{pki['server']}"
CAFile = "{pki['ca']}"
allowConnectionsWithoutCertificates = true

[[egress.peers]]
listen = "127.0.0.1:{egress_port}"
target = "127.0.0.1:{nobody}"
"""
    sidecar = start(procs, "allowTLS", pki, config=config)
    refused, _ = agree(sidecar, "preferTLS")
    assert refused["reasonCodes"] == ["no_preflight"], refused
    assert "tls-sidecar ctl preflight preferTLS" in refused["reasons"][0], refused
    failed = ask(sidecar, cmd="preflight", mode="preferTLS")
    assert failed["ok"] is False, failed
    still, _ = agree(sidecar, "preferTLS")
    assert "the last preflight failed" in still["reasons"][0], still


def test_next_mode_ready_metric_follows_the_gate(procs, pki):
    metrics = f"127.0.0.1:{harness.free_port()}"
    sidecar = start(procs, "preferTLS", pki, metrics=metrics)

    def series():
        with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as response:
            body = response.read().decode()
        return [line for line in body.splitlines()
                if line.startswith("tls_sidecar_next_mode_ready{")]

    wait_until(lambda: series() == ['tls_sidecar_next_mode_ready{next_mode="requireTLS",'
                                    'reason="none"} 1'], what="ready for requireTLS")
    client = plaintext_client(sidecar.port, "metric-app")
    client.admin.command("ping")
    wait_until(lambda: series() == ['tls_sidecar_next_mode_ready{next_mode="requireTLS",'
                                    'reason="plaintext_clients"} 0'],
               what="the plaintext gate in the metric")
    client.close()
    wait_until(lambda: series() == ['tls_sidecar_next_mode_ready{next_mode="requireTLS",'
                                    'reason="none"} 1'], what="ready again")


def test_topology_warning_reaches_readiness(procs):
    # The stand-in's replica set advertises mongod's own address: drivers would go around
    # the sidecar. Not a gate of setMode, so ready, with the warning to act on.
    standin = procs.standin("--replSet", "rs0")
    sidecar = procs.sidecar("--tlsMode", "disabled", upstream=standin.address)
    sidecar.wait_for_log("which is this host but not the sidecar", timeout=15)
    answer = ask(sidecar, cmd="readiness")
    assert answer["nextMode"] == "allowTLS" and answer["ready"] is False, answer
    assert answer["reasonCodes"] == ["no_certificate"], answer
    assert "topology" in answer["warningCodes"], answer
    topology = answer["warnings"][answer["warningCodes"].index("topology")]
    assert standin.address in topology, topology
    shown = ctl(sidecar, "readiness")
    assert shown.returncode == 1 and "warning: " in shown.stdout, shown
    assert standin.address in shown.stdout, shown.stdout
