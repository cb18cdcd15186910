"""rolling_upgrade.py: MongoDB's rolling upgrade to TLS (the seeds' procedure) walked on a
simulated 3-node cluster, with tls-sidecar beside each stand-in mongod, under continuous
client load and inter-node replication traffic, with the faults real clusters see while it
runs.

    rolling_upgrade.py BINARY_DIR

The cluster (network namespaces, processes) is cluster_net.py's; what is seen on the wire is
capture.py's; the client load is load.py. The walk follows deploy/ROLLING-UPGRADE.md (which
lists what differs), one stage after another; the stages are the rows of the figures:

    disabled          every sidecar starts from a configuration file carrying the mode (no
                      mode flag, so persisting works), each node's own certificate
    allowTLS          step 1, one node at a time
    clients-switched  step 2: the moving clients reconnect with TLS
    takeover          fault (a): node 2's sidecar is hot-restarted (`tls-sidecar --takeover`,
                      same argv): the old process exits 0, the port refuses nothing (a prober
                      opens connection after connection), the mode and
                      tls_sidecar_restarts_total{kind="takeover"} carry over
    preferTLS         step 3: a real preflight (the sidecar's, or openssl s_client from the
                      node with transparent egress only), then preferTLS, one node at a time
    drain             drain-plaintext on each node
    mongod-restart    fault (c): node 1's stand-in mongod is stopped (SIGTERM) and started
                      again with the same argv
    sidecar-kill      fault (b): node 3 persists preferTLS (`set-mode preferTLS --persist`),
                      its sidecar is killed (SIGKILL) and started with the same argv; it comes
                      back in preferTLS, from its file (ctl status: mode, modeSource)
    requireTLS        step 4, one node at a time, then step 5: persist on each
    cert-rotation     fault (d): node 2 gets a new key and certificate from the same CA,
                      written over its file, and `ctl reload`; openssl s_client from the
                      client namespace sees the new certificate served (serial, SHA-256),
                      status names it, a new TLS client and a peer's preflight verify it
    rollback          (e) node 1 forced to allowTLS: a new plaintext client works against it
    restored          node 1 back up to preferTLS and requireTLS

Each stage waits for conditions with deadlines, never for a fixed time: every replication
link (stand-in to peer, six of them) has heartbeats answered again after each change, and
every client working in a stage inserts and reads back documents in it. A fault is applied
only once every client works in its stage, so what it causes is counted there.

The drivers' retryable reads and writes are on; load.py counts retries and failures apart.
It asserts, per stage: no failed client operation; retries only by the clients of the node
a fault hits, in that fault's stage; no document missing after its insert except what the
stand-in's restart explains (it persists nothing: at most one per client of that node);
progress of every client; no failed, reconnected or resent replication request except on
the links through the faulted process in its stage (the drain: no more reconnects than it
closed member connections, 9 resent requests each; the takeover: one reconnect per link
through the node, no failure). Overall: every moving client switched to TLS, no client
thread died. On the wire, from a capture of all traffic between the nodes for the whole
walk (no packet dropped by the kernel): plaintext OP_MSG in allowTLS (the detector sees
plaintext); from preferTLS on every member connection that opens is TLS records from its
first byte, with at least 10,000 TLS bytes checked (nothing after a hole counts); the
plaintext ones made before carried OP_MSG and were closed by the drain; after the drain, 0
plaintext bytes between nodes in every stage. A second capture shows the rollback's
plaintext client connection.

It writes one row per stage (operations, failures, retries, replication reconnects,
plaintext bytes between nodes) and the other figures to BINARY_DIR/Testing/
cluster-figures.txt (tests/run.sh prints it) and to the log.

Exit status: 0 passed, 1 failed, 77 skipped (not root, or no network namespaces).
"""

import json
import pathlib
import shutil
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "e2e")]

# The walk's modules beside it; tests/e2e's certgen (faults.py issues the certificates).
from capture import (Capture, check_member_capture, check_tls_capture,  # noqa: E402
                     op_msg_headers, socket_ip)
from cluster_net import (CLIENT, CLIENT_ADDRESS, NODES, PYTHON, TRANSPARENT_NODE,  # noqa: E402
                         Cluster, address, build_network, can_run, cleanup, links, log,
                         node_ns, sh, wait_until)
import faults  # noqa: E402

SKIP = 77
# drain-plaintext's window: the procedure says 60 s on a real cluster; 5 s here spreads the
# six member connections' closes over a window that is still short for a test.
DRAIN_SECONDS = 5
# The clients that work in each stage of the walk (load.py's names).
MOVING = [f"node{k}-moving" for k in NODES]
TLS_CLIENTS = [f"node{k}-tls" for k in NODES]
ROLLBACK_CLIENT = "node1-rollback"
ROLLBACK_NODE = 1


class Walk:
    """The walk's state: the cluster, the stages so far, what failed, the figures."""

    def __init__(self, binary_dir, work):
        self.work = work
        self.cluster = Cluster(binary_dir, work)
        self.pki = work / "pki"
        self.ca = None         # the CA (certgen.Authority), which can issue more
        self.failures = []
        self.figures = {}
        self.stages = []       # (name, clients expected to make progress, start time)
        self.repl_at = []      # per stage: the stand-ins' counts at its start
        self.allowances = {}   # stage -> what its fault explains (faults.Allowance)
        self.load = None
        self.members = None    # the capture between the nodes, for the whole walk

    # --- the walk's means ------------------------------------------------------------------

    def set_phase(self, value):
        (self.work / "phase").write_text(value)

    def progress(self):
        try:
            return json.loads((self.work / "progress.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def begin_stage(self, name, clients):
        (self.work / "stage").write_text(name)
        self.stages.append((name, clients, time.time()))
        self.repl_at.append(self.cluster.heartbeat_totals()[0])
        log(f"--- stage {name}")

    def load_progress(self, minimum=3):
        """Waits until every client of the current stage inserted and found at least
        `minimum` documents in it: the stage is shown to serve clients, not assumed."""
        name, clients, _ = self.stages[-1]

        def enough():
            state = self.progress()
            if state is None:
                return False
            for client in clients:
                counts = state["clients"][client]["stages"].get(name, {})
                if min(counts.get("insert", 0), counts.get("find", 0)) < minimum:
                    return False
            return True
        try:
            wait_until(enough, f"client operations in stage {name} ({', '.join(clients)})",
                       timeout=60)
        except RuntimeError as error:
            state = self.progress() or {"clients": {}}
            died = {client: state["clients"][client]["died"] for client in clients
                    if state["clients"].get(client, {}).get("died")}
            raise RuntimeError(f"{error}; client threads that died: {died or 'none'}")

    def heartbeats(self, minimum=3):
        """Waits until every replication link (each stand-in to each peer) had `minimum`
        more heartbeats answered: the members are healthy (the procedure's rs.status())."""
        def answered():
            return {link: c["hellosOk"]
                    for link, c in links(self.cluster.heartbeat_totals()[0]).items()}
        before = answered()
        wait_until(lambda: all(n >= before.get(link, 0) + minimum
                               for link, n in answered().items()),
                   "heartbeats on every replication link")

    def step(self, k, *args):
        result = self.cluster.ctl(k, *args)
        log(f"node {k}: ctl {' '.join(args)}: {result.stdout.strip().splitlines()[0]}")
        self.heartbeats()
        return result

    def preflight(self, k, mode):
        """A real preflight: the sidecar's own for the peers it knows, and the procedure's
        openssl s_client check from a node with transparent egress only."""
        if k != TRANSPARENT_NODE:
            answer = self.cluster.ask(k, "preflight", mode)
            peers = answer.get("peers", [])
            bad = [row for row in peers
                   if not row.get("handshake") or row.get("verification") != "ok"]
            if answer.get("ok") is not True or len(peers) != len(NODES) - 1 or bad:
                raise RuntimeError(f"preflight {mode} on node {k}: {answer}")
            log(f"node {k}: preflight {mode}: {len(peers)} peers verified")
            return
        for j in NODES:
            if j == k:
                continue
            result = sh("openssl", "s_client", "-connect", f"{address(j)}:27017",
                        "-CAfile", self.pki / "ca.pem", "-cert", self.pki / "cluster.pem",
                        "-verify_return_error",
                        "-verify_ip", address(j), ns=node_ns(k), check=False, timeout=30)
            if "Verify return code: 0 (ok)" not in result.stdout:
                raise RuntimeError(f"openssl s_client from node {k} to node {j}:\n"
                                   f"{result.stdout[-1500:]}{result.stderr[-500:]}")
        log(f"node {k}: peers verified with openssl s_client (transparent egress)")

    def no_plaintext_clients(self, k):
        rows = self.cluster.ask(k, "clients", "--transport", "plaintext")["clients"]
        return all(row["kind"] == "member" or row["active"] == 0 for row in rows)

    # --- the procedure ---------------------------------------------------------------------

    def start(self):
        log(f"workdir {self.work}; building 3 hosts and a client in network namespaces")
        build_network()
        self.ca = faults.make_pki(self.pki)
        # Before any process starts: every member connection's first byte is captured.
        self.members = Capture(self.work, "members")
        self.cluster.start(self.pki)
        self.set_phase("plaintext")
        self.begin_stage("disabled", MOVING)
        self.load = self.cluster.spawn("load", CLIENT, [
            PYTHON, HERE / "load.py", self.work, self.pki / "ca.pem",
            *[address(k) for k in NODES]])

        def connected():
            stats, _ = self.cluster.heartbeat_totals()
            return all(s["hellosOk"] >= 5 and s["connects"] >= 2 for s in stats.values())
        wait_until(connected, "replication connections between all nodes")
        # Before every sidecar listened, a stand-in could reach a peer's egress listener
        # while that peer was not up yet: the disabled stage is counted from here.
        self.repl_at[-1] = self.cluster.heartbeat_totals()[0]
        log("all nodes disabled, replication flowing")
        self.load_progress()

    def allow_tls(self):
        """Step 1: allowTLS on each node, one at a time."""
        self.begin_stage("allowTLS", MOVING + TLS_CLIENTS)
        for k in NODES:
            self.step(k, "set-mode", "allowTLS")
        self.set_phase("mixed")
        self.load_progress()

    def switch_clients(self):
        """Step 2: clients switch to TLS."""
        self.begin_stage("clients-switched", MOVING + TLS_CLIENTS)
        self.set_phase("tls")
        try:
            wait_until(lambda: all(self.no_plaintext_clients(k) for k in NODES),
                       "plaintext clients to reconnect with TLS")
        except RuntimeError as error:
            rows = {k: self.cluster.ask(k, "clients", "--transport", "plaintext")["clients"]
                    for k in NODES}
            raise RuntimeError(f"{error}: {rows}")
        self.load_progress()
        log("clients switched to TLS")

    def prefer_tls(self):
        """Step 3: preflight, then preferTLS, one node at a time."""
        self.begin_stage("preferTLS", MOVING + TLS_CLIENTS)
        for k in NODES:
            self.preflight(k, "preferTLS")
            self.step(k, "set-mode", "preferTLS")
        self.load_progress()

    def drain(self):
        """drain-plaintext on each node: the member connections made in plaintext close."""
        self.begin_stage("drain", MOVING + TLS_CLIENTS)
        drained = 0
        for k in NODES:
            answer = self.cluster.ask(k, "drain-plaintext", str(DRAIN_SECONDS))
            if answer.get("ok") is not True:
                raise RuntimeError(f"drain-plaintext on node {k}: {answer}")
            drained += answer.get("members", 0)
            log(f"node {k}: drain-plaintext {DRAIN_SECONDS}: {answer}")
        self.figures["drained_member_connections"] = drained
        # A request lost with a connection the drain closed is sent again (as mongod's
        # heartbeats are); only those connections may close, and each had at most
        # kPeerMaxPending + 1 = 9 requests in flight.
        self.allowances["drain"] = faults.Allowance(
            nodes=(), total_reconnects=drained, total_retried=9 * drained)
        wait_until(lambda: all(self.cluster.ask(k, "status")["active"]["plaintext"] == 0
                               for k in NODES), "plaintext connections to drain",
                   timeout=DRAIN_SECONDS + 30)
        self.heartbeats(minimum=5)
        self.load_progress()

    def require_tls(self):
        """Step 4: requireTLS, one node at a time; step 5: persist on each node."""
        self.begin_stage("requireTLS", MOVING + TLS_CLIENTS)
        for k in NODES:
            self.step(k, "set-mode", "requireTLS")
        self.load_progress()
        for k in NODES:
            self.step(k, "set-mode", "requireTLS", "--persist")
            text = self.cluster.config(k).read_text()
            if 'mode = "requireTLS"' not in text:
                self.failures.append(f"node {k}: persist left the file with:\n{text}")
            warnings = [w for w in self.cluster.ask(k, "status").get("warnings", [])
                        if "restart" in w or "file" in w]
            if warnings:
                self.failures.append(f"node {k}: status warns after persist: {warnings}")

    def rollback(self):
        """A forced rollback of node 1 to allowTLS (its peers stay in requireTLS, the
        procedure's "bring this node back up before its TLS connections are replaced"). It
        lasts until a new plaintext client has worked against node 1, captured on the wire,
        and the member traffic kept flowing; then node 1 goes back up."""
        capture = Capture(self.work, "rollback", node_filter="tcp and net 10.77.0.0/24")
        self.begin_stage("rollback", MOVING + TLS_CLIENTS + [ROLLBACK_CLIENT])
        self.step(ROLLBACK_NODE, "set-mode", "allowTLS", "--force")
        self.set_phase("rollback")
        self.load_progress()
        self.heartbeats(minimum=5)
        self.begin_stage("restored", MOVING + TLS_CLIENTS)
        self.set_phase("tls")
        wait_until(lambda: self.no_plaintext_clients(ROLLBACK_NODE),
                   "the rollback client to leave node 1")
        self.preflight(ROLLBACK_NODE, "preferTLS")
        self.step(ROLLBACK_NODE, "set-mode", "preferTLS")
        self.step(ROLLBACK_NODE, "set-mode", "requireTLS")
        self.load_progress()
        flows = capture.stop()
        client_ip = socket_ip(CLIENT_ADDRESS)
        plaintext = sum(
            op_msg_headers(f.stream) for (src, dst), f in flows.items()
            if f.syn and src[0] == client_ip and dst == (socket_ip(address(ROLLBACK_NODE)),
                                                         27017))
        self.figures["rollback_plaintext_op_msg_client_to_node1"] = plaintext
        if plaintext == 0:
            self.failures.append("no plaintext client connection to node 1 was captured "
                                 "during the rollback")
        check_tls_capture(flows, self.failures, self.figures, "rollback",
                          opened_before_allowed=False)

    def run(self):
        self.start()
        self.allow_tls()
        self.switch_clients()
        faults.takeover(self, MOVING + TLS_CLIENTS)
        self.prefer_tls()
        self.drain()
        faults.restart_standin(self, MOVING + TLS_CLIENTS)
        faults.kill_sidecar(self, MOVING + TLS_CLIENTS)
        self.require_tls()
        faults.rotate_certificate(self, MOVING + TLS_CLIENTS)
        self.rollback()
        self.finish()

    # --- the end: what the counts and the capture say -------------------------------------

    def finish(self):
        # Node 3's peer connections went through the iptables redirect.
        rules = sh("iptables", "-t", "nat", "-L", "TLS_SIDECAR_EGRESS", "-v", "-x", "-n",
                   ns=node_ns(TRANSPARENT_NODE)).stdout
        redirected = sum(int(line.split()[0]) for line in rules.splitlines()
                         if "REDIRECT" in line)
        self.figures["transparent_redirects"] = redirected
        if redirected == 0:
            self.failures.append(f"no connection of node {TRANSPARENT_NODE} was redirected:\n"
                                 f"{rules}")
        for k in NODES:
            mode = self.cluster.ask(k, "status")["mode"]
            if mode != "requireTLS":
                self.failures.append(f"node {k} ends in {mode}")
        final = self.cluster.heartbeat_totals()[0]
        self.set_phase("stop")
        self.load.wait(timeout=60)
        result = json.loads((self.work / "result.json").read_text())
        # The last stage lasts until the capture stops.
        windows = [(name, start, self.stages[i + 1][2] if i + 1 < len(self.stages)
                    else float("inf")) for i, (name, _, start) in enumerate(self.stages)]
        plaintext = check_member_capture(self.members.stop(), windows, self.failures,
                                         self.figures)
        rows = faults.check_stages(self, result, self.repl_at + [final], plaintext)
        self.figures["per_stage"] = rows
        faults.check_clients(self, result, MOVING)


def report(walk, binary_dir):
    """Writes the figures file (tests/run.sh prints it after ctest, which shows a passing
    test's output only with -V) and logs the rows."""
    rows = walk.figures.pop("per_stage", [])
    table = faults.format_rows(rows)
    for line in table:
        log(line)
    log("figures: " + json.dumps(walk.figures))
    summary = pathlib.Path(binary_dir) / "Testing" / "cluster-figures.txt"
    summary.parent.mkdir(parents=True, exist_ok=True)
    head = "FAILED: " + "; ".join(walk.failures) if walk.failures else "PASSED"
    summary.write_text(head + "\n" + "".join(f"  {line}\n" for line in table) +
                       "".join(f"  {key}: {value}\n" for key, value in walk.figures.items()))


def run(binary_dir):
    work = pathlib.Path(tempfile.mkdtemp(prefix="tls-sidecar-cluster-"))
    walk = Walk(binary_dir, work)
    try:
        walk.run()
    except Exception as error:  # reported with the logs, then the namespaces go
        walk.failures.append(f"{type(error).__name__}: {error}")
    finally:
        walk.cluster.stop()
        if walk.members is not None:
            walk.members.kill()
        if walk.load is not None and walk.load.poll() is None:
            walk.load.kill()
        cleanup()
    report(walk, binary_dir)
    if walk.failures:
        for name in walk.cluster.names():
            if name.startswith(("sidecar", "standin", "load")):
                print(walk.cluster.tail(name), flush=True)
        for failure in walk.failures:
            log(f"FAILED: {failure}")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    log("PASSED: rolling upgrade with faults, 0 failed operations")
    return 0


def main():
    if len(sys.argv) != 2:
        print("usage: rolling_upgrade.py BINARY_DIR", file=sys.stderr)
        return 2
    if not can_run():
        print("SKIPPED: needs root and network namespaces (ip netns add)", flush=True)
        return SKIP
    for tool in ("tcpdump", "iptables", "openssl"):
        if shutil.which(tool) is None:
            print(f"FAILED: {tool} is not installed (tests/run.sh installs it)", flush=True)
            return 1
    cleanup()
    return run(sys.argv[1])


if __name__ == "__main__":
    sys.exit(main())
