"""net.upstreamProxyProtocol (SPEC §5, README): the sidecar sends a PROXY protocol header
first, so the server behind it sees the real client. The parser on the other side is an
independent one: Debian's HAProxy with `accept-proxy` on its bind, in front of the stand-in
mongod, logging the client and destination addresses (and, for version 2, the authority TLV)
that the header told it. A header HAProxy cannot parse closes the connection, so every
request below also proves the header is well formed."""

import re
import shutil
import socket
import time

import pytest

import harness
from tlsclient import client_context, hello_round_trip, tls_connect

LOG_LINE = re.compile(r"pp-client=(\S+):(\d+) pp-destination=(\S+):(\d+) authority=(\S+)")


class Haproxy:
    """HAProxy in TCP mode on a free loopback port, `accept-proxy` on its bind, forwarding
    to `upstream` and logging one line per connection (at connect, `option logasap`) to its
    stderr."""

    def __init__(self, procs, upstream):
        binary = shutil.which("haproxy")
        assert binary, "haproxy is not installed (Debian package haproxy; tests/run.sh)"
        self.port = harness.free_port()
        config = procs.workdir / "haproxy.cfg"
        config.write_text(f"""global
    log stderr format raw local0

defaults
    mode tcp
    log global
    option logasap
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend sidecar_upstream
    bind 127.0.0.1:{self.port} accept-proxy
    log-format "pp-client=%ci:%cp pp-destination=%fi:%fp authority=%[fc_pp_authority]"
    default_backend standin

backend standin
    server standin {upstream}
""")
        self.child = harness.Child("haproxy", [binary, "-db", "-f", config], procs.workdir)
        procs.children.append(self.child)
        deadline = time.monotonic() + 15
        while not harness.is_listening(self.port):
            assert self.child.alive(), self.child.describe()
            assert time.monotonic() < deadline, f"haproxy not listening\n{self.child.describe()}"
            time.sleep(0.05)

    def told(self):
        """(client, client port, destination, destination port, authority) per logged
        connection, in order."""
        return [(m[1], int(m[2]), m[3], int(m[4]), m[5])
                for m in LOG_LINE.finditer(self.child.stderr_text())]

    def wait_told(self, client_port, timeout=10):
        """The logged connection whose client port is `client_port`."""
        deadline = time.monotonic() + timeout
        while True:
            rows = [row for row in self.told() if row[1] == client_port]
            if rows:
                return rows
            if time.monotonic() >= deadline:
                raise AssertionError(f"HAProxy never logged client port {client_port}\n"
                                     f"{self.child.describe()}")
            time.sleep(0.05)


@pytest.fixture
def chain(procs, pki):
    """stand-in <- HAProxy (accept-proxy) <- sidecar, by PROXY protocol version."""

    def make(version):
        standin = procs.standin()
        haproxy = Haproxy(procs, standin.address)
        config = (f"[net]\nupstreamProxyProtocol = {version}\n"
                  f"[net.tls]\nmode = \"allowTLS\"\ncertificateKeyFile = \"{pki['server']}\"\n"
                  f"CAFile = \"{pki['ca']}\"\n")
        sidecar = procs.sidecar(upstream=f"127.0.0.1:{haproxy.port}", config=config)
        return standin, haproxy, sidecar

    return make


@pytest.mark.parametrize("version", [1, 2])
def test_plaintext_client_address_reaches_the_server(chain, version):
    standin, haproxy, sidecar = chain(version)
    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=10) as sock:
        client_port = sock.getsockname()[1]
        assert hello_round_trip(sock)["ok"] == 1
        [(client, port, destination, destination_port, authority)] = \
            haproxy.wait_told(client_port)
    # HAProxy's own TCP peer is the sidecar's upstream socket: only the header can have told
    # it the client's port and the address the client dialled.
    assert (client, port) == ("127.0.0.1", client_port)
    assert (destination, destination_port) == ("127.0.0.1", sidecar.port)
    assert authority == "-"  # plaintext: no SNI, no authority TLV


@pytest.mark.parametrize("version", [1, 2])
def test_tls_client_address_and_sni_reach_the_server(chain, pki, version):
    standin, haproxy, sidecar = chain(version)
    context = client_context(pki["ca"], pki["client"])
    with tls_connect(sidecar.port, context) as sock:
        client_port = sock.getsockname()[1]
        assert hello_round_trip(sock)["ok"] == 1
        [(client, port, destination, destination_port, authority)] = \
            haproxy.wait_told(client_port)
    assert (client, port) == ("127.0.0.1", client_port)
    assert (destination, destination_port) == ("127.0.0.1", sidecar.port)
    # Version 2 carries the SNI the client sent (tls_connect names "localhost") as
    # PP2_TYPE_AUTHORITY; version 1 has no room for it.
    assert authority == ("localhost" if version == 2 else "-")


def test_the_readiness_probe_announces_itself_too(chain):
    # mongod's proxyPort takes only connections that start with a header: the sidecar's own
    # hello probe sends one naming its socket, and the sidecar becomes ready through HAProxy.
    standin, haproxy, sidecar = chain(2)
    deadline = time.monotonic() + 15
    while not haproxy.told():
        assert time.monotonic() < deadline, haproxy.child.describe() + sidecar.describe()
        time.sleep(0.05)
    client, port, destination, destination_port, authority = haproxy.told()[0]
    assert client == "127.0.0.1" and destination == "127.0.0.1"
    assert destination_port == haproxy.port and authority == "-"
