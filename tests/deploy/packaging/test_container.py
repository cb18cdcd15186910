"""The OCI image that deploy/container/build.sh builds offline with buildah: its files are the
binary, the libraries it loads and a passwd entry; its configuration runs as the non-root
user; and its root file system, run with chroot as that user, serves a TLS client (pymongo)
through to the stand-in mongod. Containers themselves cannot run in every sandbox (crun
cannot set rlimits here): `podman run` is used where it works, and its refusal printed.
"""

import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid

import pymongo
import pytest

import harness
from conftest import DEPLOY_DIR, require_root, require_tools

UID = 65532


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    require_root("buildah's storage and chroot")
    require_tools("buildah", "strip", "chroot")
    tag = f"localhost/tls-sidecar-test:{uuid.uuid4().hex[:12]}"
    archive = tmp_path_factory.mktemp("image") / "tls-sidecar.oci.tar"
    result = subprocess.run([str(DEPLOY_DIR / "container" / "build.sh"), "--binary",
                             str(harness.sidecar_binary()), "--tag", tag, "--output",
                             str(archive)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == tag
    container = subprocess.run(["buildah", "from", "--name", f"tls-sidecar-test-{os.getpid()}",
                                tag], capture_output=True, text=True, check=True).stdout.strip()
    try:
        rootfs = subprocess.run(["buildah", "mount", container], capture_output=True, text=True,
                                check=True).stdout.strip()
        yield {"tag": tag, "archive": archive, "container": container, "rootfs": rootfs}
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)
        subprocess.run(["buildah", "rmi", "--force", tag], capture_output=True)


def test_the_archive_is_an_oci_image_of_a_non_root_user(image):
    with tarfile.open(image["archive"]) as archive:
        names = archive.getnames()
        assert "oci-layout" in names and "index.json" in names
        index = json.load(archive.extractfile("index.json"))
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"].endswith(
        image["tag"].split(":")[-1])
    config = json.loads(subprocess.run(["buildah", "inspect", "--type", "image", image["tag"]],
                                       capture_output=True, text=True, check=True).stdout)
    oci = config["OCIv1"]["config"]
    assert oci["User"] == f"{UID}:{UID}"
    assert oci["Entrypoint"] == ["/usr/bin/tls-sidecar"]
    assert {p.split("/")[0] for p in oci["ExposedPorts"]} == {"27017", "9442"}


def test_the_image_holds_the_binary_and_exactly_the_libraries_it_loads(image):
    rootfs = image["rootfs"]
    files = set()
    for directory, _, names in os.walk(rootfs):
        for name in names:
            files.add(os.path.relpath(os.path.join(directory, name), rootfs))
    libraries = {f for f in files if ".so" in f}
    expected = set()
    ldd = subprocess.run(["ldd", str(harness.sidecar_binary())], capture_output=True,
                         text=True, check=True).stdout
    for line in ldd.splitlines():
        parts = line.split()
        if "=>" in parts and parts[parts.index("=>") + 1].startswith("/"):
            expected.add(parts[parts.index("=>") + 1].lstrip("/"))
        elif parts and parts[0].startswith("/"):
            expected.add(parts[0].lstrip("/"))
    assert libraries == expected
    assert files == expected | {"usr/bin/tls-sidecar", "etc/passwd", "etc/group"}
    passwd = open(os.path.join(rootfs, "etc/passwd")).read()
    assert f"tls-sidecar:x:{UID}:{UID}:" in passwd
    described = subprocess.run(["file", "-b", os.path.join(rootfs, "usr/bin/tls-sidecar")],
                               capture_output=True, text=True, check=True).stdout
    assert "not stripped" not in described and "stripped" in described


def in_image(rootfs, *args):
    return ["chroot", f"--userspec={UID}:{UID}", rootfs, "/usr/bin/tls-sidecar", *args]


def test_version_runs_in_the_image_as_the_non_root_user(image):
    result = subprocess.run(in_image(image["rootfs"], "--version"), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("tls-sidecar ")
    assert "BoringSSL (/usr/lib/x86_64-linux-gnu/android/libssl.so.0)" in result.stdout
    # The same with a real container runtime, where this machine lets one run; the chroot
    # run above is what this test asserts everywhere.
    if shutil.which("podman") is not None:
        podman = subprocess.run(["podman", "run", "--rm", "--network", "none", image["tag"],
                                 "--version"], capture_output=True, text=True, timeout=120)
        if podman.returncode == 0:
            assert podman.stdout == result.stdout
        else:
            print(f"podman run refused on this machine: {podman.stderr.strip()}")


def test_a_tls_client_reaches_mongod_through_the_image(image, procs, pki):
    rootfs = image["rootfs"]
    certs = os.path.join(rootfs, "etc/tls-sidecar/tls")
    os.makedirs(certs, exist_ok=True)
    for name, role in (("server.pem", "server"), ("ca.pem", "ca")):
        shutil.copy(pki[role], os.path.join(certs, name))
        os.chown(os.path.join(certs, name), 0, UID)
        os.chmod(os.path.join(certs, name), 0o640)
    standin = procs.standin()
    port = harness.free_port()
    sidecar = harness.Child("image", in_image(
        rootfs, "--bind_ip", "127.0.0.1", "--port", str(port), "--upstream", standin.address,
        "--tlsMode", "preferTLS", "--tlsCertificateKeyFile", "/etc/tls-sidecar/tls/server.pem",
        "--tlsCAFile", "/etc/tls-sidecar/tls/ca.pem", "--tlsAllowConnectionsWithoutCertificates",
        "--metrics", "", "--control-socket", f"/run/tls-sidecar/{port}.sock"), procs.workdir)
    procs.children.append(sidecar)
    deadline = time.monotonic() + 20
    while not harness.is_listening(port):
        assert sidecar.alive(), sidecar.describe()
        assert time.monotonic() < deadline, sidecar.describe()
        time.sleep(0.05)
    client = pymongo.MongoClient("127.0.0.1", port, tls=True, tlsCAFile=str(pki["ca"]),
                                 serverSelectionTimeoutMS=10000, appname="image-test")
    try:
        marker = uuid.uuid4().hex
        client.image.test.insert_one({"marker": marker})
        assert client.image.test.find_one({"marker": marker})["marker"] == marker
    finally:
        client.close()
    assert sidecar.stop() == 0
