"""Metrics and readiness as operators use them (SPEC §7, §8): a real Prometheus server
scrapes the sidecar while pymongo clients come and go; a flood of invented application
names cannot grow the label sets past the bound; /ready follows the upstream mongod; and
serving HTTP does not pull OpenSSL into the process."""

import concurrent.futures
import json
import os
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pymongo

import harness
from harness import wait_until


# --- helpers -----------------------------------------------------------------------------

def http_get(url, timeout=5):
    """(status, body) of a GET; a 503 is an answer, not an error."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(metrics_address):
    status, body = http_get(f"http://{metrics_address}/metrics")
    assert status == 200, body
    return body


def series(text, name):
    """The sample lines of metric `name` in Prometheus text format."""
    return [line for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")]


def sample_value(line):
    return float(line.rsplit(" ", 1)[1])


def open_sockets_to(port):
    """Established TCP connections from this process to 127.0.0.1:port, read from /proc:
    what the client libraries really hold open, whatever their version does."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if (fields[2].endswith(f":{port:04X}") and fields[3] == "01"
                        and fields[9] in inodes):
                    count += 1
    return count


def stable_socket_count(port, settle=1.0, timeout=15):
    """The number of our connections to `port` once it has not changed for `settle`
    seconds (drivers open their monitoring connections in background threads)."""
    deadline = time.monotonic() + timeout
    value, since = open_sockets_to(port), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = open_sockets_to(port)
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= settle:
            return value
    raise AssertionError(f"connections to {port} did not settle (last {value})")


class Prometheus:
    """Debian's Prometheus server on loopback, scraping `targets` every second, with its
    storage in `workdir`. Registered with the test's ProcessGroup so it is always stopped."""

    def __init__(self, procs, targets):
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed (Debian package prometheus; tests/run.sh)"
        workdir = procs.workdir / "prometheus"
        workdir.mkdir()
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: tls-sidecar\n    static_configs:\n"
            f"      - targets: {json.dumps(list(targets))}\n")
        self.port = harness.free_port()
        self.child = harness.Child(
            "prometheus",
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            workdir)
        procs.children.append(self.child)
        wait_until(self._ready, 60, "Prometheus ready")

    def _ready(self):
        assert self.child.alive(), self.child.describe()
        try:
            return http_get(f"http://127.0.0.1:{self.port}/-/ready", timeout=2)[0] == 200
        except OSError:
            return False

    def query(self, promql):
        """The instant vector of `promql`: a list of (labels, float value)."""
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": promql}))
        status, body = http_get(url)
        assert status == 200, body
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return [(r["metric"], float(r["value"][1])) for r in answer["data"]["result"]]

    def scalar(self, promql):
        """The single value of `promql`, or None when the vector is empty."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return result[0][1] if result else None

    def wait_for(self, promql, expected, timeout=30):
        wait_until(lambda: self.scalar(promql) == expected, timeout,
                   f"{promql} == {expected}")


def tls_sidecar_args(pki):
    return ("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["server"],
            "--tlsCAFile", pki["ca"])


def hello_with_appname(name, request_id):
    return harness.op_msg({"hello": 1, "$db": "admin",
                           "client": {"application": {"name": name},
                                      "driver": {"name": "flood", "version": "1.0"},
                                      "os": {"type": "Linux"}}},
                          request_id=request_id)


# --- the tests -----------------------------------------------------------------------------

PLAINTEXT = 'sum(tls_sidecar_connections_active{transport="plaintext"})'
TLS = 'sum(tls_sidecar_connections_active{transport="tls"})'


def test_prometheus_sees_plaintext_clients_by_application_and_their_departure(procs, pki):
    standin = procs.standin()
    metrics_address = f"127.0.0.1:{harness.free_port()}"
    sidecar = procs.sidecar(*tls_sidecar_args(pki), upstream=standin.address,
                            metrics=metrics_address)
    prometheus = Prometheus(procs, [metrics_address])
    prometheus.wait_for('tls_sidecar_mode{mode="allowTLS"}', 1)

    # Three plaintext applications "billing" and two TLS applications "web". A pymongo
    # MongoClient holds more than one connection: a monitoring connection of its own
    # (pymongo 4 adds an RTT monitor when the server streams hellos) plus its pool (one
    # connection here, maxPoolSize=1, after one command). So the gauge must show 3 clients'
    # worth of connections: what /proc says this process holds open, 3 equal shares of it.
    options = dict(directConnection=True, maxPoolSize=1, serverSelectionTimeoutMS=10000)
    billing, per_billing_client = [], []
    try:
        for _ in range(3):
            before = stable_socket_count(sidecar.port)
            client = pymongo.MongoClient("127.0.0.1", sidecar.port, appname="billing", **options)
            billing.append(client)
            assert client.admin.command("ping")["ok"] == 1
            per_billing_client.append(stable_socket_count(sidecar.port) - before)
        plaintext_open = stable_socket_count(sidecar.port)
        assert per_billing_client[0] >= 1 and len(set(per_billing_client)) == 1, per_billing_client
        assert plaintext_open == 3 * per_billing_client[0]

        web = []
        for _ in range(2):
            client = pymongo.MongoClient("127.0.0.1", sidecar.port, appname="web", tls=True,
                                         tlsCAFile=str(pki["ca"]), **options)
            web.append(client)
            assert client.admin.command("ping")["ok"] == 1
        tls_open = stable_socket_count(sidecar.port) - plaintext_open
        assert tls_open >= 2

        prometheus.wait_for(PLAINTEXT, plaintext_open)
        prometheus.wait_for(TLS, tls_open)
        billing_series = prometheus.query(
            'tls_sidecar_plaintext_client_connections_total{application="billing"}')
        assert billing_series, "no series for application billing"
        assert all(labels["kind"] == "client" and labels["driver"].startswith("PyMongo")
                   for labels, _ in billing_series), billing_series
        # Every plaintext connection pymongo opened carried the name (monitor and pool).
        assert sum(value for _, value in billing_series) == plaintext_open
        # TLS clients are not plaintext clients.
        assert prometheus.query(
            'tls_sidecar_plaintext_client_connections_total{application="web"}') == []
        assert prometheus.scalar('tls_sidecar_mode{mode="allowTLS"}') == 1
        assert prometheus.scalar("tls_sidecar_ready") == 1

        # The plaintext clients leave: the gauge goes to 0, the TLS ones stay.
        for client in billing:
            client.close()
        billing = []
        prometheus.wait_for(PLAINTEXT, 0)
        assert prometheus.scalar(TLS) == tls_open
    finally:
        for client in billing + web:
            client.close()

    # Serving HTTP (civetweb) never loaded OpenSSL: only BoringSSL is mapped.
    maps = pathlib.Path(f"/proc/{sidecar.proc.pid}/maps").read_text()
    ssl_files = {line.split()[-1] for line in maps.splitlines()
                 if "libssl" in line or "libcrypto" in line}
    assert ssl_files, "BoringSSL is not mapped at all?"
    assert all("/android/" in path for path in ssl_files), ssl_files


def test_a_flood_of_application_names_keeps_label_sets_bounded(procs):
    standin = procs.standin()
    metrics_address = f"127.0.0.1:{harness.free_port()}"
    sidecar = procs.sidecar("--tlsMode", "disabled", upstream=standin.address,
                            metrics=metrics_address)
    total = 10_000

    def connect_range(start, stop):
        for i in range(start, stop):
            with socket.create_connection(("127.0.0.1", sidecar.port), timeout=10) as sock:
                sock.sendall(hello_with_appname(f"flood-app-{i:05d}", request_id=i + 1))
                _, reply = harness.read_reply(sock)
                assert reply["ok"] == 1, reply

    workers = 8
    step = total // workers
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(connect_range, w * step, (w + 1) * step) for w in range(workers)]
        for future in futures:
            future.result()

    def all_counted():
        lines = series(scrape(metrics_address), "tls_sidecar_plaintext_client_connections_total")
        return lines if sum(sample_value(line) for line in lines) == total else None

    lines = wait_until(all_counted, 15, f"{total} plaintext client connections counted")
    # SPEC §7: the client table keeps at most 256 distinct application/driver pairs, "other"
    # among them, and folds the rest into "other": all clients here are of kind "client", so
    # exactly 256 series, the first 255 names seen keeping their own, one connection each.
    cap = 256
    assert len(lines) == cap, len(lines)
    other = [line for line in lines if 'application="other"' in line]
    assert len(other) == 1 and 'driver="other"' in other[0], other
    named = [line for line in lines if 'application="flood-app-' in line]
    assert len(named) == cap - 1, len(named)
    assert all(sample_value(line) == 1 for line in named)
    assert sample_value(other[0]) == total - (cap - 1), other
    assert sidecar.alive()


def test_ready_follows_the_upstream_mongod(procs):
    upstream_port = harness.free_port()
    metrics_address = f"127.0.0.1:{harness.free_port()}"
    # The sidecar starts first, its mongod is not there yet: it keeps running, not ready.
    sidecar = procs.sidecar("--tlsMode", "disabled", upstream=f"127.0.0.1:{upstream_port}",
                            metrics=metrics_address)
    curl = shutil.which("curl")
    assert curl, "curl is not installed (tests/run.sh installs it)"

    def ready_status():
        result = subprocess.run([curl, "-s", "-o", "/dev/stderr", "-w", "%{http_code}",
                                 f"http://{metrics_address}/ready"],
                                capture_output=True, text=True, timeout=10)
        return int(result.stdout or 0), result.stderr

    status, body = wait_until(lambda: ready_status() if ready_status()[0] else None, 10,
                              "/ready answering")
    assert status == 503, body
    assert "upstream" in body and "connection refused" in body, body
    assert series(scrape(metrics_address), "tls_sidecar_ready") == ["tls_sidecar_ready 0"]
    sidecar.wait_for_log("does not answer hello")

    # The stand-in comes up on that port: within the backoff (at most 5 s) it is ready.
    standin = procs.standin("--port", str(upstream_port))
    assert standin.port == upstream_port
    status, body = wait_until(lambda: (lambda r: r if r[0] == 200 else None)(ready_status()),
                              15, "/ready 200 after mongod started")
    assert body == "ready\n"
    assert series(scrape(metrics_address), "tls_sidecar_ready") == ["tls_sidecar_ready 1"]

    # And mongod going away is noticed by the periodic re-probe.
    standin.proc.terminate()  # the group still stops (and describes) it at the end
    standin.proc.wait(timeout=10)
    status, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(ready_status()),
                              30, "/ready 503 after mongod stopped")
    assert "upstream" in body, body
    assert sidecar.alive()


def test_warns_when_the_replica_set_advertises_mongod_itself(procs):
    # The stand-in's replica set advertises its own address: drivers that discover it would
    # connect to mongod directly, around the sidecar (SPEC §8, §11).
    standin = procs.standin("--replSet", "rs0")
    sidecar = procs.sidecar("--tlsMode", "disabled", upstream=standin.address)
    line = sidecar.wait_for_log("which is this host but not the sidecar", timeout=15)
    assert standin.address in line
    assert f"127.0.0.1:{sidecar.port}" in line
