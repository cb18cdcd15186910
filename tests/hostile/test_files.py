"""Files an operator (or an attacker with write access to a directory) can point the sidecar
at (issue 12 item 4, item 5's least privilege): a device, a FIFO, a directory or a huge file
as a certificate, key, CA, CRL or configuration file is a clear start-up error, never a hang
or an unbounded read; so is a path with a NUL byte in the TOML. A reload meeting one keeps
the old certificates. A private key others can read and a configuration file others can
write are warned about at start and in `ctl status`. `--user NAME` gives root up once the
listeners are bound and the keys read, and a reload then reads files as NAME."""

import json
import os
import pathlib
import shutil
import subprocess
import time

import pymongo
import pytest

import harness


def ctl_json(sidecar, *args):
    socket_path = sidecar.stderr_path.parent / f"{sidecar.name}.sock"
    result = subprocess.run([str(harness.sidecar_binary()), "ctl", "--socket", str(socket_path),
                             "--json", *args], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=30)
    return json.loads(result.stdout)


def copy_pki(pki, directory):
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    copies = {role: directory / path.name for role, path in pki.items()}
    for role, path in pki.items():
        shutil.copy(path, copies[role])
        os.chmod(copies[role], 0o600)
    return copies


def tls_ping(sidecar, pki):
    with pymongo.MongoClient("127.0.0.1", sidecar.port, tls=True, tlsCAFile=str(pki["ca"]),
                             serverSelectionTimeoutMS=10000) as client:
        return client.admin.command("ping")["ok"]


def hostile_path(kind, tmp_path):
    if kind == "dev_zero":
        return pathlib.Path("/dev/zero"), "is not a regular file"
    if kind == "fifo":
        path = tmp_path / "fifo.pem"
        os.mkfifo(path)
        return path, "is not a regular file"
    if kind == "directory":
        path = tmp_path / "a-directory"
        path.mkdir()
        return path, "is a directory"
    path = tmp_path / "huge.pem"
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + b"A" * (2 * 1024 * 1024))
    return path, "is larger than 1024 KiB"


@pytest.mark.parametrize("option", ["--tlsCertificateKeyFile", "--tlsCAFile", "--tlsCRLFile"])
@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "directory", "huge"])
def test_a_file_that_is_not_a_small_regular_file_is_a_start_up_error(procs, pki, tmp_path,
                                                                    option, kind):
    path, reason = hostile_path(kind, tmp_path)
    args = {"--tlsCertificateKeyFile": pki["server"], "--tlsCAFile": pki["ca"]}
    args[option] = path
    argv = ["--tlsMode", "allowTLS", "--port", harness.free_port(), "--metrics", "",
            "--control-socket", tmp_path / "s.sock"]
    for flag, value in args.items():
        argv += [flag, value]
    started = time.monotonic()
    result = procs.run_sidecar(*argv, timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tls-sidecar: error: "), last
    assert f"{path}: {reason}" in last, last
    assert elapsed < 10, f"took {elapsed:.1f}s to refuse {path}"


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "directory", "huge"])
def test_a_configuration_file_that_is_not_a_small_regular_file_is_refused(procs, tmp_path, kind):
    path, reason = hostile_path(kind, tmp_path)
    result = procs.run_sidecar("--config", path, "--port", harness.free_port(), timeout=30)
    assert result.returncode == 2, result.stderr
    assert f"{path}: {reason}" in result.stderr.strip().splitlines()[-1], result.stderr


def test_a_nul_byte_in_a_toml_path_is_refused_not_cut(procs, pki, tmp_path):
    # Cut at the NUL, the path would name the real certificate and start-up would succeed.
    config = tmp_path / "nul.toml"
    config.write_text('[net.tls]\nmode = "allowTLS"\n'
                      f'certificateKeyFile = "{pki["server"]}\\u0000.old"\n')
    result = procs.run_sidecar("--config", config, "--port", harness.free_port(), "--metrics", "",
                               "--control-socket", tmp_path / "s.sock")
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "net.tls.certificateKeyFile: holds a NUL byte" in last, last


def test_a_reload_meeting_a_fifo_keeps_the_old_certificates(procs, pki, tmp_path):
    files = copy_pki(pki, tmp_path / "pki")
    standin = procs.standin()
    sidecar = procs.sidecar("--tlsMode", "allowTLS", "--tlsCertificateKeyFile", files["server"],
                            "--tlsCAFile", files["ca"], upstream=standin.address)
    files["ca"].unlink()
    os.mkfifo(files["ca"])
    started = time.monotonic()
    answer = ctl_json(sidecar, "reload")
    assert time.monotonic() - started < 10
    assert answer["ok"] is False, answer
    assert f"{files['ca']}: is not a regular file" in answer["error"], answer
    assert tls_ping(sidecar, pki) == 1
    assert sidecar.alive()


def test_readable_keys_and_writable_configs_are_warned_about(procs, pki, tmp_path):
    files = copy_pki(pki, tmp_path / "pki")
    os.chmod(files["server"], 0o644)
    config = tmp_path / "open.toml"
    config.write_text(f'[net.tls]\nmode = "allowTLS"\ncertificateKeyFile = "{files["server"]}"\n'
                      f'CAFile = "{files["ca"]}"\n')
    os.chmod(config, 0o666)
    standin = procs.standin()
    sidecar = procs.sidecar("--config", config, upstream=standin.address)
    key_warning = (f"net.tls.certificateKeyFile {files['server']} holds a private key and is "
                   "readable by every user of the host (mode 0644)")
    config_warning = f"The configuration file {config} is writable by every user of the host"
    lines = [line for line in sidecar.log_lines() if line["msg"] == "file permissions"]
    assert [line["s"] for line in lines] == ["W", "W"], lines
    assert key_warning in lines[0]["attr"]["warning"], lines
    assert config_warning in lines[1]["attr"]["warning"], lines
    warnings = ctl_json(sidecar, "status")["warnings"]
    assert any(key_warning in w for w in warnings), warnings
    assert any(config_warning in w for w in warnings), warnings
    # Fixed on disk, gone from the next status without a restart.
    os.chmod(files["server"], 0o600)
    os.chmod(config, 0o644)
    warnings = ctl_json(sidecar, "status")["warnings"]
    assert not any("private key" in w or "configuration file" in w for w in warnings), warnings


def ids_of(pid):
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return ([int(v) for v in fields["Uid"].split()], [int(v) for v in fields["Gid"].split()],
            [int(v) for v in fields["Groups"].split()])


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving root up needs root")


@needs_root
def test_user_gives_root_up_after_binding_and_reload_reads_as_that_user(procs, pki, tmp_path):
    import pwd
    nobody = pwd.getpwnam("nobody")
    # The key is readable by root only: it must be read before root is given up.
    files = copy_pki(pki, tmp_path / "pki")
    standin = procs.standin()
    sidecar = procs.sidecar("--user", "nobody", "--tlsMode", "allowTLS",
                            "--tlsCertificateKeyFile", files["server"], "--tlsCAFile", files["ca"],
                            upstream=standin.address)
    sidecar.wait_for_log("gave root up")
    uids, gids, groups = ids_of(sidecar.proc.pid)
    assert uids == [nobody.pw_uid] * 4, uids
    assert gids == [nobody.pw_gid] * 4, gids
    assert groups == [nobody.pw_gid], groups
    for line in sidecar.log_lines():
        assert "running as root" not in line["msg"], line
    assert tls_ping(sidecar, pki) == 1
    # Root (the operator) still reaches the control socket, handed to the user.
    assert ctl_json(sidecar, "status")["ok"] is True
    answer = ctl_json(sidecar, "reload")
    assert answer["ok"] is False, answer
    assert "runs as user nobody (--user)" in answer["error"], answer
    assert "must be readable by that user" in answer["error"], answer
    assert tls_ping(sidecar, pki) == 1


@needs_root
def test_user_gets_the_default_runtime_directory_so_root_ctl_and_cleanup_work(procs):
    import pwd
    import shutil
    import tempfile
    nobody = pwd.getpwnam("nobody")
    parent = pathlib.Path(tempfile.mkdtemp(prefix="tls-sidecar-user-"))
    os.chmod(parent, 0o755)  # a /run of its own, that nobody may traverse
    runtime = parent / "tls-sidecar"
    try:
        standin = procs.standin()
        sidecar = procs.sidecar("--user", "nobody", upstream=standin.address,
                                control_socket="default",
                                env=dict(os.environ, RUNTIME_DIRECTORY=str(runtime)))
        sidecar.wait_for_log("gave root up")
        socket_path = runtime / f"{sidecar.port}.sock"
        assert runtime.stat().st_uid == nobody.pw_uid
        assert socket_path.stat().st_uid == nobody.pw_uid
        # Root's ctl trusts the socket: only its server's user can write to the directory.
        result = subprocess.run([str(harness.sidecar_binary()), "ctl", "--socket",
                                 str(socket_path), "--json", "status"],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["ok"] is True
        # The user removes its own socket at exit.
        assert sidecar.stop() == 0, sidecar.describe()
        assert not socket_path.exists()
    finally:
        shutil.rmtree(parent)


@needs_root
def test_user_with_transparent_egress_is_refused_at_start(procs, tmp_path):
    # SO_MARK needs CAP_NET_ADMIN: without root every transparent connection would fail.
    config = tmp_path / "transparent.toml"
    config.write_text(f'[egress.transparent]\nlisten = "127.0.0.1:{harness.free_port()}"\n')
    result = procs.run_sidecar("--config", config, "--user", "nobody", "--port",
                               harness.free_port(), "--metrics", "", "--control-socket",
                               tmp_path / "s.sock")
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "--user nobody: egress.transparent" in last and "CAP_NET_ADMIN" in last, last


@needs_root
def test_running_as_root_without_user_warns_once(procs, pki):
    standin = procs.standin()
    sidecar = procs.sidecar(upstream=standin.address)
    # The log is written by its own thread: once "listening" (logged last at start) is out,
    # so is every line before it.
    harness.wait_until(lambda: any(line["msg"] == "listening" for line in sidecar.log_lines()),
                       what="the start-up log up to \"listening\"")
    lines = [line for line in sidecar.log_lines() if "running as root" in line["msg"]]
    assert len(lines) == 1 and lines[0]["s"] == "W", lines
    assert "--user NAME" in lines[0]["msg"]


def test_an_unknown_user_is_a_start_up_error(procs, tmp_path):
    result = procs.run_sidecar("--user", "no-such-user-of-tls-sidecar", "--port",
                               harness.free_port(), "--metrics", "", "--control-socket",
                               tmp_path / "s.sock")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        "tls-sidecar: error: --user: no such user no-such-user-of-tls-sidecar"
