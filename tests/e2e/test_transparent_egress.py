"""Transparent egress (README, deploy/egress-iptables.sh): in a network namespace of its own,
a client dials a peer's real address (10.78.0.2:27017), iptables REDIRECTs the connection to
the local sidecar's [egress.transparent] listener, the sidecar reads the original destination
with SO_ORIGINAL_DST and dials it, plaintext in allowTLS and TLS in preferTLS (verified against
the peer's certificate for that address, with the cluster certificate as the client's), and
marks its own socket so that the redirect leaves it alone instead of sending it back to the
listener in a loop.

Needs root and `ip netns` (CI has both); elsewhere it is reported as skipped, never passed."""

import os
import pathlib
import subprocess
import time
import uuid

import pytest

import harness

PEER_ADDRESS = "10.78.0.2"
PEER_PORT = 27017
TRANSPARENT_PORT = 15001
LOCAL_PORT = 27019  # not among the redirected ports
MARK = 0x5EC


def sh(*argv, ns=None):
    if ns is not None:
        argv = ("ip", "netns", "exec", ns) + argv
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60)


@pytest.fixture
def namespace():
    if os.geteuid() != 0:
        pytest.skip("needs root to make a network namespace and iptables rules")
    name = f"tlsc-te-{uuid.uuid4().hex[:6]}"
    if sh("ip", "netns", "add", name).returncode != 0:
        pytest.skip("cannot make a network namespace here (ip netns add failed)")
    try:
        for argv in (("ip", "link", "set", "lo", "up"),
                     ("ip", "addr", "add", f"{PEER_ADDRESS}/32", "dev", "lo")):
            result = sh(*argv, ns=name)
            assert result.returncode == 0, result.stderr
        yield name
    finally:
        sh("ip", "netns", "del", name)


def listening_in(child, port):
    """Whether a socket LISTENs on `port` in the network namespace of `child`'s process."""
    hex_port = f":{port:04X}"
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{child.proc.pid}/net/{table}") as f:
                next(f)
                if any(line.split()[1].endswith(hex_port) and line.split()[3] == "0A"
                       for line in f):
                    return True
        except (FileNotFoundError, ProcessLookupError):
            continue
    return False


def wait_listening(child, port, timeout=15):
    deadline = time.monotonic() + timeout
    while not listening_in(child, port):
        assert child.alive(), child.describe()
        assert time.monotonic() < deadline, f":{port} not listening\n{child.describe()}"
        time.sleep(0.05)


def standin_in(procs, ns, name):
    """The stand-in mongod on 127.0.0.1 of namespace `ns`; returns (child, address)."""
    child = harness.Child(name, ["ip", "netns", "exec", ns, harness.standin_binary(),
                                 "--port", "0"], procs.workdir, stdout=subprocess.PIPE)
    procs.children.append(child)
    line = child.proc.stdout.readline().decode()
    assert line.startswith("listening on "), f"{line!r}\n{child.describe()}"
    return child, line.split()[-1]


def sidecar_in(procs, ns, name, port, bind, upstream, config, metrics=""):
    config_path = procs.workdir / f"{name}.toml"
    config_path.write_text(config)
    child = harness.Child(
        name, ["ip", "netns", "exec", ns, harness.sidecar_binary(), "--config", config_path,
               "--bind_ip", bind, "--port", port, "--metrics", metrics,
               "--control-socket", procs.workdir / f"{name}.sock", "--upstream", upstream],
        procs.workdir)
    procs.children.append(child)
    wait_listening(child, port)
    return child


def ask(child, **request):
    """One request on the control socket (a path: reachable from any network namespace)."""
    return harness.control_request(child.stderr_path.parent / f"{child.name}.sock", request)


def accepted(child):
    return ask(child, cmd="status")["accepted"]


def egress_accepted(ns, metrics):
    """tls_sidecar_connections_accepted_total{direction="egress"}, all transports: the
    connections the local sidecar's egress listeners took (scraped inside the namespace)."""
    result = sh("curl", "-sf", f"http://{metrics}/metrics", ns=ns)
    assert result.returncode == 0, result
    total = 0
    for line in result.stdout.splitlines():
        if (line.startswith("tls_sidecar_connections_accepted_total{")
                and 'direction="egress"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def make_pki(directory, hosts):
    """`tls-sidecar certs init` for `hosts` (the peer's address included, which the sidecar
    verifies the peer's certificate against)."""
    result = harness.run_checked([harness.sidecar_binary(), "certs", "init", directory,
                                  "--hosts", hosts], stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 0, result
    return {role: pathlib.Path(directory) / f"{role}.pem"
            for role in ("ca", "server", "cluster", "client")}


def common_name(pem_file):
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    certificate = x509.load_pem_x509_certificate(pathlib.Path(pem_file).read_bytes())
    return certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


# The client, run inside the namespace: pymongo against the peer's real address, as mongod
# dials its replica set members. Prints the marker it stored and read back.
CLIENT = """
import sys, pymongo
client = pymongo.MongoClient(sys.argv[1], int(sys.argv[2]), directConnection=True,
                             serverSelectionTimeoutMS=10000, appname="transparent-e2e")
client.repl.e2e.insert_one({"marker": sys.argv[3]})
found = client.repl.e2e.find_one({"marker": sys.argv[3]})
print(found["marker"] if found else "missing")
client.close()
"""


def dial_peer(ns):
    marker = uuid.uuid4().hex
    result = sh("/usr/bin/python3", "-c", CLIENT, PEER_ADDRESS, PEER_PORT, marker, ns=ns)
    harness.assert_no_sanitizer_report("client", result.stderr)
    assert result.returncode == 0 and result.stdout.strip() == marker, result
    return marker


def stored_at(ns, standin_address, marker):
    host, port = standin_address.rsplit(":", 1)
    script = ("import sys, pymongo\n"
              "c = pymongo.MongoClient(sys.argv[1], int(sys.argv[2]), directConnection=True,"
              " serverSelectionTimeoutMS=5000)\n"
              "print(c.repl.e2e.find_one({'marker': sys.argv[3]}) is not None)\n")
    result = sh("/usr/bin/python3", "-c", script, host, port, marker, ns=ns)
    assert result.returncode == 0, result
    return result.stdout.strip() == "True"


def test_redirected_connections_reach_the_peer_plaintext_then_tls_without_a_loop(
        procs, namespace, tmp_path):
    ns = namespace
    pki = make_pki(tmp_path / "pki", f"localhost,127.0.0.1,{PEER_ADDRESS}")
    metrics = "127.0.0.1:9442"  # inside the namespace

    # The peer: its stand-in, and its sidecar on the peer's real address, accepting both.
    peer_standin, peer_standin_address = standin_in(procs, ns, "peer-standin")
    peer = sidecar_in(procs, ns, "peer", PEER_PORT, PEER_ADDRESS, peer_standin_address,
                      f'[net.tls]\nmode = "allowTLS"\ncertificateKeyFile = "{pki["server"]}"\n'
                      f'CAFile = "{pki["ca"]}"\nallowConnectionsWithoutCertificates = false\n')

    # The local node: its stand-in, and its sidecar with the transparent listener.
    _, local_standin_address = standin_in(procs, ns, "local-standin")
    local = sidecar_in(
        procs, ns, "local", LOCAL_PORT, "127.0.0.1", local_standin_address,
        f'[net.tls]\nmode = "allowTLS"\ncertificateKeyFile = "{pki["server"]}"\n'
        f'CAFile = "{pki["ca"]}"\nclusterFile = "{pki["cluster"]}"\n'
        f'[egress.transparent]\nlisten = "127.0.0.1:{TRANSPARENT_PORT}"\nmark = {MARK}\n',
        metrics=metrics)
    wait_listening(local, TRANSPARENT_PORT)

    script = harness.SOURCE_DIR / "deploy" / "egress-iptables.sh"
    result = sh(script, "--ports", PEER_PORT, "--listen-port", TRANSPARENT_PORT,
                "--mark", hex(MARK), ns=ns)
    assert result.returncode == 0, result.stderr

    # allowTLS: the redirected connection goes on to the peer in plaintext, and the data is
    # stored by the peer's mongod.
    assert egress_accepted(ns, metrics) == 0
    before = accepted(peer)
    marker = dial_peer(ns)
    after = accepted(peer)
    assert after["plaintext"] > before["plaintext"], (before, after)
    assert after["tls"] == before["tls"], (before, after)
    assert stored_at(ns, peer_standin_address, marker)
    plaintext_dials = after["plaintext"] - before["plaintext"]
    # Each redirected connection is one the local sidecar dialled once: its own dial was not
    # redirected back to its listener (a loop would multiply the transparent connections and
    # never reach the peer).
    assert egress_accepted(ns, metrics) == plaintext_dials, (before, after)

    # preferTLS: the same dial now reaches the peer over TLS, with our cluster certificate.
    assert ask(local, cmd="preflight", mode="preferTLS")["ok"] is True
    answer = ask(local, cmd="setMode", mode="preferTLS")
    assert answer["ok"] is True, answer
    before = accepted(peer)
    marker = dial_peer(ns)
    after = accepted(peer)
    assert after["tls"] > before["tls"], (before, after)
    assert after["plaintext"] == before["plaintext"], (before, after)
    assert stored_at(ns, peer_standin_address, marker)
    assert egress_accepted(ns, metrics) == plaintext_dials + after["tls"] - before["tls"]
    # The peer's view: a TLS client presenting the cluster certificate.
    clients = ask(peer, cmd="clients", transport="tls")
    assert clients["ok"] is True, clients
    cluster_cn = f"CN={common_name(pki['cluster'])}"
    assert any(cluster_cn in (row.get("subject") or "") for row in clients["clients"]), clients

    for child in (peer, local):
        assert child.alive(), child.describe()

