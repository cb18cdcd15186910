"""Plaintext clients refused in requireTLS stay visible where the runbook looks (SPEC §6, §7):
real drivers (pymongo and the Node.js driver) that connect without tls=true are refused with
the readable error, then appear in `ctl clients --transport plaintext` (JSON and table) in
state `refused` with their address, application, driver, count and last seen, and in
tls_sidecar_plaintext_client_refusals_total{application,driver}."""

import json
import re
import subprocess
import time
import urllib.request

import pymongo
import pytest

import clients
import harness


def ctl(sidecar, *args):
    return subprocess.run([str(harness.sidecar_binary()), "ctl", "--socket",
                           str(sidecar.stderr_path.parent / f"{sidecar.name}.sock"), *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


def plaintext_rows(sidecar):
    answer = ctl(sidecar, "--json", "clients", "--transport", "plaintext")
    assert answer.returncode == 0, answer
    return json.loads(answer.stdout)["clients"]


def refusals(metrics_address):
    """{(application, driver): value} of tls_sidecar_plaintext_client_refusals_total."""
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = {}
    pattern = re.compile(r'^tls_sidecar_plaintext_client_refusals_total\{(.*)\} (\S+)$')
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1)))
            assert set(labels) == {"application", "driver"}, line
            found[(labels["application"], labels["driver"])] = float(match.group(2))
    return found


def rejected_plaintext_in_require_tls(metrics_address):
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith('tls_sidecar_connections_rejected_total{reason="plaintext_in_requireTLS"}'):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no plaintext_in_requireTLS series")


def wait_for_row(sidecar, application, timeout=20):
    deadline = time.monotonic() + timeout
    rows = []
    while time.monotonic() < deadline:
        rows = plaintext_rows(sidecar)
        mine = [r for r in rows if r["application"] == application]
        if mine:
            return mine
        time.sleep(0.1)
    raise AssertionError(f"no row for {application!r} within {timeout}s: {rows}")


@pytest.fixture
def require_tls(procs, pki):
    standin = procs.standin()
    metrics_address = f"127.0.0.1:{harness.free_port()}"
    sidecar = procs.sidecar("--tlsMode", "requireTLS", "--tlsCertificateKeyFile", pki["server"],
                            upstream=standin.address, metrics=metrics_address)
    return sidecar, metrics_address


def refuse_pymongo(port, appname):
    client = pymongo.MongoClient("127.0.0.1", port, appname=appname, directConnection=True,
                                 serverSelectionTimeoutMS=3000, connectTimeoutMS=3000)
    try:
        with pytest.raises(pymongo.errors.PyMongoError) as refused:
            client.admin.command("ping")
    finally:
        client.close()
    assert "requires TLS" in str(refused.value), refused.value


def refuse_node(port, appname):
    result = harness.node_crud(clients.uri(port, False, None), "refused", appname=appname)
    assert result.returncode != 0, result
    assert "requires TLS" in result.stdout + result.stderr, result


def check_refused_row(rows, driver_pattern):
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["state"] == "refused", row
    assert row["address"] == "127.0.0.1", row
    assert row["transport"] == "plaintext" and row["kind"] == "client", row
    assert re.search(driver_pattern, row["driver"], re.IGNORECASE), row
    assert row["active"] == 0 and row["total"] >= 1, row
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["lastSeen"]), row
    return row


@pytest.mark.parametrize("driver", ["pymongo", "node"])
def test_a_driver_refused_in_require_tls_is_listed_and_counted(require_tls, driver):
    sidecar, metrics_address = require_tls
    appname = f"refused-{driver}"
    assert plaintext_rows(sidecar) == []
    if driver == "pymongo":
        refuse_pymongo(sidecar.port, appname)
        driver_pattern = r"pymongo"
    else:
        refuse_node(sidecar.port, appname)
        driver_pattern = r"nodejs"
    # The client has given up (closed, or its process exited), but a connection its monitor
    # opened just before closing may still be being refused: the row and the metric are read
    # until they agree, and must agree within the deadline.
    row = check_refused_row(wait_for_row(sidecar, appname), driver_pattern)

    # The metric carries the application and driver of the hello, as many times as the row.
    deadline = time.monotonic() + 10
    while True:
        counted = refusals(metrics_address)
        if counted.get((appname, row["driver"])) == row["total"]:
            break
        assert time.monotonic() < deadline, (counted, row)
        time.sleep(0.2)
        row = check_refused_row(wait_for_row(sidecar, appname), driver_pattern)
    # Every refusal is one plaintext_in_requireTLS rejection, and one count in a row.
    all_rows = plaintext_rows(sidecar)
    assert all(r["state"] == "refused" for r in all_rows), all_rows
    assert sum(r["total"] for r in all_rows) == rejected_plaintext_in_require_tls(metrics_address)
    assert sum(counted.values()) == sum(r["total"] for r in all_rows), (counted, all_rows)

    # The table for people has a state column and the row.
    table = ctl(sidecar, "clients", "--transport", "plaintext")
    assert table.returncode == 0, table
    lines = table.stdout.splitlines()
    assert "STATE" in lines[0].split(), table.stdout
    line = [l for l in lines if appname in l]
    assert len(line) == 1 and "refused" in line[0].split(), table.stdout
    # Not a TLS client: the TLS view has no such row.
    tls_view = json.loads(ctl(sidecar, "--json", "clients", "--transport", "tls").stdout)
    assert not [r for r in tls_view["clients"] if r["application"] == appname], tls_view


def test_connected_and_refused_rows_of_one_application_are_apart(procs, pki):
    # Connected before the switch, refused after it: the open connection stays `connected`
    # and the newcomer is a separate `refused` row, so the gate's view is not confused.
    standin = procs.standin()
    metrics_address = f"127.0.0.1:{harness.free_port()}"
    sidecar = procs.sidecar("--tlsMode", "preferTLS", "--tlsCertificateKeyFile", pki["server"],
                            upstream=standin.address, metrics=metrics_address)
    early = pymongo.MongoClient("127.0.0.1", sidecar.port, appname="orders",
                                directConnection=True, maxPoolSize=1,
                                serverSelectionTimeoutMS=4000)
    try:
        early.admin.command("ping")
        forced = ctl(sidecar, "--json", "set-mode", "requireTLS", "--force")
        assert forced.returncode == 0, forced
        refuse_pymongo(sidecar.port, "orders")
        deadline = time.monotonic() + 20
        while True:
            rows = [r for r in plaintext_rows(sidecar) if r["application"] == "orders"]
            states = sorted(r["state"] for r in rows)
            if states == ["connected", "refused"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert states == ["connected", "refused"], rows
        connected = [r for r in rows if r["state"] == "connected"][0]
        refused = [r for r in rows if r["state"] == "refused"][0]
        assert connected["active"] >= 1, connected
        assert refused["active"] == 0 and refused["total"] >= 1, refused
        # The early client still works over its pooled connection.
        assert early.admin.command("ping")["ok"] == 1
    finally:
        early.close()
    assert sidecar.alive()
