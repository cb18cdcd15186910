"""rolling_upgrade.py: MongoDB's rolling upgrade to TLS (the seeds' procedure) walked on a
simulated 3-node cluster, with tls-sidecar beside each stand-in mongod, under continuous
client load and inter-node replication traffic.

    rolling_upgrade.py BINARY_DIR

Topology, all inside network namespaces this script creates and removes (nothing is sent
to any address outside them):

    tlsc-sw      a bridge tlsc-br0 joining one veth per host (tcpdump captures here)
    tlsc-n1..3   10.77.0.1..3: stand-in mongod on 127.0.0.1:27018 with --peer to the two
                 others; tls-sidecar on 10.77.0.K:27017 upstream of it. Nodes 1 and 2 reach
                 their peers through [[egress.peers]] listeners (peer J at 127.0.1.J:27017);
                 node 3 dials its peers' real addresses and deploy/egress-iptables.sh
                 redirects that into the sidecar's transparent egress listener.
    tlsc-client  10.77.0.100: load.py, plaintext and TLS pymongo clients against all nodes

The walk: all disabled -> allowTLS one node at a time -> clients switch to TLS -> preflight
and preferTLS one node at a time -> drain-plaintext on each -> requireTLS one node at a
time -> forced rollback of node 1 to allowTLS and back up. It asserts 0 failed client
operations, 0 failed peer heartbeats, and no plaintext MongoDB message between the nodes on
the bridge once every node is in preferTLS and the old connections are drained (checked on
a capture; a capture taken while the nodes still talk plaintext must show such messages, so
the check itself is shown to work).

Exit status: 0 passed, 1 failed, 77 skipped (not root, or no network namespaces).
"""

import json
import os
import pathlib
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

SKIP = 77
PREFIX = "tlsc"
SWITCH = f"{PREFIX}-sw"
BRIDGE = f"{PREFIX}-br0"
NODES = (1, 2, 3)
CLIENT = f"{PREFIX}-client"
NAMESPACES = [SWITCH, CLIENT] + [f"{PREFIX}-n{k}" for k in NODES]
SUBNET = "10.77.0"
TRANSPARENT_NODE = 3
SOURCE_DIR = pathlib.Path(__file__).resolve().parents[2]
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
    return f"{PREFIX}-n{k}"


def address(k):
    return f"{SUBNET}.{k}"


# --- namespaces ----------------------------------------------------------------------------

def cleanup():
    """Removes every namespace of ours, killing what runs in it first (also the leftovers of
    a run that crashed)."""
    existing = sh("ip", "netns", "list", check=False).stdout.split()
    for name in NAMESPACES + [f"{PREFIX}-probe"]:
        if name not in existing:
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
    probe = f"{PREFIX}-probe"
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
            lines = path.read_text().splitlines()
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

class Capture:
    """tcpdump on the bridge, inter-node TCP only."""

    def __init__(self, work, name):
        self.path = pathlib.Path(work) / f"{name}.pcap"
        node_filter = f"tcp and src net {SUBNET}.0/30 and dst net {SUBNET}.0/30"
        self.err = open(pathlib.Path(work) / f"{name}.tcpdump", "wb")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", SWITCH, "tcpdump", "-i", BRIDGE, "-U", "-s", "0", "-n",
             "-w", str(self.path), node_filter], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self.err)
        deadline = time.monotonic() + 10
        while b"listening on" not in pathlib.Path(self.err.name).read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tcpdump did not start: " +
                                   pathlib.Path(self.err.name).read_text(errors="replace"))
            time.sleep(0.05)

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)
        self.err.close()
        return scan_pcap(self.path)


def tcp_streams(path):
    """Reassembles the TCP payload of each direction of each flow in a pcap (Ethernet,
    IPv4) by sequence number, dropping retransmitted bytes."""
    data = pathlib.Path(path).read_bytes()
    if len(data) < 24:
        return {}
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise RuntimeError(f"unexpected pcap link type {linktype}")
    segments = {}
    offset = 24
    while offset + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(endian + "IIII", data[offset:offset + 16])
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
        payload = tcp[(tcp[12] >> 4) * 4:]
        if not payload:
            continue
        key = (ip[12:16], sport, ip[16:20], dport)
        segments.setdefault(key, {})[seq] = payload
    streams = {}
    for key, by_seq in segments.items():
        ordered = sorted(by_seq.items())
        base = ordered[0][0]
        stream = bytearray()
        for seq, payload in ordered:
            start = (seq - base) % (1 << 32)
            if start + len(payload) <= len(stream):
                continue
            if start > len(stream):
                stream += b"\x00" * (start - len(stream))  # a segment the capture missed
            stream += payload[len(stream) - start:]
        streams[key] = bytes(stream)
    return streams


def scan_pcap(path):
    """Returns (bytes checked, OP_MSG headers found): a header is a 16-byte MongoDB message
    header with opcode 2013 at offset 12, a length of 21 bytes to 48 MiB and responseTo
    plausible, at any offset of a reassembled stream."""
    checked = 0
    found = 0
    opcode = struct.pack("<i", 2013)
    for stream in tcp_streams(path).values():
        checked += len(stream)
        position = stream.find(opcode, 12)
        while position != -1:
            start = position - 12
            length = struct.unpack("<i", stream[start:start + 4])[0]
            if 21 <= length <= 48 * 1024 * 1024:
                found += 1
            position = stream.find(opcode, position + 1)
    return checked, found


# --- the walk ------------------------------------------------------------------------------

def wait_until(predicate, what, timeout=20):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def run(binary_dir):
    work = pathlib.Path(tempfile.mkdtemp(prefix="tls-sidecar-cluster-"))
    cluster = Cluster(binary_dir, work)
    load = None
    failures = []
    figures = {}
    try:
        log(f"workdir {work}; building 3 hosts and a client in network namespaces")
        build_network()
        pki = work / "pki"
        sh(cluster.sidecar_bin, "certs", "init", pki, "--hosts",
           ",".join(address(k) for k in NODES))
        cluster.start(pki)

        def set_phase(value):
            (work / "phase").write_text(value)

        set_phase("plaintext")
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

        def step(k, *args):
            result = cluster.ctl(k, *args)
            log(f"node {k}: ctl {' '.join(args)}: {result.stdout.strip().splitlines()[0]}")
            time.sleep(1.0)

        # Seeds' step 1: allowTLS on each node, one at a time.
        for k in NODES:
            step(k, "set-mode", "allowTLS")
        set_phase("mixed")
        time.sleep(1.5)
        # The detector must see the plaintext replication traffic of this phase.
        capture = Capture(work, "allow")
        time.sleep(1.5)
        checked, found = capture.stop()
        log(f"capture in allowTLS: {checked} bytes between nodes, {found} plaintext OP_MSG")
        if found == 0:
            failures.append("the capture in allowTLS shows no plaintext OP_MSG: the check "
                            "would not see plaintext")

        # Step 2: clients switch to TLS.
        set_phase("tls")
        def no_plaintext_clients(k):
            rows = cluster.ask(k, "clients", "--transport", "plaintext")["clients"]
            return all(row["kind"] == "member" or row["active"] == 0 for row in rows)
        wait_until(lambda: all(no_plaintext_clients(k) for k in NODES),
                   "plaintext clients to reconnect with TLS")
        log("clients switched to TLS")

        # Step 3: preflight, then preferTLS, one node at a time.
        for k in NODES:
            result = cluster.ctl(k, "preflight", "preferTLS")
            log(f"node {k}: preflight preferTLS:\n{result.stdout.rstrip()}")
            step(k, "set-mode", "preferTLS")

        # Old plaintext connections (members' replication) are closed so they come back
        # over TLS.
        for k in NODES:
            step(k, "drain-plaintext", "1")
        wait_until(lambda: all(cluster.ask(k, "status")["active"]["plaintext"] == 0
                               for k in NODES), "plaintext connections to drain")
        time.sleep(1.0)
        capture = Capture(work, "tls")

        # Step 4: requireTLS, one node at a time.
        for k in NODES:
            step(k, "set-mode", "requireTLS")
        time.sleep(1.5)
        checked, found = capture.stop()
        figures["captured_bytes_checked"] = checked
        figures["plaintext_op_msg_between_nodes"] = found
        log(f"capture after preferTLS: {checked} bytes between nodes checked, "
            f"{found} plaintext OP_MSG")
        if checked < 10000:
            failures.append(f"only {checked} bytes captured between nodes after preferTLS")
        if found != 0:
            failures.append(f"{found} plaintext OP_MSG between nodes after preferTLS")

        # Rollback of node 1, forced, and back up.
        step(1, "set-mode", "allowTLS", "--force")
        time.sleep(1.0)
        cluster.ctl(1, "preflight", "preferTLS")
        step(1, "set-mode", "preferTLS")
        step(1, "set-mode", "requireTLS")
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
        figures.update(operations=result["operations"], failed_operations=result["failures"],
                       clients_switched=result["switched"], heartbeats=totals["hellosOk"],
                       replicated_documents=totals["insertsOk"],
                       failed_heartbeats=heartbeat_failures,
                       replication_reconnects=totals["reconnects"],
                       retried_after_reconnect=totals["retried"])
        for error in result["errors"][:20]:
            log(f"client failure: {error}")
        if result["failures"]:
            failures.append(f"{result['failures']} failed client operations")
        if result["operations"] < 100:
            failures.append(f"only {result['operations']} client operations")
        if heartbeat_failures:
            failures.append(f"{heartbeat_failures} failed peer heartbeats: {stats}")
        if totals["hellosOk"] < 100:
            failures.append(f"only {totals['hellosOk']} heartbeats")
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
