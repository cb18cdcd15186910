"""Shared by the tests of what deploy/ ships (the package, the units, the image, the
manifests): the e2e harness (stand-in mongod, certificates, free ports). Skips are reported as
skips by the skip_report plugin that every pytest-based ctest test loads (tests/pytest).
"""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "e2e"))

import harness  # noqa: E402

SOURCE_DIR = pathlib.Path(__file__).resolve().parents[3]
DEPLOY_DIR = SOURCE_DIR / "deploy"


@pytest.fixture
def procs(tmp_path):
    """A harness.ProcessGroup whose children are stopped at teardown and checked for
    sanitizer reports."""
    group = harness.ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        print(group.describe())
        group.stop_all()
    reports = group.sanitizer_reports()
    assert not reports, "\n\n".join(reports)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return harness.make_pki(tmp_path_factory.mktemp("pki"))


def require_root(why):
    import os
    if os.geteuid() != 0:
        pytest.skip(f"needs root: {why}")


def require_tools(*tools):
    import shutil
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (tests/run.sh installs them)")


def built_package():
    """The .deb that deploy/debian/build-deb.sh builds in BUILD/deb, extracted into
    BUILD/deb/root as dpkg would unpack it. Built once per binary: ctest runs the tests
    that use it one at a time (RESOURCE_LOCK), so this never races."""
    import subprocess
    require_tools("help2man", "dpkg-deb", "dpkg-shlibdeps", "cmake", "ninja")
    build = harness.binary_dir() / "deb"
    result = subprocess.run([str(DEPLOY_DIR / "debian" / "build-deb.sh"), str(build)],
                            capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    deb = pathlib.Path(result.stdout.splitlines()[-1])
    assert deb.name.startswith("tls-sidecar_") and deb.name.endswith("_amd64.deb"), deb
    root = build / "root"
    subprocess.run(["rm", "-rf", str(root)], check=True)
    root.mkdir()
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return deb, root
