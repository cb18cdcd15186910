"""deploy/egress-iptables.sh (transparent egress) and deploy/ROLLING-UPGRADE.md.

The script's rules are checked as it would run them (--dry-run, no privileges needed) and,
where network namespaces can be made, for real in a namespace of their own: installed,
installed again (idempotent), removed without leftovers. The cluster test
(tests/cluster/) sends real traffic through them."""

import os
import pathlib
import re
import subprocess
import uuid

import pytest

from test_deploy import SPEC_METRICS

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "egress-iptables.sh"
RUNBOOK = ROOT / "deploy" / "ROLLING-UPGRADE.md"


def run(*args, ns=None):
    argv = [str(SCRIPT), *args]
    if ns is not None:
        argv = ["ip", "netns", "exec", ns] + argv
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_dry_run_lists_the_rules_in_a_chain_of_their_own():
    result = run("--dry-run", "--ports", "27017,27018", "--listen-port", "15001",
                 "--owner", "mongodb")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "iptables -t nat -N TLS_SIDECAR_EGRESS",
        "iptables -t nat -A TLS_SIDECAR_EGRESS -m mark --mark 0x5ec -j RETURN",
        "iptables -t nat -A TLS_SIDECAR_EGRESS -d 127.0.0.0/8 -j RETURN",
        "iptables -t nat -A TLS_SIDECAR_EGRESS -p tcp -m multiport --dports 27017,27018 "
        "-m owner --uid-owner mongodb -j REDIRECT --to-ports 15001",
        "iptables -t nat -A OUTPUT -p tcp -j TLS_SIDECAR_EGRESS",
    ]


@pytest.mark.parametrize("args,needle", [
    (["--ports", "27017;reboot"], "--ports"),
    (["--listen-port", "70000"], "--listen-port"),
    (["--mark", "0"], "--mark"),
    (["--chain", "bad chain"], "--chain"),
    (["--frobnicate"], "unknown option"),
])
def test_bad_arguments_exit_2_and_say_which(args, needle):
    result = run("--dry-run", *args)
    assert result.returncode == 2
    assert needle in result.stderr


def namespace():
    if os.geteuid() != 0:
        pytest.skip("needs root to make a network namespace")
    name = f"tlsc-ipt-{uuid.uuid4().hex[:6]}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        pytest.skip("cannot make a network namespace here")
    return name


def nat_rules(ns):
    return subprocess.run(["ip", "netns", "exec", ns, "iptables", "-t", "nat", "-S"],
                          capture_output=True, text=True, check=True).stdout.splitlines()


def test_install_is_idempotent_and_undo_leaves_nothing():
    ns = namespace()
    try:
        before = nat_rules(ns)
        assert run(ns=ns).returncode == 0
        first = nat_rules(ns)
        assert "-A OUTPUT -p tcp -j TLS_SIDECAR_EGRESS" in first
        assert ("-A TLS_SIDECAR_EGRESS -p tcp -m multiport --dports 27017 "
                "-j REDIRECT --to-ports 15001") in first
        assert run(ns=ns).returncode == 0
        assert nat_rules(ns) == first
        assert run("--ports", "27019", ns=ns).returncode == 0
        changed = nat_rules(ns)
        assert any("--dports 27019" in rule for rule in changed)
        assert not any("--dports 27017" in rule for rule in changed)
        assert run("--undo", ns=ns).returncode == 0
        assert nat_rules(ns) == before
        assert run("--undo", ns=ns).returncode == 0  # nothing left to undo is fine
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_runbook_names_only_spec_metrics_and_every_step():
    text = RUNBOOK.read_text()
    named = set(re.findall(r"tls_sidecar_[a-z_]+", text))
    assert named, "the runbook names no metric"
    assert named <= set(SPEC_METRICS), named - set(SPEC_METRICS)
    for command in ("set-mode allowTLS", "set-mode preferTLS", "set-mode requireTLS",
                    "preflight preferTLS", "drain-plaintext", "--persist", "--force"):
        assert command in text, command
