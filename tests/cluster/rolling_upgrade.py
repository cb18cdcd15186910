"""rolling_upgrade.py: MongoDB's rolling upgrade to TLS (the seeds' procedure) walked on a
simulated 3-node cluster, with tls-sidecar beside each stand-in mongod, under continuous
client load and inter-node replication traffic.

    rolling_upgrade.py BINARY_DIR

Topology, all inside network namespaces this script creates and removes (nothing is sent
to any address outside them), named tlsc-PID-* after this process:

    tlsc-PID-sw      a bridge tlsc-br0 joining one veth per host (tcpdump captures here)
    tlsc-PID-n1..3   10.77.0.1..3: stand-in mongod on 127.0.0.1:27018 with --peer to the two
                 others; tls-sidecar on 10.77.0.K:27017 upstream of it. Nodes 1 and 2 reach
                 their peers through [[egress.peers]] listeners (peer J at 127.0.1.J:27017);
                 node 3 dials its peers' real addresses and deploy/egress-iptables.sh
                 redirects that into the sidecar's transparent egress listener.
    tlsc-PID-client  10.77.0.100: load.py, plaintext and TLS pymongo clients against all nodes

The walk follows deploy/ROLLING-UPGRADE.md (which lists what differs): every sidecar starts
from a configuration file carrying the mode (no mode flag, so step 5's persist can work) in
disabled -> allowTLS one node at a time -> clients switch to TLS -> a real preflight (the
sidecar's, or openssl s_client from the node with transparent egress only) and preferTLS one
node at a time -> drain-plaintext on each -> requireTLS one node at a time -> persist -> a
forced rollback of node 1 to allowTLS, during which a new plaintext client works against it,
and back up. Each step waits for conditions with deadlines, never for a fixed time: every
member's heartbeats go on after each change, and every client working in a stage inserts
and reads back documents in it.

It asserts: no failed client operation (the drivers' own retries are off), progress of every
client in every stage, every moving client switched to TLS, no client thread that died, no
failed heartbeat, no more replication reconnects than the drain closed and no more resent
requests than those can explain; that between the nodes every connection opened from
preferTLS on carries TLS records from its first byte (content type, version, length), that
the member connections made in plaintext before carried OP_MSG and were closed by the drain
(a capture that covers preferTLS, and shows the detector sees plaintext), with at least
10,000 TLS bytes checked (bytes after a hole in the capture are not counted) and no packet
dropped by the kernel; that the allowTLS capture shows plaintext OP_MSG; and that the
rollback's plaintext client connection was captured.

Exit status: 0 passed, 1 failed, 77 skipped (not root, or no network namespaces).
"""

import json
import os
import pathlib
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

SKIP = 77
# Interface names live inside this run's own namespaces (and must fit in 15 characters);
# namespace names are global, so they carry this process's id: two checkouts on one machine
# can walk at the same time without removing each other's namespaces.
PREFIX = "tlsc"
NS_PREFIX = f"tlsc-{os.getpid()}"
SWITCH = f"{NS_PREFIX}-sw"
BRIDGE = f"{PREFIX}-br0"
NODES = (1, 2, 3)
CLIENT = f"{NS_PREFIX}-client"
NAMESPACES = [SWITCH, CLIENT] + [f"{NS_PREFIX}-n{k}" for k in NODES]
SUBNET = "10.77.0"
TRANSPARENT_NODE = 3
SOURCE_DIR = pathlib.Path(__file__).resolve().parents[2]
# drain-plaintext's window: the procedure says 60 s on a real cluster; 5 s here spreads the
# six member connections' closes over a window that is still short for a test.
DRAIN_SECONDS = 5
# A closed port on node 2 that node 1 dials to mark the end of a capture (Capture.stop).
MARKER_PORT = 9
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def log(message):
    print(f"[cluster {time.strftime('%H:%M:%S')}] {message}", flush=True)


def sh(*args, check=True, ns=None, capture=True, timeout=60):
    argv = [str(a) for a in args]
    if ns is not None:
        argv = ["ip", "netns", "exec", ns] + argv
    result = subprocess.run(argv, capture_output=capture, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n"
                           f"{result.stdout}{result.stderr}")
    return result


def node_ns(k):
    return f"{NS_PREFIX}-n{k}"


def address(k):
    return f"{SUBNET}.{k}"


# --- namespaces ----------------------------------------------------------------------------

def leftover(name):
    """Whether `name` is a namespace of a walk whose process is gone (one that crashed)."""
    match = re.fullmatch(r"tlsc-(\d+)-\w+", name)
    if match is None:
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def cleanup():
    """Removes every namespace of this run, killing what runs in it first, and those of runs
    that crashed; never those of another walk that is running."""
    existing = sh("ip", "netns", "list", check=False).stdout.split()
    for name in existing:
        if name not in NAMESPACES + [f"{NS_PREFIX}-probe"] and not leftover(name):
            continue
        pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        sh("ip", "netns", "del", name, check=False)


def can_run():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"{NS_PREFIX}-probe"
    sh("ip", "netns", "del", probe, check=False)
    if sh("ip", "netns", "add", probe, check=False).returncode != 0:
        return False
    sh("ip", "netns", "del", probe, check=False)
    return True


def build_network():
    for name in NAMESPACES:
        sh("ip", "netns", "add", name)
        sh("ip", "link", "set", "lo", "up", ns=name)
    sh("ip", "link", "add", BRIDGE, "type", "bridge", ns=SWITCH)
    sh("ip", "link", "set", BRIDGE, "up", ns=SWITCH)
    hosts = [(node_ns(k), address(k), f"n{k}") for k in NODES] + [(CLIENT, f"{SUBNET}.100", "cl")]
    for ns, ip, tag in hosts:
        outer = f"{PREFIX}-{tag}-br"
        # Both ends are made inside the switch namespace; one moves to the host's namespace.
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns,
           ns=SWITCH)
        sh("ip", "link", "set", outer, "master", BRIDGE, ns=SWITCH)
        sh("ip", "link", "set", outer, "up", ns=SWITCH)
        sh("ip", "addr", "add", f"{ip}/24", "dev", "eth0", ns=ns)
        sh("ip", "link", "set", "eth0", "up", ns=ns)


# --- processes -----------------------------------------------------------------------------

class Cluster:
    def __init__(self, binary_dir, workdir):
        self.bin = pathlib.Path(binary_dir)
        self.sidecar_bin = self.bin / "tls-sidecar"
        self.standin_bin = self.bin / "tests" / "support" / "mongod_standin"
        self.work = pathlib.Path(workdir)
        self.procs = []
        self.standins = {}
        self.sidecars = {}

    def spawn(self, name, ns, argv, stdout=None):
        err = open(self.work / f"{name}.stderr", "wb")
        out = open(self.work / f"{name}.stdout", "wb") if stdout is None else stdout
        proc = subprocess.Popen(["ip", "netns", "exec", ns] + [str(a) for a in argv],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        self.procs.append((name, proc))
        return proc

    def socket(self, k):
        return self.work / f"node{k}.sock"

    def ctl(self, k, *args, check=True):
        result = sh(self.sidecar_bin, "ctl", "--socket", self.socket(k), *args, check=False,
                    timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"ctl {' '.join(map(str, args))} on node {k} failed "
                               f"({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def ask(self, k, *args):
        result = self.ctl(k, "--json", *args, check=False)
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError:
            raise RuntimeError(f"ctl {args} on node {k}: {result.stdout}{result.stderr}")

    def start(self, pki):
        for k in NODES:
            peers = [j for j in NODES if j != k]
            transparent = k == TRANSPARENT_NODE
            lines = [
                "[net]", f'bindIp = "{address(k)}"', "port = 27017",
                'upstream = "127.0.0.1:27018"', "threads = 1", "",
                "[net.tls]", 'mode = "disabled"',
                f'certificateKeyFile = "{pki / "server.pem"}"',
                f'CAFile = "{pki / "ca.pem"}"', f'clusterFile = "{pki / "cluster.pem"}"',
                # The load's TLS clients present no certificate (runbook, step 1).
                "allowConnectionsWithoutCertificates = true", "",
                "[metrics]", 'listen = "127.0.0.1:9442"', "",
            ]
            if transparent:
                lines += ["[egress.transparent]", 'listen = "127.0.0.1:15001"', ""]
                sh(SOURCE_DIR / "deploy" / "egress-iptables.sh", "--listen-port", "15001",
                   ns=node_ns(k))
            else:
                for j in peers:
                    lines += ["[[egress.peers]]", f'listen = "127.0.1.{j}:27017"',
                              f'target = "{address(j)}:27017"', ""]
            config = self.work / f"node{k}.toml"
            config.write_text("\n".join(lines))
            self.sidecars[k] = self.spawn(f"sidecar{k}", node_ns(k), [
                self.sidecar_bin, "--config", config, "--control-socket", self.socket(k)])
        for k in NODES:
            peers = [j for j in NODES if j != k]
            targets = ([f"{address(j)}:27017" for j in peers] if k == TRANSPARENT_NODE
                       else [f"127.0.1.{j}:27017" for j in peers])
            argv = [self.standin_bin, "--bind", "127.0.0.1", "--port", "27018"]
            for target in targets:
                argv += ["--peer", target]
            self.standins[k] = self.spawn(f"standin{k}", node_ns(k), argv)
        deadline = time.monotonic() + 20
        for k in NODES:
            while True:
                if self.sidecars[k].poll() is not None:
                    raise RuntimeError(f"sidecar {k} exited\n{self.tail(f'sidecar{k}')}")
                if self.socket(k).exists() and self.ctl(k, "status", check=False).returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sidecar {k} did not start\n{self.tail(f'sidecar{k}')}")
                time.sleep(0.1)

    def repl_stats(self, k):
        """The stand-in's replication counts: SIGUSR1 makes it print one JSON line."""
        path = self.work / f"standin{k}.stdout"
        before = path.read_text().count("\n")
        self.standins[k].send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            # Only whole lines: the stand-in's write of a line may be read half done.
            text = path.read_text()
            lines = text[:text.rfind("\n") + 1].splitlines()
            if len(lines) > before and lines[-1].startswith("{"):
                return json.loads(lines[-1])
            time.sleep(0.05)
        raise RuntimeError(f"stand-in {k} printed no statistics\n{self.tail(f'standin{k}')}")

    def heartbeat_totals(self):
        stats = {k: self.repl_stats(k) for k in NODES}
        return stats, {key: sum(s[key] for s in stats.values())
                       for key in ("hellosOk", "insertsOk", "failures", "reconnects", "retried")}

    def tail(self, name, lines=30):
        path = self.work / f"{name}.stderr"
        text = path.read_text(errors="replace") if path.exists() else ""
        return f"--- {name}\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self):
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- capture -------------------------------------------------------------------------------

def inter_node(flow):
    """Whether a flow ((src ip, sport), (dst ip, dport)) joins two nodes."""
    nodes = {socket_ip(address(k)) for k in NODES}
    return flow[0][0] in nodes and flow[1][0] in nodes


def socket_ip(text):
    return bytes(int(part) for part in text.split("."))


class Capture:
    """tcpdump on the bridge. It is started with a condition (tcpdump says it is listening),
    and stop() reads tcpdump's own counts: packets the kernel dropped make the capture
    incomplete, which fails the walk rather than weakening its checks."""

    def __init__(self, work, name, node_filter=None):
        self.path = pathlib.Path(work) / f"{name}.pcap"
        if node_filter is None:
            node_filter = f"tcp and src net {SUBNET}.0/30 and dst net {SUBNET}.0/30"
        self.err_path = pathlib.Path(work) / f"{name}.tcpdump"
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", SWITCH, "tcpdump", "-i", BRIDGE, "-U", "-s", "0", "-n",
             "-B", "8192", "-w", str(self.path), node_filter], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self.err)
        deadline = time.monotonic() + 10
        while b"listening on" not in self.err_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tcpdump did not start: " +
                                   self.err_path.read_text(errors="replace"))
            time.sleep(0.05)

    def stop(self):
        """Stops tcpdump once it has written everything up to now; returns the flows (see
        tcp_flows). Raises when the kernel dropped packets."""
        # tcpdump reads the kernel's buffer at its own pace, and what it has not read at
        # SIGINT is never written ("received by filter" but not "captured"). So a marker
        # connection attempt is made between two nodes (to a closed port: a SYN and a RST),
        # and tcpdump is stopped only once the marker is in the file, and so is everything
        # before it.
        deadline = time.monotonic() + 30
        while True:
            sh("bash", "-c", f"exec 3<>/dev/tcp/{address(2)}/{MARKER_PORT}", ns=node_ns(1),
               check=False, timeout=10)
            if any(key[1][1] == MARKER_PORT for key in tcp_flows(self.path)):
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tcpdump did not write the marker packet: " +
                                   self.err_path.read_text(errors="replace"))
            time.sleep(0.2)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)
        self.err.close()
        report = self.err_path.read_text(errors="replace")
        dropped = [int(n) for n in re.findall(r"(\d+) packets? dropped by (?:kernel|interface)",
                                              report)]
        if not re.search(r"packets? dropped by kernel", report):
            raise RuntimeError(f"tcpdump did not report its dropped-packet count:\n{report}")
        if any(dropped):
            raise RuntimeError(f"tcpdump lost packets, the capture is incomplete:\n{report}")
        return tcp_flows(self.path)


class Flow:
    """One direction of one TCP connection in a capture."""

    def __init__(self):
        self.segments = {}
        self.syn = False      # the connection's SYN is in the capture: it opened during it
        self.closed = False   # a FIN or RST of this direction is in the capture
        self.stream = b""     # payload by sequence number, up to the first missing byte
        self.gap_bytes = 0    # bytes missing in the capture inside the stream, not in it
        self.first_ts = None


def tcp_flows(path):
    """Reassembles each direction of each flow of a pcap (Ethernet, IPv4) by sequence number,
    dropping retransmitted bytes. A stream ends at its first missing segment: nothing after
    a hole is counted or parsed (zeros would pass for data). Returns {(src, dst): Flow}
    with src and dst (ip bytes, port)."""
    data = pathlib.Path(path).read_bytes()
    flows = {}
    if len(data) < 24:
        return flows
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise RuntimeError(f"unexpected pcap link type {linktype}")
    offset = 24
    while offset + 16 <= len(data):
        ts_sec, ts_frac, caplen, _ = struct.unpack(endian + "IIII", data[offset:offset + 16])
        if offset + 16 + caplen > len(data):
            break  # a packet tcpdump is still writing
        frame = data[offset + 16:offset + 16 + caplen]
        offset += 16 + caplen
        if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        if ip[9] != 6:
            continue
        tcp = ip[ihl:total]
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack("!HHI", tcp[:8])
        flags = tcp[13]
        flow = flows.setdefault(((ip[12:16], sport), (ip[16:20], dport)), Flow())
        if flags & 0x02:
            flow.syn = True
            flow.isn = seq
        if flags & 0x05:
            flow.closed = True
        payload = tcp[(tcp[12] >> 4) * 4:]
        if payload:
            if flow.first_ts is None:
                flow.first_ts = ts_sec
            flow.segments.setdefault(seq, payload)
    for flow in flows.values():
        if not flow.segments:
            continue
        ordered = sorted(flow.segments.items())
        base = (flow.isn + 1) if flow.syn else ordered[0][0]
        stream = bytearray()
        for seq, payload in ordered:
            start = (seq - base) % (1 << 32)
            if start + len(payload) <= len(stream):
                continue
            if start > len(stream):
                flow.gap_bytes += start - len(stream)
                break
            stream += payload[len(stream) - start:]
        flow.stream = bytes(stream)
    return flows


def op_msg_headers(stream):
    """OP_MSG headers in a stream: a 16-byte MongoDB message header with opcode 2013 at
    offset 12 and a length of 21 bytes to 48 MiB, at any offset."""
    found = 0
    opcode = struct.pack("<i", 2013)
    position = stream.find(opcode, 12)
    while position != -1:
        start = position - 12
        length = struct.unpack("<i", stream[start:start + 4])[0]
        if 21 <= length <= 48 * 1024 * 1024:
            found += 1
        position = stream.find(opcode, position + 1)
    return found


def tls_records(stream):
    """Parses a stream from its first byte as TLS records (RFC 8446 §5.1): content type
    20-23, legacy version 0x0303 (0x0301 allowed for the first record, the ClientHello's),
    length 1..2^14+2048. Returns (records, None) or (records, why it is not TLS). A record
    cut by the end of the capture is fine."""
    offset = 0
    records = 0
    while offset + 5 <= len(stream):
        content_type = stream[offset]
        version = struct.unpack("!H", stream[offset + 1:offset + 3])[0]
        length = struct.unpack("!H", stream[offset + 3:offset + 5])[0]
        if content_type not in (20, 21, 22, 23):
            return records, f"content type {content_type} at byte {offset}"
        if version != 0x0303 and not (records == 0 and version == 0x0301):
            return records, f"version {version:#06x} at byte {offset}"
        if not 1 <= length <= 16384 + 2048:
            return records, f"record length {length} at byte {offset}"
        offset += 5 + length
        records += 1
    return records, None


def describe_flow(key):
    (src, sport), (dst, dport) = key
    return f"{'.'.join(map(str, src))}:{sport} -> {'.'.join(map(str, dst))}:{dport}"


def check_tls_capture(flows, failures, figures, label, opened_before_allowed):
    """After preferTLS: every flow between nodes that opened during the capture carries TLS
    records from its first byte; a flow already open when the capture started (the member
    connections made in plaintext before preferTLS) may carry plaintext only if the capture
    also shows it closed (the drain). Returns the TLS bytes checked (no bytes after a hole)."""
    tls_bytes = 0
    tls_flows = 0
    plaintext_before = 0
    for key, flow in flows.items():
        if not inter_node(key) or not flow.stream:
            continue
        if flow.syn:
            records, problem = tls_records(flow.stream)
            if problem is not None or flow.gap_bytes:
                failures.append(f"{label}: {describe_flow(key)} opened after preferTLS is not "
                                f"TLS: {problem or 'a hole in the capture'} after {records} "
                                f"records; {op_msg_headers(flow.stream)} OP_MSG headers")
                continue
            tls_bytes += len(flow.stream)
            tls_flows += 1
            continue
        headers = op_msg_headers(flow.stream)
        if headers == 0:
            continue
        plaintext_before += headers
        reverse = flows.get((key[1], key[0]))
        if not opened_before_allowed:
            failures.append(f"{label}: {headers} plaintext OP_MSG on {describe_flow(key)}")
        elif not (flow.closed or (reverse is not None and reverse.closed)):
            failures.append(f"{label}: {describe_flow(key)} carried {headers} plaintext "
                            f"OP_MSG and was not closed by the drain")
    figures[f"{label}_tls_flows_opened"] = tls_flows
    figures[f"{label}_tls_bytes_checked"] = tls_bytes
    figures[f"{label}_plaintext_op_msg_on_drained_flows"] = plaintext_before
    return tls_bytes


# --- the walk ------------------------------------------------------------------------------

def wait_until(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


# The clients that work in each stage of the walk (load.py's names).
MOVING = [f"node{k}-moving" for k in NODES]
TLS_CLIENTS = [f"node{k}-tls" for k in NODES]
ROLLBACK_CLIENT = "node1-rollback"


def run(binary_dir):
    work = pathlib.Path(tempfile.mkdtemp(prefix="tls-sidecar-cluster-"))
    cluster = Cluster(binary_dir, work)
    load = None
    failures = []
    figures = {}
    stages = []  # (stage, clients expected to make progress in it)
    try:
        log(f"workdir {work}; building 3 hosts and a client in network namespaces")
        build_network()
        pki = work / "pki"
        sh(cluster.sidecar_bin, "certs", "init", pki, "--hosts",
           ",".join(address(k) for k in NODES))
        cluster.start(pki)

        def set_phase(value):
            (work / "phase").write_text(value)

        def progress():
            try:
                return json.loads((work / "progress.json").read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                return None

        def begin_stage(name, clients):
            (work / "stage").write_text(name)
            stages.append((name, clients))

        def load_progress(minimum=3):
            """Waits until every client of the current stage inserted and found at least
            `minimum` documents in it: the stage is shown to serve clients, not assumed."""
            name, clients = stages[-1]

            def enough():
                state = progress()
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
                state = progress() or {"clients": {}}
                died = {client: state["clients"][client]["died"] for client in clients
                        if state["clients"].get(client, {}).get("died")}
                raise RuntimeError(f"{error}; client threads that died: {died or 'none'}")

        def heartbeats(minimum=3):
            """Waits until every node's stand-in had `minimum` more heartbeats answered:
            the members are healthy (the procedure's rs.status() check)."""
            before = {k: cluster.repl_stats(k)["hellosOk"] for k in NODES}
            wait_until(lambda: all(cluster.repl_stats(k)["hellosOk"] >= before[k] + minimum
                                   for k in NODES), "heartbeats between all members")

        def step(k, *args):
            result = cluster.ctl(k, *args)
            log(f"node {k}: ctl {' '.join(args)}: {result.stdout.strip().splitlines()[0]}")
            heartbeats()
            return result

        def preflight(k, mode):
            """A real preflight: the sidecar's own for the peers it knows, and the
            procedure's openssl s_client check from a node with transparent egress only."""
            if k != TRANSPARENT_NODE:
                answer = cluster.ask(k, "preflight", mode)
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
                            "-CAfile", pki / "ca.pem", "-cert", pki / "cluster.pem",
                            "-verify_return_error",
                            "-verify_ip", address(j), ns=node_ns(k), check=False, timeout=30)
                if "Verify return code: 0 (ok)" not in result.stdout:
                    raise RuntimeError(f"openssl s_client from node {k} to node {j}:\n"
                                       f"{result.stdout[-1500:]}{result.stderr[-500:]}")
            log(f"node {k}: peers verified with openssl s_client (transparent egress)")

        set_phase("plaintext")
        begin_stage("disabled", MOVING)
        load = cluster.spawn("load", CLIENT, [PYTHON, SOURCE_DIR / "tests" / "cluster" / "load.py",
                                              work, pki / "ca.pem",
                                              *[address(k) for k in NODES]])

        def connected():
            stats, _ = cluster.heartbeat_totals()
            return all(s["hellosOk"] >= 5 and s["connects"] >= 2 for s in stats.values())
        wait_until(connected, "replication connections between all nodes")
        _, baseline = cluster.heartbeat_totals()
        log(f"all nodes disabled, replication flowing (start-up failures before the sidecars "
            f"were up, not counted: {baseline['failures']})")
        load_progress()

        # Step 1: allowTLS on each node, one at a time. The capture covers the whole step,
        # so it must show the plaintext member traffic: the detector is shown to see it.
        capture = Capture(work, "allow")
        for k in NODES:
            step(k, "set-mode", "allowTLS")
        begin_stage("allowTLS", MOVING + TLS_CLIENTS)
        set_phase("mixed")
        load_progress()
        flows = capture.stop()
        found = sum(op_msg_headers(f.stream) for key, f in flows.items() if inter_node(key))
        figures["allow_plaintext_op_msg_between_nodes"] = found
        log(f"capture in allowTLS: {found} plaintext OP_MSG between nodes")
        if found == 0:
            failures.append("the capture in allowTLS shows no plaintext OP_MSG: the check "
                            "would not see plaintext")
        # And the TLS record parser, which the later captures rely on, refuses it.
        passed_as_tls = [describe_flow(key) for key, f in flows.items()
                         if inter_node(key) and op_msg_headers(f.stream)
                         and tls_records(f.stream)[1] is None]
        if passed_as_tls:
            failures.append(f"plaintext member traffic parses as TLS records: {passed_as_tls}")

        # Step 2: clients switch to TLS.
        begin_stage("clients-switched", MOVING + TLS_CLIENTS)
        set_phase("tls")

        def no_plaintext_clients(k):
            rows = cluster.ask(k, "clients", "--transport", "plaintext")["clients"]
            return all(row["kind"] == "member" or row["active"] == 0 for row in rows)
        wait_until(lambda: all(no_plaintext_clients(k) for k in NODES),
                   "plaintext clients to reconnect with TLS")
        load_progress()
        log("clients switched to TLS")

        # Step 3: preflight, then preferTLS, one node at a time.
        begin_stage("preferTLS", MOVING + TLS_CLIENTS)
        for k in NODES:
            preflight(k, "preferTLS")
            step(k, "set-mode", "preferTLS")
        load_progress()

        # The capture starts before the drain: it covers preferTLS with the old plaintext
        # member connections still open, their closing, and what replaces them.
        capture = Capture(work, "tls")
        begin_stage("drain", MOVING + TLS_CLIENTS)
        drained_members = 0
        for k in NODES:
            answer = cluster.ask(k, "drain-plaintext", str(DRAIN_SECONDS))
            if answer.get("ok") is not True:
                raise RuntimeError(f"drain-plaintext on node {k}: {answer}")
            drained_members += answer.get("members", 0)
            log(f"node {k}: drain-plaintext {DRAIN_SECONDS}: {answer}")
        figures["drained_member_connections"] = drained_members
        wait_until(lambda: all(cluster.ask(k, "status")["active"]["plaintext"] == 0
                               for k in NODES), "plaintext connections to drain",
                   timeout=DRAIN_SECONDS + 30)
        heartbeats(minimum=5)
        load_progress()

        # Step 4: requireTLS, one node at a time.
        begin_stage("requireTLS", MOVING + TLS_CLIENTS)
        for k in NODES:
            step(k, "set-mode", "requireTLS")
        load_progress()
        tls_bytes = check_tls_capture(capture.stop(), failures, figures, "after_preferTLS",
                                      opened_before_allowed=True)
        if figures["after_preferTLS_plaintext_op_msg_on_drained_flows"] == 0:
            failures.append("the capture from preferTLS on shows no plaintext OP_MSG on the "
                            "member connections the drain closed: it did not cover preferTLS")
        if tls_bytes < 10000:
            failures.append(f"only {tls_bytes} TLS bytes captured between nodes after "
                            f"preferTLS")

        # Step 5: persist, on each node; the file now says requireTLS.
        for k in NODES:
            step(k, "set-mode", "requireTLS", "--persist")
            text = (work / f"node{k}.toml").read_text()
            if 'mode = "requireTLS"' not in text:
                failures.append(f"node {k}: persist left the file with:\n{text}")
            warnings = [w for w in cluster.ask(k, "status").get("warnings", [])
                        if "restart" in w or "file" in w]
            if warnings:
                failures.append(f"node {k}: status warns after persist: {warnings}")

        # A forced rollback of node 1 to allowTLS (its peers stay in requireTLS, the
        # procedure's "bring this node back up before its TLS connections are replaced").
        # It lasts until a new plaintext client has worked against node 1, captured on the
        # wire, and the member traffic kept flowing.
        capture = Capture(work, "rollback", node_filter=f"tcp and net {SUBNET}.0/24")
        begin_stage("rollback", MOVING + TLS_CLIENTS + [ROLLBACK_CLIENT])
        step(1, "set-mode", "allowTLS", "--force")
        set_phase("rollback")
        load_progress()
        heartbeats(minimum=5)
        begin_stage("restored", MOVING + TLS_CLIENTS)
        set_phase("tls")
        wait_until(lambda: no_plaintext_clients(1), "the rollback client to leave node 1")
        preflight(1, "preferTLS")
        step(1, "set-mode", "preferTLS")
        step(1, "set-mode", "requireTLS")
        load_progress()
        flows = capture.stop()
        client_ip = socket_ip(f"{SUBNET}.100")
        rollback_plaintext = sum(
            op_msg_headers(f.stream) for (src, dst), f in flows.items()
            if f.syn and src[0] == client_ip and dst == (socket_ip(address(1)), 27017))
        figures["rollback_plaintext_op_msg_client_to_node1"] = rollback_plaintext
        if rollback_plaintext == 0:
            failures.append("no plaintext client connection to node 1 was captured during "
                            "the rollback")
        check_tls_capture(flows, failures, figures, "rollback", opened_before_allowed=False)

        # Node 3's peer connections went through the iptables redirect.
        rules = sh("iptables", "-t", "nat", "-L", "TLS_SIDECAR_EGRESS", "-v", "-x", "-n",
                   ns=node_ns(TRANSPARENT_NODE)).stdout
        redirected = sum(int(line.split()[0]) for line in rules.splitlines()
                         if "REDIRECT" in line)
        figures["transparent_redirects"] = redirected
        if redirected == 0:
            failures.append(f"no connection of node {TRANSPARENT_NODE} was redirected:\n{rules}")
        for k in NODES:
            mode = cluster.ask(k, "status")["mode"]
            if mode != "requireTLS":
                failures.append(f"node {k} ends in {mode}")

        set_phase("stop")
        load.wait(timeout=60)
        result = json.loads((work / "result.json").read_text())
        stats, totals = cluster.heartbeat_totals()
        heartbeat_failures = totals["failures"] - baseline["failures"]
        figures.update(failed_operations=result["failures"],
                       clients_switched=result["switched"], heartbeats=totals["hellosOk"],
                       replicated_documents=totals["insertsOk"],
                       failed_heartbeats=heartbeat_failures)
        figures["operations_per_stage"] = {
            name: {client: result["clients"][client]["stages"].get(name, {})
                   for client in clients} for name, clients in stages}
        for error in result["errors"][:20]:
            log(f"client failure: {error}")
        if result["failures"]:
            failures.append(f"{result['failures']} failed client operations")
        for name, client in result["clients"].items():
            if client["died"]:
                failures.append(f"client thread {name} died:\n{client['died']}")
            elif not client["finished"]:
                failures.append(f"client thread {name} did not finish")
        if result["switched"] != len(MOVING):
            failures.append(f"{result['switched']} of {len(MOVING)} moving clients switched "
                            f"to TLS")
        if heartbeat_failures:
            failures.append(f"{heartbeat_failures} failed peer heartbeats: {stats}")
        # A request lost with a connection the drain closed is sent again (as mongod's
        # heartbeats are); only those connections may close, and each had at most
        # kPeerMaxPending + 1 = 9 requests in flight.
        # Counted from the baseline: before every sidecar listened, a stand-in could reach a
        # peer's egress listener while that peer was not up yet, and lose that connection.
        reconnects = totals["reconnects"] - baseline["reconnects"]
        retried = totals["retried"] - baseline["retried"]
        figures.update(replication_reconnects=reconnects, retried_after_reconnect=retried)
        if reconnects > drained_members:
            failures.append(f"{reconnects} replication reconnects, but the drain closed only "
                            f"{drained_members} member connections")
        if retried > 9 * drained_members:
            failures.append(f"{retried} replication requests were sent again, more than the "
                            f"{drained_members} drained connections can explain")
    except Exception as error:  # reported with the logs, then the namespaces go
        failures.append(f"{type(error).__name__}: {error}")
    finally:
        cluster.stop()
        if load is not None and load.poll() is None:
            load.kill()
        cleanup()
    log("figures: " + json.dumps(figures))
    # tests/run.sh prints this file after ctest, which shows a passing test's output only
    # with -V.
    summary = pathlib.Path(binary_dir) / "Testing" / "cluster-figures.txt"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(("FAILED: " + "; ".join(failures) if failures else "PASSED") + "\n" +
                       "".join(f"  {key}: {value}\n" for key, value in figures.items()))
    if failures:
        for name in [f"sidecar{k}" for k in NODES] + [f"standin{k}" for k in NODES] + ["load"]:
            print(cluster.tail(name), flush=True)
        for failure in failures:
            log(f"FAILED: {failure}")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    log("PASSED: rolling upgrade with 0 failed operations and 0 failed heartbeats")
    return 0


def main():
    if len(sys.argv) != 2:
        print("usage: rolling_upgrade.py BINARY_DIR", file=sys.stderr)
        return 2
    if not can_run():
        print("SKIPPED: needs root and network namespaces (ip netns add)", flush=True)
        return SKIP
    for tool in ("tcpdump", "iptables"):
        if shutil.which(tool) is None:
            print(f"FAILED: {tool} is not installed (tests/run.sh installs it)", flush=True)
            return 1
    cleanup()
    return run(sys.argv[1])


if __name__ == "__main__":
    sys.exit(main())
