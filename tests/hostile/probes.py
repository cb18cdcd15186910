"""What every hostile case checks afterwards, and the raw messages the cases send.

After each case: the sidecar still serves a normal client (a hello over plaintext and over
TLS, with the time it took), its resident memory stays within a bound of where it started,
and it does not spin (CPU seconds over an idle second)."""

import os
import pathlib
import socket
import ssl
import struct
import time

import harness
from tlsclient import client_context, hello_round_trip, tls_connect

# Resident memory the sidecar may gain over all cases of a file (allocator caches, TLS
# session state, the metrics registry's label sets), far below what any case could leak.
RSS_GROWTH_LIMIT_MIB = 64
# CPU the sidecar may use over one idle second once a case is over.
IDLE_CPU_LIMIT_SECONDS = 0.2


def record(line):
    """Prints a figure and appends it to Testing/hostile-figures.txt in the build directory,
    which tests/run.sh shows at the end (pytest hides a passing test's output)."""
    print(line)
    build = os.environ.get("SIDECAR_BINARY_DIR")
    if build:
        path = pathlib.Path(build, "Testing", "hostile-figures.txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(line + "\n")


def rss_mib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def cpu_seconds(pid):
    # utime and stime, fields 14 and 15 of /proc/PID/stat, counted after the command's ")".
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(pid, seconds=1.0):
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - before


def serve_time(port, ca_file):
    """Seconds for a plaintext hello and a TLS hello, each on a new connection; fails when
    either is not answered."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(harness.op_msg({"hello": 1, "$db": "admin"}))
        _, reply = harness.read_reply(sock)
        assert reply.get("ok") == 1, reply
    with tls_connect(port, client_context(ca_file)) as sock:
        assert hello_round_trip(sock)["ok"] == 1
    return time.monotonic() - started


def closed_within(sock, seconds):
    """Reads until the sidecar closes `sock` (EOF or reset); returns the bytes read. Fails when
    it is still open after `seconds`."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    received = bytearray()
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return bytes(received)
            received += chunk
            assert time.monotonic() < deadline, f"still sending after {seconds}s"
    except (ConnectionResetError, BrokenPipeError):
        return bytes(received)
    except socket.timeout:
        raise AssertionError(f"connection still open after {seconds}s "
                             f"({len(received)} bytes received)") from None


def reset(sock):
    """Closes `sock` with an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# --- TLS records built by hand --------------------------------------------------------------

# ECDHE-AEAD suites a TLS 1.2 server accepts, then old ones for the old versions.
MODERN_SUITES = (0xC02F, 0xC030, 0xC02B, 0xC02C, 0xCCA8, 0xCCA9)
OLD_SUITES = (0xC013, 0xC014, 0x002F, 0x0035, 0x000A)


def _extension(kind, data):
    return struct.pack(">HH", kind, len(data)) + data


def client_hello(version=0x0303, record_version=0x0301, suites=MODERN_SUITES + OLD_SUITES,
                 padding=0):
    """A ClientHello for `version` (0x0300 SSLv3 ... 0x0303 TLS 1.2), without a
    supported_versions extension, in as many records as it needs; `padding` adds a padding
    extension of that many bytes."""
    extensions = (_extension(0x000A, struct.pack(">HHH", 4, 0x001D, 0x0017)) +  # groups
                  _extension(0x000B, b"\x01\x00") +  # point formats
                  _extension(0x000D, struct.pack(">HHHH", 6, 0x0401, 0x0804, 0x0403)))
    if padding:
        extensions += _extension(0x0015, bytes(padding))
    cipher_bytes = b"".join(struct.pack(">H", s) for s in suites)
    body = (struct.pack(">H", version) + os.urandom(32) + b"\x00" +
            struct.pack(">H", len(cipher_bytes)) + cipher_bytes + b"\x01\x00" +
            struct.pack(">H", len(extensions)) + extensions)
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    records = b""
    for at in range(0, len(handshake), 16384):
        chunk = handshake[at:at + 16384]
        records += b"\x16" + struct.pack(">HH", record_version, len(chunk)) + chunk
    return records


def raw_socket_of(tls_sock):
    """A plain socket on the same connection as `tls_sock`, to write records the TLS library
    would never write."""
    return socket.socket(fileno=os.dup(tls_sock.fileno()))


def tls12_context(ca_file):
    ctx = client_context(ca_file)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx
