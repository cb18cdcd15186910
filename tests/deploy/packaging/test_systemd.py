"""deploy/systemd as the package installs it: the units pass `systemd-analyze verify`, their
exposure score stays below 2.0, and the installed binary started exactly as the unit starts
it (its ExecStartPre= and ExecStart= command lines, user, ambient capability, open-file
limit, umask and RuntimeDirectory=) serves: /ready is 200, `ctl status` answers on the unit's
socket, ExecReload's SIGHUP reloads and the stop signal exits 0.

No systemd runs as PID 1 here (a container), so the unit's settings are applied with
setpriv and prlimit rather than by systemd itself; the sandboxing directives are checked by
systemd-analyze only.
"""

import json
import os
import pathlib
import pwd
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

import harness
from conftest import built_package, require_root, require_tools

UNITS = ("tls-sidecar.service", "tls-sidecar@.service")


def unit_settings(path):
    """[Service] of a unit: key -> list of values, in order."""
    settings, section = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


@pytest.fixture(scope="module")
def package():
    require_tools("systemd-analyze")
    return built_package()


def units_pointing_into(root, directory):
    """The installed units with /usr/bin/tls-sidecar pointing into the unpacked package (no
    file on this machine is touched)."""
    for name in UNITS:
        text = (root / "lib/systemd/system" / name).read_text()
        (directory / name).write_text(text.replace("/usr/bin/tls-sidecar",
                                                   str(root / "usr/bin/tls-sidecar")))
    return directory


def test_systemd_analyze_verify_passes(package, tmp_path):
    _, root = package
    units = units_pointing_into(root, tmp_path)
    # MANPATH: Documentation=man:tls-sidecar(8) is checked against the packaged page.
    env = dict(os.environ, MANPATH=str(root / "usr/share/man"))
    for unit in ("tls-sidecar.service", "tls-sidecar@27017.service"):
        result = subprocess.run(["systemd-analyze", "verify", str(units / unit)], env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and result.stdout + result.stderr == "", \
            f"{unit}:\n{result.stdout}{result.stderr}"
    # Not vacuous: a misspelt directive is reported.
    bad = tmp_path / "bad.service"
    bad.write_text((units / "tls-sidecar.service").read_text().replace("NoNewPrivileges=",
                                                                       "NoNewPrivilege="))
    result = subprocess.run(["systemd-analyze", "verify", str(bad)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert "Unknown key 'NoNewPrivilege'" in result.stderr


def test_exposure_score_is_below_2(package):
    _, root = package
    for name in UNITS:
        result = subprocess.run(["systemd-analyze", "security", "--offline=true",
                                 str(root / "lib/systemd/system" / name)],
                                capture_output=True, text=True, timeout=120)
        score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
        assert score, result.stdout + result.stderr
        print(f"{name}: systemd-analyze security exposure {score.group(1)}")
        assert float(score.group(1)) < 2.0, result.stdout


def test_unit_has_the_settings_operators_rely_on(package):
    _, root = package
    unit = root / "lib/systemd/system/tls-sidecar.service"
    text = unit.read_text()
    s = unit_settings(unit)
    assert "After=network-online.target" in text and "Wants=network-online.target" in text
    assert s["User"] == ["tls-sidecar"] and s["Restart"] == ["on-failure"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert s["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("RuntimeDirectory", "tls-sidecar"),
                       ("ReadOnlyPaths", "/etc/tls-sidecar/certs")):
        assert s[key] == [value], key
    assert "@system-service" in s["SystemCallFilter"]
    # TimeoutStopSec leaves the drain (limits.drainSeconds) its time.
    config = (root / "etc/tls-sidecar/tls-sidecar.toml").read_text()
    drain = int(re.search(r"^drainSeconds = (\d+)", config, re.M).group(1))
    assert int(s["TimeoutStopSec"][0].rstrip("s")) > drain
    # LimitNOFILE: two descriptors per client and per egress connection, and room to spare
    # (below it the sidecar lowers its limits at start).
    max_connections = int(re.search(r"^maxConnections = (\d+)", config, re.M).group(1))
    max_egress = int(re.search(r"^maxEgressConnections = (\d+)", config, re.M).group(1))
    assert int(s["LimitNOFILE"][0]) >= 2 * (max_connections + max_egress) + 1024
    # The control socket is in the RuntimeDirectory, whatever the default of the binary.
    assert f"--control-socket /run/{s['RuntimeDirectory'][0]}/27017.sock" in s["ExecStart"][0]


def free_privileged_port():
    """A port below 1024 that nobody uses on 127.0.0.1: binding it proves the unit's
    CAP_NET_BIND_SERVICE reaches the unprivileged process."""
    for port in range(1023, 900, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free port below 1024 on 127.0.0.1")


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def test_the_installed_binary_serves_started_as_the_unit_starts_it(package, procs, pki):
    require_root("runs the binary as the unit's user, with the unit's capability")
    require_tools("setpriv", "prlimit", "adduser")
    _, root = package
    unit = root / "lib/systemd/system/tls-sidecar.service"
    s = unit_settings(unit)
    user = s["User"][0]
    # What postinst does on a real install.
    if subprocess.run(["getent", "passwd", user], capture_output=True).returncode != 0:
        subprocess.run(["adduser", "--system", "--group", "--no-create-home", "--home",
                        "/nonexistent", user], check=True, capture_output=True)
    account = pwd.getpwnam(user)

    # A scratch /etc/tls-sidecar and /run, readable by the user (pytest's tmp_path is not).
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="tls-sidecar-unit-"))
    try:
        os.chmod(scratch, 0o755)
        etc = scratch / "etc/tls-sidecar"
        certs = etc / "certs"
        certs.mkdir(parents=True)
        for name, role in (("server.pem", "server"), ("ca.pem", "ca")):
            shutil.copy(pki[role], certs / name)
            os.chown(certs / name, 0, account.pw_gid)
            os.chmod(certs / name, 0o640)
        os.chown(etc, 0, account.pw_gid)
        os.chmod(etc, 0o770)
        os.chown(certs, 0, account.pw_gid)
        os.chmod(certs, 0o750)

        standin = procs.standin()
        port = free_privileged_port()
        metrics_port = harness.free_port()
        config = (root / "etc/tls-sidecar/tls-sidecar.toml").read_text()
        config = config.replace("/etc/tls-sidecar/", f"{etc}/")
        config = config.replace('bindIp = "0.0.0.0"', 'bindIp = "127.0.0.1"')
        config = re.sub(r"^port = 27017", f"port = {port}", config, flags=re.M)
        config = config.replace('upstream = "127.0.0.1:27018"', f'upstream = "{standin.address}"')
        config = config.replace('"127.0.0.1:9442"', f'"127.0.0.1:{metrics_port}"')
        config = config.replace('"/run/tls-sidecar/', f'"{scratch}/run/tls-sidecar/')
        (etc / "tls-sidecar.toml").write_text(config)
        os.chown(etc / "tls-sidecar.toml", 0, account.pw_gid)
        os.chmod(etc / "tls-sidecar.toml", 0o640)

        # RuntimeDirectory= and RuntimeDirectoryMode=, owned by the user, as systemd makes it.
        runtime = scratch / "run" / s["RuntimeDirectory"][0]
        runtime.mkdir(parents=True)
        os.chmod(scratch / "run", 0o755)
        os.chown(runtime, account.pw_uid, account.pw_gid)
        os.chmod(runtime, int(s["RuntimeDirectoryMode"][0], 8))
        env = {"PATH": "/usr/bin:/bin", "RUNTIME_DIRECTORY": str(runtime)}

        def command(line):
            line = line.replace(f"/run/{s['RuntimeDirectory'][0]}/", f"{runtime}/")
            argv = shlex.split(line)
            assert argv[0] == "/usr/bin/tls-sidecar"
            argv[0] = str(root / "usr/bin/tls-sidecar")
            argv = [a.replace("/etc/tls-sidecar/", f"{etc}/") for a in argv]
            capability = s["AmbientCapabilities"][0].lower().replace("cap_", "")
            # The unit's LimitNOFILE, or this sandbox's hard limit when that is lower (raising
            # it needs CAP_SYS_RESOURCE in the initial namespace, which systemd has).
            limit = min(int(s["LimitNOFILE"][0]), resource.getrlimit(resource.RLIMIT_NOFILE)[1])
            return ["prlimit", f"--nofile={limit}:{limit}", "--",
                    "setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                    "--init-groups", f"--inh-caps=+{capability}",
                    f"--ambient-caps=+{capability}", f"--bounding-set=-all,+{capability}",
                    "--no-new-privs", "--",
                    "sh", "-c", f'umask {s["UMask"][0]} && exec "$@"', "sh", *argv]

        pre = subprocess.run(command(s["ExecStartPre"][0]), env=env, capture_output=True,
                             text=True, timeout=60)
        assert pre.returncode == 0, pre.stderr
        assert "configuration OK" in pre.stdout

        sidecar = harness.Child("unit", command(s["ExecStart"][0]), procs.workdir, env=env)
        procs.children.append(sidecar)
        deadline = time.monotonic() + 30
        while http_status(f"http://127.0.0.1:{metrics_port}/ready") != 200:
            assert sidecar.alive(), sidecar.describe()
            assert time.monotonic() < deadline, sidecar.describe()
            time.sleep(0.1)
        assert harness.is_listening(port)  # below 1024, as the unprivileged user
        assert http_status(f"http://127.0.0.1:{metrics_port}/live") == 200

        socket_path = runtime / "27017.sock"
        status = os.stat(socket_path)
        assert status.st_uid == account.pw_uid and (status.st_mode & 0o777) == 0o600
        # Operators run `sudo tls-sidecar ctl`, as the unit's comment says: root's ctl talks
        # to the service's user because the socket sits in that user's RuntimeDirectory.
        ctl = subprocess.run([str(root / "usr/bin/tls-sidecar"), "ctl",
                              "--socket", str(socket_path), "status", "--json"],
                             capture_output=True, text=True, timeout=30)
        assert ctl.returncode == 0, ctl.stderr
        answer = json.loads(ctl.stdout)
        assert answer["ok"] is True and answer["mode"] == "allowTLS"

        # ExecReload: the main process's SIGHUP rereads the certificates.
        assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
        sidecar.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "certificates reloaded" not in sidecar.stderr_text():
            assert time.monotonic() < deadline, sidecar.describe()
            time.sleep(0.05)
        # KillSignal= within TimeoutStopSec=: a clean exit.
        assert s["KillSignal"] == ["SIGTERM"]
        assert sidecar.stop(signal.SIGTERM, timeout=int(s["TimeoutStopSec"][0].rstrip("s"))) == 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
