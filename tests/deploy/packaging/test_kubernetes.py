"""deploy/kubernetes: every document validated offline against the Kubernetes API's schemas
(kubernetes-models, from npm: ajv validators generated from the API's OpenAPI definitions) and
the Prometheus Operator's, every field name checked against the API's types (the generated
validators accept unknown fields, which the API server would drop with a warning), the egress
component applied as kustomize would, and the fields that matter checked: a native sidecar
owning 27017 beside mongod on loopback, probes, mounts, security contexts, and a ConfigMap
whose TOML `tls-sidecar --check-config` loads.
"""

import copy
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

import harness
from conftest import DEPLOY_DIR

KUBE_DIR = DEPLOY_DIR / "kubernetes"
VALIDATOR_DIR = pathlib.Path(__file__).resolve().parent / "kubernetes"
NODE_MODULES = VALIDATOR_DIR / "node_modules"


def load_all(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def base_documents():
    kustomization = yaml.safe_load((KUBE_DIR / "kustomization.yaml").read_text())
    docs = []
    for resource in kustomization["resources"]:
        docs += load_all(KUBE_DIR / resource)
    return docs


def json_pointer_parts(path):
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def apply_json_patch(doc, operations):
    """RFC 6902 add and replace: all that the component uses."""
    doc = copy.deepcopy(doc)
    for op in operations:
        *parents, last = json_pointer_parts(op["path"])
        target = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if op["op"] == "add" and isinstance(target, list):
            target.insert(len(target) if last == "-" else int(last), op["value"])
        elif op["op"] in ("add", "replace"):
            if op["op"] == "replace":
                assert (int(last) < len(target)) if isinstance(target, list) else last in target, \
                    f"replace of a missing {op['path']}"
            target[int(last) if isinstance(target, list) else last] = op["value"]
        else:
            raise AssertionError(f"unsupported patch op {op['op']}")
    return doc


def with_egress_component(docs):
    component = yaml.safe_load((KUBE_DIR / "egress" / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    docs = list(docs)
    for patch in component["patches"]:
        operations = yaml.safe_load((KUBE_DIR / "egress" / patch["path"]).read_text())
        matches = [i for i, d in enumerate(docs) if d["kind"] == patch["target"]["kind"]
                   and d["metadata"]["name"] == patch["target"]["name"]]
        assert len(matches) == 1, patch
        docs[matches[0]] = apply_json_patch(docs[matches[0]], operations)
    return docs


# --- schema validation -----------------------------------------------------------------------

def run_validator(paths):
    if shutil.which("node") is None:
        pytest.skip("node is not installed (tests/run.sh installs nodejs)")
    if not (NODE_MODULES / "kubernetes-models").is_dir():
        pytest.skip(f"{NODE_MODULES} is missing: run `npm ci` in {VALIDATOR_DIR} "
                    "(tests/run.sh does)")
    return subprocess.run(["node", str(VALIDATOR_DIR / "validate.mjs"), *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


def test_every_document_validates_against_the_kubernetes_schemas(tmp_path):
    files = sorted(KUBE_DIR.glob("*.yaml"))
    files.remove(KUBE_DIR / "kustomization.yaml")
    patched = tmp_path / "with-egress.yaml"
    patched.write_text(yaml.safe_dump_all(with_egress_component(base_documents())))
    result = run_validator([*files, patched])
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok   ") == sum(len(load_all(f)) for f in files) + 4


def test_the_validator_rejects_a_wrong_type(tmp_path):
    # Proves the validator is not vacuous: the real StatefulSet with one wrong type fails.
    statefulset = load_all(KUBE_DIR / "statefulset.yaml")[0]
    statefulset["spec"]["replicas"] = "three"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(statefulset))
    result = run_validator([bad])
    assert result.returncode == 1
    assert "spec/replicas must be integer" in result.stdout


INTERFACE_FIELD = re.compile(r'^    "([A-Za-z0-9_$]+)"(\?)?: (.+?);?$')
IMPORT = re.compile(r'^import \{ (\w+) \} from "([^"]+)";$')


class ApiTypes:
    """Field names and string enums of the API's types, read from kubernetes-models' type
    declarations (one .d.ts per type, importing the types of its fields)."""

    def __init__(self):
        self.cache = {}

    def fields(self, dts):
        if dts not in self.cache:
            imports, fields, in_interface = {}, {}, False
            for line in dts.read_text().splitlines():
                if m := IMPORT.match(line):
                    source = m.group(2)
                    if source.startswith("."):
                        path = (dts.parent / source).with_suffix("").with_suffix(".d.ts")
                    else:
                        path = NODE_MODULES / (source + ".d.ts")
                    imports[m.group(1)] = path
                elif line.startswith("export interface "):
                    in_interface = True
                elif in_interface and line.startswith("}"):
                    break
                elif in_interface and (m := INTERFACE_FIELD.match(line)):
                    fields[m.group(1)] = m.group(3)
            self.cache[dts] = (imports, fields)
        return self.cache[dts]

    def check(self, value, dts, where, errors):
        imports, fields = self.fields(dts)
        if not isinstance(value, dict):
            return
        for key, item in value.items():
            if key not in fields:
                errors.append(f"{where}.{key}: no such field in {dts.stem.removesuffix('.d')}")
                continue
            self.check_value(item, fields[key], imports, f"{where}.{key}", errors)

    def check_value(self, item, type_text, imports, where, errors):
        if m := re.fullmatch(r"Array<(\w+)>", type_text):
            if m.group(1) in imports and isinstance(item, list):
                for i, element in enumerate(item):
                    self.check(element, imports[m.group(1)], f"{where}[{i}]", errors)
        elif type_text in imports and "IntOrString" not in type_text \
                and "Quantity" not in type_text:
            self.check(item, imports[type_text], where, errors)
        elif re.fullmatch(r'"[^"]*"( \| "[^"]*")+', type_text) and isinstance(item, str):
            allowed = re.findall(r'"([^"]*)"', type_text)
            if item not in allowed:
                errors.append(f"{where}: {item!r} is not one of {allowed}")


def test_every_field_name_is_one_the_api_knows():
    if not (NODE_MODULES / "kubernetes-models").is_dir():
        pytest.skip(f"{NODE_MODULES} is missing: run `npm ci` in {VALIDATOR_DIR}")
    types = ApiTypes()
    roots = {("apps/v1", "StatefulSet"): "kubernetes-models/apps/v1/StatefulSet.d.ts",
             ("v1", "Service"): "kubernetes-models/v1/Service.d.ts",
             ("v1", "ConfigMap"): "kubernetes-models/v1/ConfigMap.d.ts",
             ("v1", "Secret"): "kubernetes-models/v1/Secret.d.ts",
             ("monitoring.coreos.com/v1", "PodMonitor"):
                 "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor.d.ts"}
    docs = base_documents() + load_all(KUBE_DIR / "secret.example.yaml")
    errors = []
    for doc in docs + with_egress_component(docs):
        dts = NODE_MODULES / roots[(doc["apiVersion"], doc["kind"])]
        types.check(doc, dts, f"{doc['kind']}/{doc['metadata']['name']}", errors)
    assert not errors, "\n".join(errors)
    # Not vacuous: a misspelt field and a wrong enum value are found.
    statefulset = copy.deepcopy(next(d for d in docs if d["kind"] == "StatefulSet"))
    statefulset["spec"]["template"]["spec"]["initContainers"][0]["restartPolicyy"] = "Always"
    statefulset["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"
    errors = []
    types.check(statefulset, NODE_MODULES / roots[("apps/v1", "StatefulSet")], "s", errors)
    assert len(errors) == 2, errors


# --- the fields that matter ------------------------------------------------------------------

def pod_spec(docs):
    return next(d for d in docs if d["kind"] == "StatefulSet")["spec"]["template"]["spec"]


def sidecar_of(spec):
    return next(c for c in spec["initContainers"] if c["name"] == "tls-sidecar")


def test_a_native_sidecar_owns_27017_and_mongod_listens_on_loopback():
    docs = base_documents()
    statefulset = next(d for d in docs if d["kind"] == "StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    service = next(d for d in docs if d["kind"] == "Service")
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"  # headless: stable per-pod names
    spec = statefulset["spec"]["template"]["spec"]
    sidecar = sidecar_of(spec)
    assert sidecar["restartPolicy"] == "Always"  # native sidecar (Kubernetes 1.29+)
    assert {p["name"]: p["containerPort"] for p in sidecar["ports"]} == \
        {"mongodb": 27017, "metrics": 9442}
    mongod = next(c for c in spec["containers"] if c["name"] == "mongod")
    args = mongod["args"]
    assert args[args.index("--bind_ip") + 1] == "127.0.0.1"
    assert args[args.index("--port") + 1] == "27018"
    assert "ports" not in mongod  # nothing but the sidecar is reachable from outside
    toml = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["tls-sidecar.toml"]
    assert 'upstream = "127.0.0.1:27018"' in toml
    assert "port = 27017" in toml
    assert 'listen = "0.0.0.0:9442"' in toml
    service_ports = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert service_ports == {"mongodb": "mongodb", "metrics": "metrics"}
    monitor = next(d for d in docs if d["kind"] == "PodMonitor")
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == \
        statefulset["spec"]["selector"]["matchLabels"]


def test_probes_use_ready_and_a_liveness_endpoint_that_does_not_depend_on_mongod():
    sidecar = sidecar_of(pod_spec(base_documents()))
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    # Startup gates mongod's start: waiting for mongod there would never end.
    assert sidecar["startupProbe"]["httpGet"] == {"path": "/live", "port": "metrics"}
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/live", "port": "metrics"}


def test_mounts_match_the_configuration_and_certificates_follow_the_secret():
    docs = base_documents()
    spec = pod_spec(docs)
    sidecar = sidecar_of(spec)
    mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in mounts.values():
        assert mount["name"] in volumes
        # A subPath mount never sees the Secret's ..data swap, so reloads would not happen.
        assert "subPath" not in mount
    assert volumes[mounts["tls-sidecar-certs"]["name"]]["secret"]["secretName"] == \
        load_all(KUBE_DIR / "secret.example.yaml")[0]["metadata"]["name"]
    toml = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["tls-sidecar.toml"]
    assert sidecar["args"] == ["--config", mounts["tls-sidecar-config"]["mountPath"] +
                               "/tls-sidecar.toml"]
    for key in ("certificateKeyFile", "CAFile"):
        path = re.search(rf'^{key} = "([^"]+)"', toml, re.M).group(1)
        assert path.startswith(mounts["tls-sidecar-certs"]["mountPath"] + "/"), key
    assert "watchCertificates = true" in toml
    socket = re.search(r'^socket = "([^"]+)"', toml, re.M).group(1)
    assert socket.startswith(mounts["tls-sidecar-run"]["mountPath"] + "/")
    assert "emptyDir" in volumes["tls-sidecar-run"]


def test_security_contexts_are_non_root_read_only_and_drop_every_capability():
    base = pod_spec(base_documents())
    assert base["securityContext"]["runAsNonRoot"] is True
    for container in base["initContainers"] + base["containers"]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] != 0, container["name"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
    # With the egress component, NET_ADMIN goes to the iptables init container and (for
    # SO_MARK) the sidecar; mongod gets nothing.
    egress = pod_spec(with_egress_component(base_documents()))
    names = [c["name"] for c in egress["initContainers"]]
    assert names == ["egress-iptables", "tls-sidecar"]
    iptables = egress["initContainers"][0]
    assert "restartPolicy" not in iptables  # runs once, before the sidecar
    assert iptables["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
    assert sidecar_of(egress)["securityContext"]["capabilities"]["add"] == ["NET_ADMIN"]
    assert egress["containers"] == base["containers"]
    # The script's arguments match the listener the component adds to the configuration.
    toml = next(d for d in with_egress_component(base_documents())
                if d["kind"] == "ConfigMap")["data"]["tls-sidecar.toml"]
    port = iptables["args"][iptables["args"].index("--listen-port") + 1]
    assert f'listen = "127.0.0.1:{port}"' in toml
    owner = iptables["args"][iptables["args"].index("--owner") + 1]
    mongod = next(c for c in egress["containers"] if c["name"] == "mongod")
    assert int(owner) == mongod["securityContext"]["runAsUser"]


@pytest.mark.parametrize("variant", ["base", "egress"])
def test_the_configmap_toml_loads_with_the_real_binary(tmp_path, pki, variant):
    docs = base_documents() if variant == "base" else with_egress_component(base_documents())
    spec = pod_spec(docs)
    certs_dir = next(m for m in sidecar_of(spec)["volumeMounts"]
                     if m["name"] == "tls-sidecar-certs")["mountPath"]
    toml = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["tls-sidecar.toml"]
    secret = load_all(KUBE_DIR / "secret.example.yaml")[0]
    local = tmp_path / "tls"
    local.mkdir()
    for key, role in (("server.pem", "server"), ("ca.pem", "ca")):
        assert key in secret["stringData"]
        (local / key).write_bytes(pki[role].read_bytes())
    config = tmp_path / "tls-sidecar.toml"
    config.write_text(toml.replace(certs_dir + "/", f"{local}/"))
    result = subprocess.run([str(harness.sidecar_binary()), "--check-config", "--config",
                             str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "(mode allowTLS, 3 certificate(s) loaded)" in result.stdout
