"""faults.py: the faults rolling_upgrade.py applies during the walk, each in a stage of its
own, what each is allowed to cost, and the per-stage checks and figures.

A fault hits one node's process. What it may cost is stated with it (Allowance): only the
replication links through that process (the node's stand-in to its peers, and its peers'
stand-ins to it), only in the fault's stage, and only the clients of that node may see their
driver retry. Everything else must be untouched: no retry, no reconnect, no failure.
"""

import json
import pathlib
import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes

import certgen
from cluster_net import CLIENT, NODES, PYTHON, address, links, log, sh, wait_until

TAKEOVER_NODE = 2
STANDIN_RESTART_NODE = 1
KILLED_NODE = 3
ROTATED_NODE = 2
TAKEOVER_SERIES = 'tls_sidecar_restarts_total{kind="takeover"}'
# Each replication link keeps at most kPeerMaxPending = 8 requests in flight, plus one being
# written: what one closed connection can make a stand-in send again.
RESENT_PER_RECONNECT = 9
MODE_KEYS = ("mode", "configuredMode", "modeSource")
HERE = pathlib.Path(__file__).resolve().parent


class Allowance:
    """What a stage's fault explains. `nodes`: replication links from or to these nodes may
    reconnect and resend (at most `per_link_reconnects` each when set, else any number), and
    fail only when `link_failures`; clients of these nodes may see retries, and documents
    missing after their insert up to `missing_per_client`. `total_reconnects` and
    `total_retried` bound the stage's reconnects and resends over every link (the drain)."""

    def __init__(self, nodes, per_link_reconnects=None, link_failures=False,
                 missing_per_client=0, total_reconnects=0, total_retried=0):
        self.nodes = tuple(nodes)
        self.per_link_reconnects = per_link_reconnects
        self.link_failures = link_failures
        self.missing_per_client = missing_per_client
        self.total_reconnects = total_reconnects
        self.total_retried = total_retried


def make_pki(pki):
    """A CA, one server certificate per node (naming its address), a cluster certificate
    for egress and a client certificate; the CA key stays in memory for a rotation."""
    pki.mkdir(parents=True)
    ca = certgen.Authority("tls-sidecar cluster walk CA")
    ca.write_certificate(pki / "ca.pem")
    for k in NODES:
        ca.issue(f"node{k}", hosts=[address(k)]).write(pki / f"node{k}.pem")
    ca.issue("cluster member", hosts=[address(k) for k in NODES]).write(pki / "cluster.pem")
    ca.issue("load client").write(pki / "client.pem")
    return ca


def begin_fault(walk, name, clients, allowance):
    """A fault's stage begins once every client works in it: what the fault does to a
    client's operation is counted in this stage."""
    walk.begin_stage(name, clients)
    walk.allowances[name] = allowance
    walk.load_progress(minimum=1)


def end_fault(walk):
    """The node serves again: every replication link answers heartbeats, every client of the
    stage makes progress."""
    walk.heartbeats(minimum=5)
    walk.load_progress()


# --- (a) hot restart -----------------------------------------------------------------------

def takeover(walk, clients):
    """Fault (a), between allowTLS and preferTLS: node 2's sidecar is replaced by a new
    process (`tls-sidecar --takeover`, same argv) while a prober opens connection after
    connection to its port: none may be refused or cut short. The old process drains and
    exits 0; the mode (set at run time) and the restart count carry over. Each member
    connection the old process carried is closed once (idle ones at once) and made again."""
    k = TAKEOVER_NODE
    begin_fault(walk, "takeover", clients, Allowance(nodes=[k], per_link_reconnects=1))
    cluster = walk.cluster
    before = cluster.metric(k, TAKEOVER_SERIES)
    mode_before = {key: cluster.ask(k, "status").get(key) for key in MODE_KEYS}
    stop, result = walk.work / "probe.stop", walk.work / "probe.json"
    probe = cluster.spawn("probe", CLIENT, [PYTHON, HERE / "probe.py", address(k), 27017,
                                            stop, result])

    def probed(minimum):
        try:
            return json.loads(result.read_text())["ok"] >= minimum
        except (FileNotFoundError, json.JSONDecodeError):
            return False
    wait_until(lambda: probed(5), "the prober's first replies")
    status = cluster.takeover(k)
    end_fault(walk)
    served = json.loads(result.read_text())["ok"]
    wait_until(lambda: probed(served + 5), "the prober's replies from the new process")
    stop.touch()
    probe.wait(timeout=30)
    counts = json.loads(result.read_text())
    mode_after = {key: cluster.ask(k, "status").get(key) for key in MODE_KEYS}
    after = cluster.metric(k, TAKEOVER_SERIES)
    walk.figures["takeover"] = dict(node=k, old_exit_status=status, probe=counts,
                                    restarts_total_before=before, restarts_total_after=after,
                                    **mode_after)
    log(f"node {k}: takeover: {walk.figures['takeover']}")
    if status != 0:
        walk.failures.append(f"takeover: the old sidecar of node {k} exited {status}, not 0")
    if counts["refused"] or counts["cut_short"] or counts["ok"] == 0:
        walk.failures.append(f"takeover: node {k}'s port refused or cut connections: {counts}")
    # The mode was set at run time (the file still says disabled): the new process
    # continues it, and where it came from.
    if mode_after != mode_before or mode_after["mode"] != "allowTLS":
        walk.failures.append(f"takeover: node {k} went from {mode_before} to {mode_after}")
    if before != 0 or after != 1:
        walk.failures.append(f"takeover: {TAKEOVER_SERIES} went from {before} to {after}, "
                             f"not 0 to 1")


# --- (c) a stand-in mongod's restart -------------------------------------------------------

def restart_standin(walk, clients):
    """Fault (c), during preferTLS: node 1's stand-in mongod is stopped (SIGTERM) and started
    again with the same argv. While it is down its sidecar closes the connections it carried
    and answers new ones with an upstream error: the drivers of node 1's clients retry, the
    peers' links to node 1 reconnect and may fail (a heartbeat to a member that is down
    fails, as mongod's would), and node 1's own links start again in the new process. The
    stand-in persists nothing: a document inserted just before the restart and read just
    after it is gone (a real mongod keeps it), at most one per client of node 1."""
    k = STANDIN_RESTART_NODE
    begin_fault(walk, "mongod-restart", clients,
                Allowance(nodes=[k], link_failures=True, missing_per_client=1))
    status = walk.cluster.restart_standin(k)
    end_fault(walk)
    walk.figures["mongod_restart"] = dict(node=k, old_exit_status=status)
    log(f"node {k}: stand-in mongod restarted (it exited {status})")
    if status != 0:
        walk.failures.append(f"mongod-restart: node {k}'s stand-in exited {status}, not 0")


# --- (b) SIGKILL and a restart from the persisted configuration ---------------------------

def kill_sidecar(walk, clients):
    """Fault (b), after preferTLS: node 3 persists preferTLS, then its sidecar is killed
    (SIGKILL: no drain, every connection through it reset, the port closed until the new
    process binds it) and started with the same argv. It must come back in preferTLS, from
    its file. The drivers of node 3's clients retry; the links from and to node 3 reconnect
    and fail while nothing listens (refused connections, as to a member that is down)."""
    k = KILLED_NODE
    begin_fault(walk, "sidecar-kill", clients, Allowance(nodes=[k], link_failures=True))
    cluster = walk.cluster
    walk.step(k, "set-mode", "preferTLS", "--persist")
    text = cluster.config(k).read_text()
    if 'mode = "preferTLS"' not in text:
        walk.failures.append(f"sidecar-kill: persist left node {k}'s file with:\n{text}")
    status = cluster.kill_and_restart_sidecar(k)
    answer = cluster.ask(k, "status")
    came_back = {key: answer.get(key) for key in MODE_KEYS}
    walk.figures["sidecar_kill"] = dict(node=k, killed_status=status, **came_back)
    log(f"node {k}: sidecar killed ({status}) and started again: {came_back}")
    if came_back != {"mode": "preferTLS", "configuredMode": "preferTLS", "modeSource": "file"}:
        walk.failures.append(f"sidecar-kill: node {k} came back with {came_back}, not in "
                             f"preferTLS from its file")
    end_fault(walk)


# --- (d) certificate rotation --------------------------------------------------------------

def served_certificate(walk, k):
    """The certificate node k serves, as openssl s_client from the client namespace sees it
    (verified against the CA and the node's address): (serial, SHA-256 hex)."""
    result = sh("openssl", "s_client", "-connect", f"{address(k)}:27017", "-CAfile",
                walk.pki / "ca.pem", "-verify_return_error", "-verify_ip", address(k),
                ns=CLIENT, check=False, timeout=30)
    match = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                      result.stdout, re.S)
    if "Verify return code: 0 (ok)" not in result.stdout or match is None:
        raise RuntimeError(f"openssl s_client to node {k}:\n{result.stdout[-1500:]}"
                           f"{result.stderr[-500:]}")
    certificate = x509.load_pem_x509_certificate(match.group(0).encode())
    return certificate.serial_number, certificate.fingerprint(hashes.SHA256()).hex()


def new_tls_client_works(walk, k):
    """A new pymongo TLS client, from the client namespace, inserts and reads back one
    document on node k (it verifies the served certificate against the CA)."""
    code = (
        "import pymongo,sys\n"
        f"c=pymongo.MongoClient('{address(k)}',27017,directConnection=True,tls=True,"
        f"tlsCAFile='{walk.pki / 'ca.pem'}',serverSelectionTimeoutMS=10000)\n"
        "c.rotation.check.insert_one({'after':'rotation'})\n"
        "sys.exit(0 if c.rotation.check.find_one({'after':'rotation'}) else 1)\n")
    return sh(PYTHON, "-c", code, ns=CLIENT, check=False, timeout=60)


def rotate_certificate(walk, clients):
    """Fault (d), during requireTLS: node 2 gets a new key and certificate from the same CA,
    written over its certificate file (one rename), and `ctl reload` (as README's
    "Certificate rotation" says). The new certificate is served (openssl s_client: serial
    and SHA-256 change to the new file's), status names it, a new TLS client and a peer's
    preflight verify it, and the clients keep working on their connections."""
    k = ROTATED_NODE
    begin_fault(walk, "cert-rotation", clients, Allowance(nodes=()))
    cluster = walk.cluster
    path = walk.pki / f"node{k}.pem"
    old_file = x509.load_pem_x509_certificate(path.read_bytes())
    before = served_certificate(walk, k)
    leaf = walk.ca.issue(f"node{k}", hosts=[address(k)])
    leaf.write(path)
    cluster.ctl(k, "reload")
    after = served_certificate(walk, k)
    status = [c for c in cluster.ask(k, "status")["certificates"] if c.get("role") == "server"]
    client = new_tls_client_works(walk, k)
    walk.preflight(1 if k != 1 else 2, "preferTLS")
    end_fault(walk)
    new = (leaf.serial, leaf.certificate.fingerprint(hashes.SHA256()).hex())
    walk.figures["cert_rotation"] = dict(node=k, served_serial_before=hex(before[0]),
                                         served_serial_after=hex(after[0]),
                                         new_file_serial=hex(new[0]))
    log(f"node {k}: certificate rotated: {walk.figures['cert_rotation']}")
    if before[0] != old_file.serial_number:
        walk.failures.append(f"cert-rotation: node {k} served {before} before, not its file's")
    if after != new or after == before:
        walk.failures.append(f"cert-rotation: node {k} serves {after} after the reload, not "
                             f"the new certificate {new}")
    if [c.get("sha1", "").replace(":", "").lower() for c in status] != [leaf.sha1_hex()]:
        walk.failures.append(f"cert-rotation: status names {status}, not {leaf.sha1_hex()}")
    if client.returncode != 0:
        walk.failures.append(f"cert-rotation: a new TLS client failed on node {k}:\n"
                             f"{client.stdout}{client.stderr[-1500:]}")


# --- per stage: what happened, and whether the stage's fault explains it ------------------

def link_deltas(start, end):
    """{(from node, to node): {count: increase}} between two snapshots of every stand-in."""
    first, last = links(start), links(end)
    return {link: {key: value - first.get(link, {}).get(key, 0) for key, value in c.items()}
            for link, c in last.items()}


def client_counts(result, name):
    """{client: counts} of one stage, from load.py's result."""
    return {client: c["stages"][name] for client, c in result["clients"].items()
            if name in c["stages"]}


def check_replication(walk, name, deltas, allowance):
    """Replication links reconnect, resend or fail only where the stage's fault explains."""
    explained = allowance.nodes if allowance else ()
    for (src, dst), d in sorted(deltas.items()):
        what = f"{name}: replication link node {src} -> node {dst}"
        if src in explained or dst in explained:
            limit = allowance.per_link_reconnects
            if limit is not None and d["reconnects"] > limit:
                walk.failures.append(f"{what} reconnected {d['reconnects']} times, more than "
                                     f"the {limit} the fault explains")
            if limit is not None and d["retried"] > RESENT_PER_RECONNECT * d["reconnects"]:
                walk.failures.append(f"{what} resent {d['retried']} requests, more than its "
                                     f"{d['reconnects']} reconnects explain")
            if d["failures"] and not allowance.link_failures:
                walk.failures.append(f"{what}: {d['failures']} failed requests")
        elif d["failures"] or (allowance is None and (d["reconnects"] or d["retried"])):
            walk.failures.append(f"{what}: {d['failures']} failed requests, "
                                 f"{d['reconnects']} reconnects, {d['retried']} resent")
    if allowance is not None and not explained:
        reconnects = sum(d["reconnects"] for d in deltas.values())
        retried = sum(d["retried"] for d in deltas.values())
        if reconnects > allowance.total_reconnects or retried > allowance.total_retried:
            walk.failures.append(
                f"{name}: {reconnects} replication reconnects and {retried} resent requests, "
                f"more than the {allowance.total_reconnects} and {allowance.total_retried} "
                f"it explains")


def check_load(walk, name, counts, allowance):
    """No failed operation; retries and missing documents only on the faulted nodes'
    clients, missing ones within what the fault explains."""
    explained = [f"node{k}-" for k in (allowance.nodes if allowance else ())]
    for client, c in sorted(counts.items()):
        if c.get("failures"):
            walk.failures.append(f"{name}: {c['failures']} failed operations of {client}")
        ours = any(client.startswith(prefix) for prefix in explained)
        if c.get("retries") and not ours:
            walk.failures.append(f"{name}: {c['retries']} retried operations of {client}, "
                                 f"which no fault of this stage explains")
        limit = allowance.missing_per_client if (allowance and ours) else 0
        if c.get("missing", 0) > limit:
            walk.failures.append(f"{name}: {c['missing']} documents of {client} missing "
                                 f"after their insert")


def check_stages(walk, result, snapshots, plaintext):
    """Checks each stage; returns its row of figures."""
    rows = []
    for i, (name, _, _) in enumerate(walk.stages):
        allowance = walk.allowances.get(name)
        deltas = link_deltas(snapshots[i], snapshots[i + 1])
        counts = client_counts(result, name)
        check_replication(walk, name, deltas, allowance)
        check_load(walk, name, counts, allowance)

        def total(key, rows_of):
            return sum(row.get(key, 0) for row in rows_of.values())
        rows.append(dict(
            stage=name, operations=total("insert", counts) + total("find", counts),
            failures=total("failures", counts), retries=total("retries", counts),
            missing=total("missing", counts), heartbeats=total("hellosOk", deltas),
            repl_reconnects=total("reconnects", deltas), repl_resent=total("retried", deltas),
            repl_failures=total("failures", deltas), plaintext_bytes=plaintext.get(name)))
    return rows


def check_clients(walk, result, moving):
    for error in result["errors"][:40]:
        log(f"client: {error}")
    walk.figures.update(failed_operations=result["failures"], retried_operations=result["retries"],
                        missing_documents=result["missing"], clients_switched=result["switched"])
    for name, client in result["clients"].items():
        if client["died"]:
            walk.failures.append(f"client thread {name} died:\n{client['died']}")
        elif not client["finished"]:
            walk.failures.append(f"client thread {name} did not finish")
    if result["switched"] != len(moving):
        walk.failures.append(f"{result['switched']} of {len(moving)} moving clients switched "
                             f"to TLS")


COLUMNS = (("stage", 17), ("operations", 10), ("failures", 8), ("retries", 7), ("missing", 7),
           ("heartbeats", 10), ("repl_reconnects", 15), ("repl_resent", 11),
           ("repl_failures", 13), ("plaintext_bytes", 15))


def format_rows(rows):
    """The per-stage table: one line per stage of the walk."""
    if not rows:
        return []
    lines = ["  ".join(f"{title:>{width}}" if i else f"{title:<{width}}"
                       for i, (title, width) in enumerate(COLUMNS))]
    for row in rows:
        lines.append("  ".join(f"{str(row[key]):>{width}}" if i else f"{row[key]:<{width}}"
                               for i, (key, width) in enumerate(COLUMNS)))
    return lines
