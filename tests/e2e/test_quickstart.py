"""deploy/quickstart.sh, the README's "run it" command: it starts, mongosh inserts and reads a
document through it with TLS (verified against the quickstart CA) and without, and Ctrl-C
stops everything."""

import os
import signal
import subprocess
import time

import pymongo

import harness


def test_quickstart_serves_tls_and_plaintext_mongosh_and_stops_on_ctrl_c(tmp_path):
    sidecar_port, mongod_port = harness.free_port(), harness.free_port()
    data = tmp_path / "quickstart-data"
    env = dict(os.environ, BUILD_DIR=str(harness.binary_dir()), QUICKSTART_DATA=str(data),
               SIDECAR_PORT=str(sidecar_port), MONGOD_PORT=str(mongod_port),
               METRICS_LISTEN=f"127.0.0.1:{harness.free_port()}",
               RUNTIME_DIRECTORY=str(tmp_path / "run"))
    script = harness.SOURCE_DIR / "deploy" / "quickstart.sh"
    proc = subprocess.Popen(["bash", str(script)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    output = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(output)
        assert "Press Ctrl-C" in text, text
        ca = data / "pki" / "ca.pem"
        assert f"tlsCAFile={ca}" in text, text
        for uri in (f"mongodb://127.0.0.1:{sidecar_port}/?tls=true&tlsCAFile={ca}",
                    f"mongodb://127.0.0.1:{sidecar_port}/"):
            result = harness.mongosh_crud(uri, f"quickstart-{'tls' if 'tls' in uri else 'plain'}",
                                          home=tmp_path)
            assert '{"found":true}' in result.stdout, uri + "\n" + result.stdout + result.stderr

        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert "stopping" in rest, rest
        # The script's tls-sidecar and stand-in write their logs into the data directory's
        # folder for this sidecar port.
        harness.assert_no_sanitizer_report("deploy/quickstart.sh", text + rest)
        for log in ("tls-sidecar.log", "mongod.log"):
            path = data / str(sidecar_port) / log
            harness.assert_no_sanitizer_report(log, path.read_text(errors="replace"))
        assert not harness.is_listening(sidecar_port)
        assert not harness.is_listening(mongod_port)
    finally:
        if proc.poll() is None:
            # The script's children are in its session: end them all, not just the script.
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


def _start_quickstart(data, runtime, sidecar_port, mongod_port):
    env = dict(os.environ, BUILD_DIR=str(harness.binary_dir()), QUICKSTART_DATA=str(data),
               SIDECAR_PORT=str(sidecar_port), MONGOD_PORT=str(mongod_port),
               METRICS_LISTEN=f"127.0.0.1:{harness.free_port()}", RUNTIME_DIRECTORY=str(runtime))
    script = harness.SOURCE_DIR / "deploy" / "quickstart.sh"
    return subprocess.Popen(["bash", str(script)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True), env


def _wait_for_ready(proc, timeout=120):
    output = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        output.append(line)
        if "Press Ctrl-C" in line:
            break
    text = "".join(output)
    assert "Press Ctrl-C" in text, text
    return text


def test_two_quickstarts_with_other_ports_share_the_data_directory(tmp_path):
    data = tmp_path / "quickstart-data"
    runtime = tmp_path / "run"
    started = []
    try:
        for _ in range(2):
            sidecar_port, mongod_port = harness.free_port(), harness.free_port()
            proc, env = _start_quickstart(data, runtime, sidecar_port, mongod_port)
            started.append((proc, env, sidecar_port))
            text = _wait_for_ready(proc)
            assert f"ctl --port {sidecar_port} status" in text, text
        for proc, env, sidecar_port in started:
            assert proc.poll() is None
            # Each one's control socket is its own, found by its port.
            status = subprocess.run([str(harness.sidecar_binary()), "ctl", "--port",
                                     str(sidecar_port), "--json", "status"], env=env,
                                    stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                    timeout=30)
            assert status.returncode == 0, status.stdout + status.stderr
            assert (data / str(sidecar_port) / "tls-sidecar.log").is_file()
            client = pymongo.MongoClient("127.0.0.1", sidecar_port, tls=True,
                                         tlsCAFile=str(data / "pki" / "ca.pem"),
                                         serverSelectionTimeoutMS=5000)
            try:
                assert client.admin.command("ping")["ok"] == 1
            finally:
                client.close()
    finally:
        for proc, _, _ in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
