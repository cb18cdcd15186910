"""The Debian package: what `deploy/debian/build-deb.sh` makes with CPack, inspected with
dpkg-deb and lintian, unpacked as dpkg would, and the unpacked binary run."""

import gzip
import re
import subprocess

import pytest

from conftest import SOURCE_DIR, built_package, require_tools

# lintian's errors that are deliberate, each with its reason. Anything else fails the test.
EXPECTED_LINTIAN_ERRORS = {
    # The Maintainer: is a placeholder until a distributor sets SIDECAR_PACKAGE_MAINTAINER.
    "bogus-mail-host", "bogus-mail-host-in-debian-changelog",
    # BoringSSL is Debian's android-libboringssl, installed in a private directory so that it
    # never collides with OpenSSL's libssl: the RUNPATH is how the binary finds it.
    "custom-library-search-path",
}


@pytest.fixture(scope="module")
def package():
    return built_package()


def dpkg_deb(*args):
    return subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, check=True).stdout


def test_control_fields_and_depends_derived_from_the_libraries(package):
    deb, _ = package
    version = re.search(r"project\(tls_sidecar VERSION ([0-9.]+)",
                        (SOURCE_DIR / "CMakeLists.txt").read_text()).group(1)
    assert deb.name == f"tls-sidecar_{version}_amd64.deb"
    info = dpkg_deb("--info", str(deb))
    print(info)
    fields = dict(re.findall(r"^ (\w[\w-]*): (.*)$", info, re.M))
    assert fields["Package"] == "tls-sidecar"
    assert fields["Version"] == version
    assert fields["Architecture"] == "amd64"
    depends = {d.split()[0] for d in fields["Depends"].split(", ")}
    # dpkg-shlibdeps found the package of every library the binary links (BoringSSL, libuv,
    # Abseil, prometheus-cpp, civetweb), and postinst's adduser is stated.
    for needed in ("android-libboringssl", "libuv1", "libabsl20220623", "libcivetweb1",
                   "libprometheus-cpp-core1.0", "libc6", "libstdc++6", "adduser"):
        assert needed in depends, (needed, fields["Depends"])
    # And nothing the binary does not link: every Depends but adduser is a library's package.
    ldd = subprocess.run(["ldd", str(package[1] / "usr/bin/tls-sidecar")], capture_output=True,
                         text=True, check=True).stdout
    owners = set()
    for path in re.findall(r"=> (/\S+)", ldd):
        owner = subprocess.run(["dpkg", "-S", path.replace("/lib/x86_64", "/usr/lib/x86_64")
                                if not path.startswith("/usr") else path],
                               capture_output=True, text=True)
        if owner.returncode != 0:
            owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        owners.add(owner.stdout.split(":")[0])
    assert depends - {"adduser"} <= owners, (depends, owners)
    assert "conffiles" in info and "postinst" in info


def test_contents_conffiles_and_maintainer_scripts(package, tmp_path):
    deb, root = package
    contents = dpkg_deb("--contents", str(deb))
    paths = {line.split()[-1].lstrip(".") for line in contents.splitlines()}
    for path in ("/usr/bin/tls-sidecar", "/usr/share/man/man8/tls-sidecar.8.gz",
                 "/etc/tls-sidecar/tls-sidecar.toml", "/lib/systemd/system/tls-sidecar.service",
                 "/lib/systemd/system/tls-sidecar@.service",
                 "/usr/share/tls-sidecar/grafana/tls-sidecar.json",
                 "/usr/share/tls-sidecar/prometheus/tls-sidecar.rules.yml",
                 "/usr/share/tls-sidecar/kubernetes/statefulset.yaml",
                 "/usr/share/tls-sidecar/egress-iptables.sh",
                 "/usr/share/tls-sidecar/tls-sidecar-upgrade",
                 "/usr/share/doc/tls-sidecar/copyright", "/usr/share/doc/tls-sidecar/changelog.gz",
                 "/usr/share/doc/tls-sidecar/README.md"):
        assert path in paths, path
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "--control", str(deb), str(control)], check=True)
    assert (control / "conffiles").read_text().split() == ["/etc/tls-sidecar/tls-sidecar.toml"]
    postinst = (control / "postinst").read_text()
    assert "adduser --system --group" in postinst and "tls-sidecar" in postinst
    for script in ("postinst", "prerm", "postrm"):
        subprocess.run(["sh", "-n", str(control / script)], check=True)
    # The installed files are the shipped ones.
    assert (root / "etc/tls-sidecar/tls-sidecar.toml").read_text() == \
        (SOURCE_DIR / "deploy/systemd/tls-sidecar.toml").read_text()
    assert (root / "lib/systemd/system/tls-sidecar.service").read_text() == \
        (SOURCE_DIR / "deploy/systemd/tls-sidecar.service").read_text()


def test_the_binary_is_stripped_and_its_symbols_are_in_the_dbgsym_package(package):
    deb, root = package
    binary = root / "usr/bin/tls-sidecar"
    described = subprocess.run(["file", "-b", str(binary)], capture_output=True, text=True,
                               check=True).stdout
    assert "stripped" in described and "not stripped" not in described, described
    build_id = re.search(r"BuildID\[sha1\]=([0-9a-f]+)", described).group(1)
    ddeb = deb.with_name(deb.name.replace("tls-sidecar_", "tls-sidecar-dbgsym_")).with_suffix(
        ".ddeb")
    contents = dpkg_deb("--contents", str(ddeb))
    assert f"./usr/lib/debug/.build-id/{build_id[:2]}/{build_id[2:]}.debug" in contents
    info = dpkg_deb("--info", str(ddeb))
    assert re.search(r"^ Depends: tls-sidecar \(= ", info, re.M), info


def test_the_unpacked_binary_runs_and_its_man_page_is_its_help(package):
    _, root = package
    binary = root / "usr/bin/tls-sidecar"
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             check=True).stdout
    assert re.match(r"tls-sidecar \d+\.\d+\.\d+\nTLS library: BoringSSL \(/usr/lib/", version)
    help_text = subprocess.run([str(binary), "--help"], capture_output=True, text=True,
                               check=True).stdout
    assert "--check-config" in help_text and "--tlsMode" in help_text
    page = gzip.decompress((root / "usr/share/man/man8/tls-sidecar.8.gz").read_bytes()).decode()
    assert page.startswith('.\\" DO NOT MODIFY THIS FILE!  It was generated by help2man')
    assert re.search(r'^\.TH TLS-SIDECAR "8"', page, re.M)
    for flag in ("check\\-config", "tlsCertificateKeyFile", "control\\-socket"):
        assert flag in page, flag
    assert ".SH FILES" in page and "/run/tls-sidecar/PORT.sock" in page
    if subprocess.run(["sh", "-c", "command -v man"]).returncode == 0:
        rendered = subprocess.run(["man", "-l", str(root / "usr/share/man/man8/tls-sidecar.8.gz")],
                                  capture_output=True, text=True, env={"MANWIDTH": "80",
                                                                       "PATH": "/usr/bin:/bin"})
        assert rendered.returncode == 0, rendered.stderr


def test_lintian_finds_nothing_but_the_known_errors(package):
    require_tools("lintian")
    deb, _ = package
    result = subprocess.run(["lintian", "--tag-display-limit", "0", str(deb)],
                            capture_output=True, text=True, timeout=600)
    print(result.stdout)  # the findings, for the record
    tags = re.findall(r"^([EWIXP]): tls-sidecar: ([\w-]+)", result.stdout, re.M)
    errors = {tag for level, tag in tags if level == "E"}
    warnings = {tag for level, tag in tags if level == "W"}
    assert errors <= EXPECTED_LINTIAN_ERRORS, errors - EXPECTED_LINTIAN_ERRORS
    assert not warnings, warnings
