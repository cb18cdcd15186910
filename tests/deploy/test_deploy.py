"""Checks of deploy/: the Grafana dashboard and the Prometheus files query only the metrics
that SPEC §7 names (the sidecar's public contract), and every query parses.

promtool's own checks and unit tests of the alert rules run as separate ctest tests (see
CMakeLists.txt beside this file); this file covers what they cannot see: a misspelt metric
name gives an empty panel or an alert that never fires, and passes every syntax check.
"""

import json
import pathlib
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

SOURCE_DIR = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = SOURCE_DIR / "deploy" / "grafana" / "tls-sidecar.json"
RULES = SOURCE_DIR / "deploy" / "prometheus" / "tls-sidecar.rules.yml"

sys.path.insert(0, str(SOURCE_DIR / "tests" / "e2e"))

import harness  # noqa: E402

# SPEC §7: name -> type. Dashboards and alerts depend on these names.
SPEC_METRICS = {
    "tls_sidecar_connections_accepted_total": "counter",
    "tls_sidecar_connections_active": "gauge",
    "tls_sidecar_connections_rejected_total": "counter",
    "tls_sidecar_plaintext_client_connections_total": "counter",
    "tls_sidecar_plaintext_client_refusals_total": "counter",
    "tls_sidecar_tls_handshakes_total": "counter",
    "tls_sidecar_tls_handshake_duration_seconds": "histogram",
    "tls_sidecar_bytes_total": "counter",
    "tls_sidecar_mode": "gauge",
    "tls_sidecar_mode_transitions_total": "counter",
    "tls_sidecar_mode_persisted": "gauge",
    "tls_sidecar_certificate_expiry_timestamp_seconds": "gauge",
    "tls_sidecar_certificate_reloads_total": "counter",
    "tls_sidecar_upstream_connect_failures_total": "counter",
    "tls_sidecar_ready": "gauge",
    "tls_sidecar_tls_sni_total": "counter",
    "tls_sidecar_build_info": "gauge",
    # Issue 15: the next step's readiness verdict per node, {next_mode, reason}.
    "tls_sidecar_next_mode_ready": "gauge",
}
# OCSP (SPEC §5's OCSP keys, issue 16), served while net.tls.ocspEnabled (the default).
SPEC_METRICS.update({
    "tls_sidecar_ocsp_checks_total": "counter",
    "tls_sidecar_ocsp_soft_failures_total": "counter",
    "tls_sidecar_ocsp_responder_requests_total": "counter",
    "tls_sidecar_ocsp_staple_status": "gauge",
    "tls_sidecar_ocsp_staple_this_update_timestamp_seconds": "gauge",
    "tls_sidecar_ocsp_staple_next_update_timestamp_seconds": "gauge",
    "tls_sidecar_ocsp_staple_next_refresh_timestamp_seconds": "gauge",
    "tls_sidecar_ocsp_staple_last_success_timestamp_seconds": "gauge",
})
# Hot restart (SPEC §10, issue 13): how often this sidecar took over from a running one.
SPEC_METRICS["tls_sidecar_restarts_total"] = "counter"


def queryable_names():
    """Every series name a query may use: histograms add _bucket, _sum and _count."""
    names = set()
    for name, kind in SPEC_METRICS.items():
        names.add(name)
        if kind == "histogram":
            names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


METRIC_NAME = re.compile(r"\btls_sidecar_[a-z0-9_]+")


def load_dashboard():
    with open(DASHBOARD, encoding="utf-8") as f:
        return json.load(f)


def all_panels(panels):
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_queries(dashboard):
    """(where, expr) for every panel target, annotation and variable query."""
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target.get('refId')}", target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]


@pytest.fixture
def procs(tmp_path):
    group = harness.ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        print(group.describe())
        group.stop_all()


def served_families(metrics_address, timeout=15):
    """name -> type of every family on a live /metrics, from its `# TYPE` lines."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as r:
                body = r.read().decode()
            break
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.MULTILINE))


def control(sidecar, **request):
    """One request on the sidecar's control socket; the parsed answer."""
    return harness.control_request(sidecar.stderr_path.parent / f"{sidecar.name}.sock", request)


def plaintext_hello(port):
    """A hello with an application name, as a driver's first message; the reply document."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(harness.op_msg({"hello": 1, "$db": "admin",
                                     "client": {"application": {"name": "deploy-test"},
                                                "driver": {"name": "raw", "version": "1"}}}))
        return harness.read_reply(sock)[1]


def test_the_running_sidecar_serves_exactly_the_spec_metrics(procs, tmp_path):
    """The names and types a running tls-sidecar serves are SPEC §7's, so the dashboard and
    rules above, checked against the same list, query what the binary exports. A family
    with labels has no series until something happens, so the sidecar is given a certificate,
    a TLS client, a plaintext client and, in requireTLS, a refused plaintext client."""
    pki = harness.make_pki(tmp_path / "pki")
    standin = procs.standin()
    metrics = f"127.0.0.1:{harness.free_port()}"
    sidecar = procs.sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", pki["server"],
                            "--tlsCAFile", pki["ca"], upstream=standin.address, metrics=metrics)
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.load_cert_chain(str(pki["client"]))
    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(harness.op_msg({"hello": 1, "$db": "admin"}))
            assert harness.read_reply(tls)[1]["ok"] == 1
    assert plaintext_hello(sidecar.port)["ok"] == 1
    answer = control(sidecar, cmd="setMode", mode="requireTLS", force=True)
    assert answer["ok"] is True, answer
    assert plaintext_hello(sidecar.port)["ok"] == 0

    served = {name: kind for name, kind in served_families(metrics).items()
              if name.startswith("tls_sidecar_")}
    assert served == SPEC_METRICS, {
        "served, not in SPEC": sorted(set(served) - set(SPEC_METRICS)),
        "in SPEC, not served": sorted(set(SPEC_METRICS) - set(served)),
        "other type": sorted(n for n in served.keys() & SPEC_METRICS.keys()
                             if served[n] != SPEC_METRICS[n]),
    }


def test_dashboard_is_json_with_the_datasource_as_a_variable():
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    # Every query goes through the variable: no data source uid of someone's Grafana.
    for panel in all_panels(dashboard["panels"]):
        if panel.get("type") == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            assert annotation["datasource"]["uid"] == "${DS_PROMETHEUS}"
    ids = [p["id"] for p in all_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_dashboard_queries_only_spec_metrics():
    allowed = queryable_names()
    used = set()
    for where, expr in dashboard_queries(load_dashboard()):
        names = set(METRIC_NAME.findall(expr))
        assert names, f"{where} queries no tls-sidecar metric: {expr}"
        assert names <= allowed, f"{where} queries metrics not in SPEC §7: {names - allowed}"
        used |= names
    variable = {v["name"]: v for v in load_dashboard()["templating"]["list"]}["instance"]
    assert set(METRIC_NAME.findall(variable["definition"])) <= allowed


def test_dashboard_shows_what_operators_need():
    """The panels the upgrade is watched with: each must exist and query its metric."""
    queries = list(dashboard_queries(load_dashboard()))

    def panels_using(pattern):
        return [where for where, expr in queries if re.search(pattern, expr)]

    assert panels_using(r"by \(instance, transport\) \(tls_sidecar_connections_active"), \
        "TLS vs plaintext connections per node"
    assert panels_using(r"by \(instance, application, driver, kind\) "
                        r"\(increase\(tls_sidecar_plaintext_client_connections_total"), \
        "the who-is-left table"
    assert panels_using(r"by \(reason\) \(rate\(tls_sidecar_connections_rejected_total"), \
        "rejections by reason"
    assert panels_using(r"version, cipher.*tls_sidecar_tls_handshakes_total"), \
        "handshakes by version and cipher"
    assert panels_using(r"histogram_quantile\(.*tls_sidecar_tls_handshake_duration_seconds_bucket"), \
        "handshake latency"
    assert panels_using(r"tls_sidecar_mode\{"), "mode per node"
    assert any(where.startswith("annotation") and "tls_sidecar_mode_transitions_total" in expr
               for where, expr in queries), "mode transitions marked"
    assert panels_using(r"tls_sidecar_certificate_expiry_timestamp_seconds.*- time\(\)"), \
        "certificate days left"
    assert panels_using(r"by \(instance, next_mode, reason\) \(tls_sidecar_next_mode_ready"), \
        "the next step's verdict per node"


def test_readiness_table_reads_at_a_glance():
    """One row per node: its next mode, ready or not ready in colour, and the reason."""
    tables = [p for p in all_panels(load_dashboard()["panels"])
              if p.get("type") == "table" and "tls_sidecar_next_mode_ready" in
              json.dumps(p.get("targets", []))]
    assert len(tables) == 1, [p["title"] for p in tables]
    table = tables[0]
    assert table["gridPos"]["y"] < 12, "near the top, beside the overview"
    target = table["targets"][0]
    assert target["instant"] is True and target["format"] == "table", target
    value = [o for o in table["fieldConfig"]["overrides"]
             if o["matcher"] == {"id": "byName", "options": "Value"}]
    assert value, table["fieldConfig"]
    properties = {p["id"]: p["value"] for p in value[0]["properties"]}
    mapping = properties["mappings"][0]["options"]
    assert mapping["0"]["text"] == "not ready" and mapping["1"]["text"] == "ready", mapping
    assert "ctl readiness" in table["description"]


def test_who_is_left_table_lists_connected_and_refused_clients():
    """After requireTLS the refused plaintext clients are the ones left to move: the same table
    shows them beside the connected ones, one row per application and driver."""
    tables = [p for p in all_panels(load_dashboard()["panels"])
              if p.get("type") == "table" and "who is left" in p["title"]]
    assert len(tables) == 1, [p["title"] for p in tables]
    table = tables[0]
    by_ref = {t["refId"]: t for t in table["targets"]}
    assert re.search(r"by \(instance, application, driver, kind\) "
                     r"\(increase\(tls_sidecar_plaintext_client_connections_total",
                     by_ref["A"]["expr"]), by_ref["A"]["expr"]
    assert re.search(r"by \(instance, application, driver\) "
                     r"\(increase\(tls_sidecar_plaintext_client_refusals_total",
                     by_ref["B"]["expr"]), by_ref["B"]["expr"]
    for target in by_ref.values():
        assert target["instant"] is True and target["format"] == "table", target
    # Two instant table queries become one table only through a merge; their values are
    # "Value #A" and "Value #B", each shown under a name an operator can read.
    transformations = [t["id"] for t in table["transformations"]]
    assert transformations and transformations[0] == "merge", transformations
    names = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
             for o in table["fieldConfig"]["overrides"] if o["matcher"]["id"] == "byName"}
    assert names["Value #A"]["displayName"] == "connections in range", names
    assert names["Value #B"]["displayName"] == "refused in range", names
    organize = [t for t in table["transformations"] if t["id"] == "organize"]
    assert organize and {"Value #A", "Value #B"} <= set(organize[0]["options"]["indexByName"])
    assert "ctl clients" in table["description"] and "refused" in table["description"]


def test_alert_rules_use_only_spec_metrics():
    allowed = queryable_names() | {"up"}
    rules = yaml.safe_load(RULES.read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert len(alerts) >= 6
    for rule in alerts:
        names = set(METRIC_NAME.findall(rule["expr"]))
        assert names or "up{" in rule["expr"], rule["alert"]
        assert names <= allowed, f"{rule['alert']} uses metrics not in SPEC §7: {names - allowed}"
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_dashboard_query_is_valid_promql(tmp_path):
    """Grafana's variables replaced by what Grafana would send, each query becomes a
    recording rule that promtool parses."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (Debian package prometheus; tests/run.sh installs it)"
    records = []
    for i, (where, expr) in enumerate(dashboard_queries(load_dashboard())):
        concrete = (expr.replace("$__rate_interval", "1m").replace("$__range", "6h")
                    .replace("$instance", ".*"))
        assert "$" not in concrete, f"{where}: unknown variable in {expr}"
        records.append({"record": f"dashboard:query_{i}", "expr": concrete})
    path = tmp_path / "dashboard-queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
