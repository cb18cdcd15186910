"""cluster_net.py: the simulated cluster of rolling_upgrade.py: its network namespaces, and
the processes in them (a tls-sidecar and a stand-in mongod per node), with the faults the walk
applies to them (hot restart, SIGKILL and restart, a stand-in's restart) and the counts it
reads from them.

Topology, all inside network namespaces created and removed here (nothing is sent to any
address outside them), named tlsc-PID-* after the walk's process:

    tlsc-PID-sw      a bridge tlsc-br0 joining one veth per host (tcpdump captures here)
    tlsc-PID-n1..3   10.77.0.1..3: stand-in mongod on 127.0.0.1:27018 with --peer to the two
                 others, advertising the sidecar's address; tls-sidecar on 10.77.0.K:27017
                 upstream of it. Nodes 1 and 2 reach their peers through [[egress.peers]]
                 listeners (peer J at 127.0.1.J:27017); node 3 dials its peers' real
                 addresses and deploy/egress-iptables.sh redirects that into the sidecar's
                 transparent egress listener.
    tlsc-PID-client  10.77.0.100: load.py (pymongo clients) and probe.py
"""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

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
CLIENT_ADDRESS = f"{SUBNET}.100"
TRANSPARENT_NODE = 3
SOURCE_DIR = pathlib.Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
REPL_KEYS = ("hellosOk", "insertsOk", "failures", "reconnects", "retried", "connects")


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


def wait_until(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


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
    hosts = [(node_ns(k), address(k), f"n{k}") for k in NODES] + [(CLIENT, CLIENT_ADDRESS, "cl")]
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

def link_target(name):
    """The node a stand-in's --peer name leads to: 127.0.1.J:27017 (an egress listener) or
    10.77.0.J:27017 (transparent egress) both lead to node J."""
    return int(name.rsplit(":", 1)[0].rsplit(".", 1)[1])


class Cluster:
    """The nodes' processes. A node's process can be replaced (takeover, restart); the
    stand-ins' replication counts are kept across their restarts (carried)."""

    def __init__(self, binary_dir, workdir):
        self.bin = pathlib.Path(binary_dir)
        self.sidecar_bin = self.bin / "tls-sidecar"
        self.standin_bin = self.bin / "tests" / "support" / "mongod_standin"
        self.work = pathlib.Path(workdir)
        self.procs = []
        self.standins = {}      # node -> Popen of its current stand-in
        self.standin_out = {}   # node -> that stand-in's stdout file
        self.standin_argv = {}
        self.carried = {}       # node -> replication counts of its earlier stand-ins
        self.sidecars = {}      # node -> Popen of its current sidecar
        self.sidecar_argv = {}
        self.generation = {}    # node -> how many sidecars were started for it

    def spawn(self, name, ns, argv, stdout=None):
        err = open(self.work / f"{name}.stderr", "wb")
        out = open(self.work / f"{name}.stdout", "wb") if stdout is None else stdout
        proc = subprocess.Popen(["ip", "netns", "exec", ns] + [str(a) for a in argv],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        self.procs.append((name, proc))
        return proc

    def socket(self, k):
        return self.work / f"node{k}.sock"

    def config(self, k):
        return self.work / f"node{k}.toml"

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

    def metric(self, k, series):
        """The value of one series of node k's /metrics (127.0.0.1:9442 in its namespace)."""
        code = ("import urllib.request;print(urllib.request.urlopen("
                "'http://127.0.0.1:9442/metrics',timeout=5).read().decode())")
        text = sh(PYTHON, "-c", code, ns=node_ns(k)).stdout
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return None

    def write_config(self, k, pki):
        peers = [j for j in NODES if j != k]
        lines = [
            "[net]", f'bindIp = "{address(k)}"', "port = 27017",
            'upstream = "127.0.0.1:27018"', "threads = 1", "",
            "[net.tls]", 'mode = "disabled"',
            f'certificateKeyFile = "{pki / f"node{k}.pem"}"',
            f'CAFile = "{pki / "ca.pem"}"', f'clusterFile = "{pki / "cluster.pem"}"',
            # The load's TLS clients present no certificate (runbook, step 1).
            "allowConnectionsWithoutCertificates = true", "",
            "[metrics]", 'listen = "127.0.0.1:9442"', "",
        ]
        if k == TRANSPARENT_NODE:
            lines += ["[egress.transparent]", 'listen = "127.0.0.1:15001"', ""]
        else:
            for j in peers:
                lines += ["[[egress.peers]]", f'listen = "127.0.1.{j}:27017"',
                          f'target = "{address(j)}:27017"', ""]
        self.config(k).write_text("\n".join(lines))

    def start_sidecar(self, k, extra=()):
        """Starts node k's sidecar with its argv (plus `extra`); returns the process."""
        self.generation[k] = self.generation.get(k, 0) + 1
        name = f"sidecar{k}" if self.generation[k] == 1 else f"sidecar{k}-{self.generation[k]}"
        proc = self.spawn(name, node_ns(k), self.sidecar_argv[k] + list(extra))
        self.sidecars[k] = proc
        return proc

    def start_standin(self, k):
        """Starts node k's stand-in and waits until it listens (and so handles SIGUSR1,
        whose default action would end it)."""
        name = f"standin{k}" if k not in self.standins else f"standin{k}-restarted"
        proc = self.spawn(name, node_ns(k), self.standin_argv[k])
        self.standins[k] = proc
        self.standin_out[k] = self.work / f"{name}.stdout"
        wait_until(lambda: proc.poll() is not None or
                   "listening on" in self.standin_out[k].read_text(),
                   f"stand-in {k} to listen", timeout=20)
        if proc.poll() is not None:
            raise RuntimeError(f"stand-in {k} exited\n{self.tail(name)}")

    def start(self, pki):
        """Starts every stand-in, then every sidecar: a member's first connection through
        the sidecars finds the peer's mongod listening. Node 3's redirect is in place before
        its stand-in dials anything."""
        sh(SOURCE_DIR / "deploy" / "egress-iptables.sh", "--listen-port", "15001",
           ns=node_ns(TRANSPARENT_NODE))
        for k in NODES:
            peers = [j for j in NODES if j != k]
            targets = ([f"{address(j)}:27017" for j in peers] if k == TRANSPARENT_NODE
                       else [f"127.0.1.{j}:27017" for j in peers])
            # A replica set member that advertises its sidecar's address (runbook, step 0):
            # drivers see a primary, so their retryable writes apply.
            argv = [self.standin_bin, "--bind", "127.0.0.1", "--port", "27018",
                    "--replSet", "rs0", "--advertise", f"{address(k)}:27017"]
            for target in targets:
                argv += ["--peer", target]
            self.standin_argv[k] = argv
            self.start_standin(k)
        for k in NODES:
            self.write_config(k, pki)
            self.sidecar_argv[k] = [self.sidecar_bin, "--config", self.config(k),
                                    "--control-socket", self.socket(k)]
            self.start_sidecar(k)
        for k in NODES:
            self.wait_serving(k)

    def wait_serving(self, k, timeout=20):
        """Waits until node k's current sidecar answers on its control socket."""
        proc = self.sidecars[k]
        name = self.procs[[p for _, p in self.procs].index(proc)][0]
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sidecar {k} exited\n{self.tail(name)}")
            if self.socket(k).exists() and self.ctl(k, "status", check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sidecar {k} did not start\n{self.tail(name)}")
            time.sleep(0.1)

    # --- faults ----------------------------------------------------------------------------

    def takeover(self, k):
        """Hot restart: a new sidecar with the same argv plus --takeover receives the
        listening sockets; the old one drains and must exit 0. Returns the old exit status."""
        old = self.sidecars[k]
        self.start_sidecar(k, extra=["--takeover"])
        try:
            status = old.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"node {k}: the old sidecar did not exit after the takeover")
        self.wait_serving(k)
        return status

    def kill_and_restart_sidecar(self, k):
        """SIGKILL node k's sidecar, then start it again with the same argv (the mode comes
        from its persisted configuration). Returns the killed process's status."""
        old = self.sidecars[k]
        old.send_signal(signal.SIGKILL)
        status = old.wait(timeout=10)
        self.start_sidecar(k)
        self.wait_serving(k)
        return status

    def restart_standin(self, k):
        """SIGTERM node k's stand-in mongod, then start it again with the same argv. Its
        counts so far (printed at exit) are carried. Returns the stopped one's status."""
        old = self.standins[k]
        old.send_signal(signal.SIGTERM)
        status = old.wait(timeout=10)
        self.start_standin(k)
        # Its last line, printed at exit, has its final counts.
        lines = [line for line in self.procs_stdout(old).splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"stand-in {k} printed no counts at exit")
        self.carried[k] = add_stats(self.carried.get(k), json.loads(lines[-1]))
        return status

    def procs_stdout(self, proc):
        name = self.procs[[p for _, p in self.procs].index(proc)][0]
        return (self.work / f"{name}.stdout").read_text()

    # --- counts ----------------------------------------------------------------------------

    def repl_stats(self, k):
        """Node k's stand-in replication counts (those of its earlier processes added): SIGUSR1
        makes the current one print one JSON line, with a "peers" object by link."""
        path = self.standin_out[k]
        before = path.read_text().count("\n")
        self.standins[k].send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            # Only whole lines: the stand-in's write of a line may be read half done.
            text = path.read_text()
            lines = text[:text.rfind("\n") + 1].splitlines()
            if len(lines) > before and lines[-1].startswith("{"):
                return add_stats(self.carried.get(k), json.loads(lines[-1]))
            time.sleep(0.05)
        raise RuntimeError(f"stand-in {k} printed no statistics\n{self.tail(path.stem)}")

    def heartbeat_totals(self):
        """({node: stats}, totals over every node) of the stand-ins' replication counts."""
        stats = {k: self.repl_stats(k) for k in NODES}
        return stats, {key: sum(s[key] for s in stats.values()) for key in REPL_KEYS}

    def tail(self, name, lines=30):
        path = self.work / f"{name}.stderr"
        text = path.read_text(errors="replace") if path.exists() else ""
        return f"--- {name}\n" + "\n".join(text.splitlines()[-lines:])

    def names(self):
        return [name for name, _ in self.procs]

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


def add_stats(a, b):
    """The sum of two replication counts (either may be None), links by node pair."""
    if a is None:
        return b
    total = {key: a.get(key, 0) + b.get(key, 0) for key in REPL_KEYS}
    total["peers"] = {}
    for stats in (a, b):
        for name, link in stats.get("peers", {}).items():
            mine = total["peers"].setdefault(name, {key: 0 for key in REPL_KEYS})
            for key in REPL_KEYS:
                mine[key] += link.get(key, 0)
    return total


def links(stats):
    """{(from node, to node): counts} from {node: stats}."""
    return {(k, link_target(name)): link for k, s in stats.items()
            for name, link in s.get("peers", {}).items()}
