"""The mode gates of SPEC §5/§6 on the real binary: `persist` never claims a mode that a
restart would undo (the runbook's own command line, persisted, then restarted with that same
command line), `force` never enters a mode that needs a certificate while none is loaded,
/ready and tls_sidecar_ready tell whether any client can be served, and `tls-sidecar ctl`
speaks the command line's words where the JSON keeps the protocol's."""

import json
import re
import shlex
import subprocess
import urllib.error
import urllib.request

import pymongo

import harness
from harness import wait_until

RUNBOOK = harness.SOURCE_DIR / "deploy" / "ROLLING-UPGRADE.md"

# deploy/ROLLING-UPGRADE.md's step 1 before SPEC §5/§6 said where the mode comes from: the
# mode as a flag, beside a configuration file. Kept here because operators run it.
FLAG_COMMAND_LINE = """
tls-sidecar --bind_ip NODE_IP --port 27017 --upstream 127.0.0.1:27018 \\
  --sslMode allowSSL --sslPEMKeyFile /etc/tls-sidecar/server.pem \\
  --sslCAFile /etc/tls-sidecar/ca.pem --config /etc/tls-sidecar/tls-sidecar.toml
"""
FLAG_CONFIG = """[limits]
drainSeconds = 1
"""


# --- helpers -----------------------------------------------------------------------------

def http_get(url, timeout=5):
    """(status, body) of a GET; a 503 is an answer, not an error."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def gauge(metrics_address, name):
    status, body = http_get(f"http://{metrics_address}/metrics")
    assert status == 200, body
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} is not exported:\n{body}")


def ctl(socket_path, *args):
    return subprocess.run([str(harness.sidecar_binary()), "ctl", "--socket", str(socket_path),
                           *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=30)


def ctl_json(socket_path, *args):
    result = ctl(socket_path, "--json", *args)
    assert result.returncode in (0, 1), result
    return json.loads(result.stdout)


def runbook_step1():
    """The TOML file and the command line of the runbook's step 1, as written there."""
    text = RUNBOOK.read_text()
    section = text[text.index("## Step 1"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)
    toml = [body for kind, body in blocks if kind == "toml"]
    sh = [body for kind, body in blocks if kind == "sh" and "tls-sidecar " in body]
    assert len(toml) == 1 and len(sh) == 1, f"step 1 has not one TOML and one command: {blocks}"
    dedent = lambda body: "\n".join(line.strip() for line in body.splitlines())
    return dedent(toml[0]), dedent(sh[0])


class Node:
    """One node of the runbook on this machine: the stand-in as its mongod, the operator's
    command line with the node's names replaced by this test's (NODE_IP, the ports, the
    certificate paths), and the sidecar it starts, restartable with the same command line."""

    def __init__(self, procs, pki, command_line, config_text):
        self.procs = procs
        self.workdir = procs.workdir
        self.standin = procs.standin()
        self.port = harness.free_port()
        self.metrics = f"127.0.0.1:{harness.free_port()}"
        self.socket = self.workdir / "node.sock"
        config_path = self.workdir / "tls-sidecar.toml"

        def localise(text):
            for old, new in (("NODE_IP", "127.0.0.1"),
                             ("27017", str(self.port)),
                             ("127.0.0.1:27018", self.standin.address),
                             ("/etc/tls-sidecar/tls-sidecar.toml", str(config_path)),
                             ("/etc/tls-sidecar/server.pem", str(pki["server"])),
                             ("/etc/tls-sidecar/ca.pem", str(pki["ca"]))):
                text = text.replace(old, new)
            return text

        self.config_path = config_path
        config_path.write_text(localise(config_text))
        argv = shlex.split(localise(command_line).replace("\\\n", " "))
        assert argv[0] == "tls-sidecar", argv
        # Only what a test on a shared machine needs besides: a private control socket and a
        # free metrics port. Neither sets the mode.
        self.argv = [str(harness.sidecar_binary()), *argv[1:], "--control-socket",
                     str(self.socket), "--metrics", self.metrics]
        self.starts = 0
        self.sidecar = None
        self.start()

    def start(self):
        self.starts += 1
        self.sidecar = harness.Child(f"node-start{self.starts}", self.argv, self.workdir)
        self.procs.children.append(self.sidecar)
        wait_until(lambda: harness.is_listening(self.port) or not self.sidecar.alive(), 15,
                   "the sidecar listening")
        assert self.sidecar.alive(), self.sidecar.describe()
        wait_until(lambda: self.socket.exists(), 10, "the control socket")

    def restart(self):
        """SIGTERM, then the same command line again."""
        assert self.sidecar.stop() == 0, self.sidecar.describe()
        wait_until(lambda: not harness.is_listening(self.port), 10, "the port closed")
        self.start()

    def status(self):
        answer = ctl_json(self.socket, "status")
        assert answer["ok"] is True, answer
        return answer


def set_mode_up_to_require(node, persist):
    for mode in ("preferTLS", "requireTLS"):
        args = ["set-mode", mode] + (["--persist"] if persist and mode == "requireTLS" else [])
        result = ctl(node.socket, *args)
        if persist and mode == "requireTLS":
            return result
        assert result.returncode == 0, result
    return None


# --- item 1: persist and restarts --------------------------------------------------------

def test_runbook_step1_then_persist_survives_a_restart(procs, pki):
    config, command_line = runbook_step1()
    # The runbook keeps the mode in the file: no mode flag on its command line.
    assert not re.search(r"--(ssl|tls)Mode|OnNormalPorts", command_line), command_line
    node = Node(procs, pki, command_line, config)
    status = node.status()
    assert (status["mode"], status["modeSource"], status["configuredMode"]) == \
        ("allowTLS", "file", "allowTLS"), status

    persisted = set_mode_up_to_require(node, persist=True)
    assert persisted.returncode == 0, persisted
    assert "written to the configuration file" in persisted.stdout, persisted
    assert 'mode = "requireTLS"' in node.config_path.read_text()
    before = node.status()
    assert (before["mode"], before["configuredMode"], before["warnings"]) == \
        ("requireTLS", "requireTLS", []), before
    assert gauge(node.metrics, "tls_sidecar_mode_persisted") == 1

    node.restart()
    after = node.status()
    assert after["mode"] == before["configuredMode"] == "requireTLS", after
    assert after["warnings"] == [], after
    assert gauge(node.metrics, "tls_sidecar_mode_persisted") == 1


def test_mode_flag_refuses_persist_and_a_restart_does_what_status_said(procs, pki):
    node = Node(procs, pki, FLAG_COMMAND_LINE, FLAG_CONFIG)
    status = node.status()
    assert (status["mode"], status["modeSource"], status["modeFlag"]) == \
        ("allowTLS", "flag", "--sslMode"), status
    original = node.config_path.read_text()

    refused = set_mode_up_to_require(node, persist=True)
    assert refused.returncode == 1, refused
    # The refusal names the flag as written and what to change, in ctl's words.
    assert "--sslMode" in refused.stderr and "remove --sslMode" in refused.stderr, refused
    assert "change the flag to --sslMode requireTLS" in refused.stderr, refused
    assert "without `--persist`" in refused.stderr, refused
    assert node.config_path.read_text() == original
    # The JSON keeps the protocol's word.
    answer = ctl_json(node.socket, "set-mode", "requireTLS", "--persist")
    assert answer["ok"] is False and "`persist`" in answer["error"], answer
    assert "--persist" not in answer["error"], answer
    assert node.status()["mode"] == "preferTLS"

    assert ctl(node.socket, "set-mode", "requireTLS").returncode == 0
    before = node.status()
    assert (before["mode"], before["configuredMode"]) == ("requireTLS", "allowTLS"), before
    assert any("--sslMode" in w and "goes back to allowTLS" in w for w in before["warnings"]), \
        before
    assert gauge(node.metrics, "tls_sidecar_mode_persisted") == 0
    printed = ctl(node.socket, "status")
    assert "configured mode  allowTLS (from the flag --sslMode, which overrides" in \
        printed.stdout, printed

    node.restart()
    after = node.status()
    assert after["mode"] == before["configuredMode"], (before, after)
    assert gauge(node.metrics, "tls_sidecar_mode_persisted") == 1


def test_flag_and_file_disagreeing_are_warned_about_at_start(procs, pki):
    config = FLAG_CONFIG + '\n[net.tls]\nmode = "requireTLS"\n'
    node = Node(procs, pki, FLAG_COMMAND_LINE, config)
    needle = "a restart would not keep the mode as expected"
    line = wait_until(lambda: next((l for l in node.sidecar.stderr_text().splitlines()
                                    if needle in l), None), 10, "the start-up warning")
    warning = json.loads(line)
    assert warning["s"] == "W", warning
    assert "--sslMode" in warning["attr"]["warning"], warning
    assert "would start the sidecar in requireTLS" in warning["attr"]["warning"], warning
    status = node.status()
    assert (status["mode"], status["configuredMode"], status["fileMode"]) == \
        ("allowTLS", "allowTLS", "requireTLS"), status
    # The running mode is what a restart runs: persisted, even though the file differs.
    assert gauge(node.metrics, "tls_sidecar_mode_persisted") == 1
    assert len(status["warnings"]) == 1 and "overrides the file" in status["warnings"][0]


# --- item 4: force and the certificate; readiness ------------------------------------------

def test_force_cannot_lock_every_client_out(procs):
    standin = procs.standin()
    metrics = f"127.0.0.1:{harness.free_port()}"
    sidecar = procs.sidecar("--tlsMode", "disabled", upstream=standin.address, metrics=metrics)
    socket_path = sidecar.stderr_path.parent / "sidecar.sock"
    wait_until(lambda: http_get(f"http://{metrics}/ready")[0] == 200, 15, "/ready 200")

    for mode in ("requireTLS", "preferTLS", "allowTLS"):
        refused = ctl(socket_path, "set-mode", mode, "--force")
        assert refused.returncode == 1, refused
        assert "net.tls.certificateKeyFile" in refused.stderr, refused
        assert "net.tls.certificateSelector" in refused.stderr, refused
        assert "`--force` does not override this" in refused.stderr, refused
        answer = ctl_json(socket_path, "set-mode", mode, "--force")
        assert answer["ok"] is False and "`force` does not override" in answer["error"], answer

    status = ctl_json(socket_path, "status")
    assert status["mode"] == "disabled" and status["warnings"] == [], status
    # Still serving: /ready says so, and a plaintext driver gets through.
    assert http_get(f"http://{metrics}/ready") == (200, "ready\n")
    assert gauge(metrics, "tls_sidecar_ready") == 1
    client = pymongo.MongoClient("127.0.0.1", sidecar.port, directConnection=True,
                                 serverSelectionTimeoutMS=5000)
    try:
        assert client.admin.command("ping")["ok"] == 1
    finally:
        client.close()
    assert not [line for line in sidecar.log_lines() if line.get("msg") == "mode changed"]


def test_require_tls_with_a_certificate_is_ready(procs, pki):
    standin = procs.standin()
    metrics = f"127.0.0.1:{harness.free_port()}"
    sidecar = procs.sidecar("--tlsMode", "requireTLS", "--tlsCertificateKeyFile", pki["server"],
                            upstream=standin.address, metrics=metrics)
    wait_until(lambda: http_get(f"http://{metrics}/ready")[0] == 200, 15, "/ready 200")
    assert gauge(metrics, "tls_sidecar_ready") == 1
    assert sidecar.alive()


# --- item 6: ctl's words and the protocol's ------------------------------------------------

def test_gate_refusal_in_ctl_words_and_in_protocol_words(procs, pki):
    standin = procs.standin()
    sidecar = procs.sidecar("--tlsMode", "preferTLS", "--tlsCertificateKeyFile", pki["server"],
                            upstream=standin.address)
    socket_path = sidecar.stderr_path.parent / "sidecar.sock"
    client = pymongo.MongoClient("127.0.0.1", sidecar.port, appname="billing",
                                 directConnection=True, serverSelectionTimeoutMS=5000,
                                 maxPoolSize=1)
    try:
        client.admin.command("ping")
        refused = ctl(socket_path, "set-mode", "requireTLS")
        assert refused.returncode == 1, refused
        assert "`--force`" in refused.stderr, refused
        assert "`tls-sidecar ctl drain-plaintext SECONDS`" in refused.stderr, refused
        assert "(listed below)" in refused.stderr and "billing" in refused.stdout, refused
        for word in ("`force`", "`drainPlaintext`", "plaintextClients"):
            assert word not in refused.stderr, (word, refused)

        answer = ctl_json(socket_path, "set-mode", "requireTLS")
        assert answer["ok"] is False, answer
        assert "`force`" in answer["error"] and "`drainPlaintext`" in answer["error"], answer
        for word in ("--force", "drain-plaintext"):
            assert word not in answer["error"], (word, answer)
        assert [row["application"] for row in answer["plaintextClients"]] == ["billing"], answer
    finally:
        client.close()
