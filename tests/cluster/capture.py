"""capture.py: what rolling_upgrade.py sees on the wire. tcpdump on the cluster's bridge, each
TCP flow reassembled by sequence number with the time of each segment, and the parsers that
tell plaintext MongoDB (OP_MSG headers) from TLS records.

The walk captures the traffic between the nodes for its whole length, from before the first
process starts: every member connection's first byte is in the capture, so each one is
either TLS from its first byte or it is not, and its bytes are counted in the stage of the
walk they were sent in.
"""

import pathlib
import re
import signal
import struct
import subprocess
import time

from cluster_net import BRIDGE, NODES, SUBNET, SWITCH, address, node_ns, sh

# A closed port on node 2 that node 1 dials to mark the end of a capture (Capture.stop).
MARKER_PORT = 9
MEMBERS_FILTER = f"tcp and src net {SUBNET}.0/30 and dst net {SUBNET}.0/30"


def socket_ip(text):
    return bytes(int(part) for part in text.split("."))


NODE_IPS = {socket_ip(address(k)) for k in NODES}


def inter_node(flow):
    """Whether a flow ((src ip, sport), (dst ip, dport)) joins two nodes."""
    return flow[0][0] in NODE_IPS and flow[1][0] in NODE_IPS and flow[1][1] != MARKER_PORT


class Capture:
    """tcpdump on the bridge. It is started with a condition (tcpdump says it is listening),
    and stop() reads tcpdump's own counts: packets the kernel dropped make the capture
    incomplete, which fails the walk rather than weakening its checks."""

    def __init__(self, work, name, node_filter=MEMBERS_FILTER):
        self.path = pathlib.Path(work) / f"{name}.pcap"
        self.err_path = pathlib.Path(work) / f"{name}.tcpdump"
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", SWITCH, "tcpdump", "-i", BRIDGE, "-U", "-s", "0", "-n",
             "-B", "8192", "-w", str(self.path), node_filter], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self.err)
        deadline = time.monotonic() + 10
        while b"listening on" not in self.err_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tcpdump did not start: " +
                                   self.err_path.read_text(errors="replace"))
            time.sleep(0.05)

    def stop(self):
        """Stops tcpdump once it has written everything up to now; returns the flows (see
        tcp_flows). Raises when the kernel dropped packets."""
        # tcpdump reads the kernel's buffer at its own pace, and what it has not read at
        # SIGINT is never written ("received by filter" but not "captured"). So a marker
        # connection attempt is made between two nodes (to a closed port: a SYN and a RST),
        # and tcpdump is stopped only once the marker is in the file, and so is everything
        # before it.
        deadline = time.monotonic() + 30
        while True:
            sh("bash", "-c", f"exec 3<>/dev/tcp/{address(2)}/{MARKER_PORT}", ns=node_ns(1),
               check=False, timeout=10)
            if any(key[1][1] == MARKER_PORT for key in tcp_flows(self.path)):
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tcpdump did not write the marker packet: " +
                                   self.err_path.read_text(errors="replace"))
            time.sleep(0.2)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)
        self.err.close()
        report = self.err_path.read_text(errors="replace")
        dropped = [int(n) for n in re.findall(r"(\d+) packets? dropped by (?:kernel|interface)",
                                              report)]
        if not re.search(r"packets? dropped by kernel", report):
            raise RuntimeError(f"tcpdump did not report its dropped-packet count:\n{report}")
        if any(dropped):
            raise RuntimeError(f"tcpdump lost packets, the capture is incomplete:\n{report}")
        return tcp_flows(self.path)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Flow:
    """One direction of one TCP connection in a capture."""

    def __init__(self):
        self.segments = {}    # sequence number -> (time, payload); retransmissions dropped
        self.syn = False      # the connection's SYN is in the capture: it opened during it
        self.syn_ts = None
        self.closed = False   # a FIN or RST of this direction is in the capture
        self.close_ts = None
        self.stream = b""     # payload by sequence number, up to the first missing byte
        self.gap_bytes = 0    # bytes missing in the capture inside the stream, not in it
        self.base = 0         # the sequence number of the stream's first byte

    def offset(self, seq):
        return (seq - self.base) % (1 << 32)

    def between(self, start, end):
        """The stream bytes sent from time `start` until `end` (segments by capture time;
        nothing after a hole)."""
        inside = [self.offset(seq) for seq, (ts, _) in self.segments.items()
                  if start <= ts < end and self.offset(seq) < len(self.stream)]
        if not inside:
            return b""
        last = max((self.offset(seq) + len(p) for seq, (ts, p) in self.segments.items()
                    if start <= ts < end), default=0)
        return self.stream[min(inside):min(last, len(self.stream))]

    def bytes_between(self, start, end):
        return sum(len(p) for ts, p in self.segments.values() if start <= ts < end)


def tcp_flows(path):
    """Reassembles each direction of each flow of a pcap (Ethernet, IPv4) by sequence number,
    dropping retransmitted bytes. A stream ends at its first missing segment: nothing after
    a hole is counted or parsed (zeros would pass for data). Returns {(src, dst): Flow}
    with src and dst (ip bytes, port)."""
    data = pathlib.Path(path).read_bytes()
    flows = {}
    if len(data) < 24:
        return flows
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    fraction = 1e-9 if magic in (0xA1B23C4D, 0x4D3CB2A1) else 1e-6
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise RuntimeError(f"unexpected pcap link type {linktype}")
    offset = 24
    while offset + 16 <= len(data):
        ts_sec, ts_frac, caplen, _ = struct.unpack(endian + "IIII", data[offset:offset + 16])
        if offset + 16 + caplen > len(data):
            break  # a packet tcpdump is still writing
        frame = data[offset + 16:offset + 16 + caplen]
        offset += 16 + caplen
        if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        if ip[9] != 6:
            continue
        tcp = ip[ihl:total]
        if len(tcp) < 20:
            continue
        ts = ts_sec + ts_frac * fraction
        sport, dport, seq = struct.unpack("!HHI", tcp[:8])
        flags = tcp[13]
        flow = flows.setdefault(((ip[12:16], sport), (ip[16:20], dport)), Flow())
        if flags & 0x02:
            flow.syn = True
            flow.syn_ts = ts
            flow.isn = seq
        if flags & 0x05 and not flow.closed:
            flow.closed = True
            flow.close_ts = ts
        payload = tcp[(tcp[12] >> 4) * 4:]
        if payload:
            flow.segments.setdefault(seq, (ts, payload))
    for flow in flows.values():
        reassemble(flow)
    return flows


def reassemble(flow):
    if not flow.segments:
        return
    ordered = sorted(flow.segments.items())
    flow.base = (flow.isn + 1) if flow.syn else ordered[0][0]
    stream = bytearray()
    for seq, (_, payload) in sorted(flow.segments.items(), key=lambda s: flow.offset(s[0])):
        start = flow.offset(seq)
        if start + len(payload) <= len(stream):
            continue
        if start > len(stream):
            flow.gap_bytes += start - len(stream)
            break
        stream += payload[len(stream) - start:]
    flow.stream = bytes(stream)


def op_msg_headers(stream):
    """OP_MSG headers in a stream: a 16-byte MongoDB message header with opcode 2013 at
    offset 12 and a length of 21 bytes to 48 MiB, at any offset."""
    found = 0
    opcode = struct.pack("<i", 2013)
    position = stream.find(opcode, 12)
    while position != -1:
        start = position - 12
        length = struct.unpack("<i", stream[start:start + 4])[0]
        if 21 <= length <= 48 * 1024 * 1024:
            found += 1
        position = stream.find(opcode, position + 1)
    return found


def tls_records(stream):
    """Parses a stream from its first byte as TLS records (RFC 8446 §5.1): content type
    20-23, legacy version 0x0303 (0x0301 allowed for the first record, the ClientHello's),
    length 1..2^14+2048. Returns (records, None) or (records, why it is not TLS). A record
    cut by the end of the capture is fine."""
    offset = 0
    records = 0
    while offset + 5 <= len(stream):
        content_type = stream[offset]
        version = struct.unpack("!H", stream[offset + 1:offset + 3])[0]
        length = struct.unpack("!H", stream[offset + 3:offset + 5])[0]
        if content_type not in (20, 21, 22, 23):
            return records, f"content type {content_type} at byte {offset}"
        if version != 0x0303 and not (records == 0 and version == 0x0301):
            return records, f"version {version:#06x} at byte {offset}"
        if not 1 <= length <= 16384 + 2048:
            return records, f"record length {length} at byte {offset}"
        offset += 5 + length
        records += 1
    return records, None


def is_tls(flow):
    """Whether the flow is TLS from its first byte: its SYN is captured, the stream has no
    hole and parses as TLS records throughout. Anything else counts as plaintext."""
    return flow.syn and not flow.gap_bytes and tls_records(flow.stream)[1] is None


def describe_flow(key):
    (src, sport), (dst, dport) = key
    return f"{'.'.join(map(str, src))}:{sport} -> {'.'.join(map(str, dst))}:{dport}"


def not_tls(key, flow):
    """Why a flow opened after preferTLS fails the check, for the failure message."""
    records, problem = tls_records(flow.stream)
    return (f"{describe_flow(key)} opened after preferTLS is not TLS: "
            f"{problem or 'a hole in the capture'} after {records} records; "
            f"{op_msg_headers(flow.stream)} OP_MSG headers")


def plaintext_bytes_by_stage(flows, windows):
    """{stage: bytes} sent between the nodes in each stage ((name, start, end) windows) on
    connections that are not TLS from their first byte."""
    plain = [f for key, f in flows.items() if inter_node(key) and f.segments and not is_tls(f)]
    return {name: sum(f.bytes_between(start, end) for f in plain)
            for name, start, end in windows}


def check_tls_capture(flows, failures, figures, label, opened_before_allowed):
    """For a capture started after preferTLS: every flow between nodes that opened during it
    carries TLS records from its first byte; a flow already open when it started may carry
    plaintext only if the capture also shows it closed (the drain), and only when
    `opened_before_allowed`. Returns the TLS bytes checked (no bytes after a hole)."""
    tls_bytes = 0
    tls_flows = 0
    plaintext_before = 0
    for key, flow in flows.items():
        if not inter_node(key) or not flow.stream:
            continue
        if flow.syn:
            if not is_tls(flow):
                failures.append(f"{label}: {not_tls(key, flow)}")
                continue
            tls_bytes += len(flow.stream)
            tls_flows += 1
            continue
        headers = op_msg_headers(flow.stream)
        if headers == 0:
            continue
        plaintext_before += headers
        reverse = flows.get((key[1], key[0]))
        if not opened_before_allowed:
            failures.append(f"{label}: {headers} plaintext OP_MSG on {describe_flow(key)}")
        elif not (flow.closed or (reverse is not None and reverse.closed)):
            failures.append(f"{label}: {describe_flow(key)} carried {headers} plaintext "
                            f"OP_MSG and was not closed by the drain")
    figures[f"{label}_tls_flows_opened"] = tls_flows
    figures[f"{label}_tls_bytes_checked"] = tls_bytes
    figures[f"{label}_plaintext_op_msg_on_drained_flows"] = plaintext_before
    return tls_bytes


def check_member_capture(flows, windows, failures, figures):
    """The checks on the capture of the whole walk between the nodes. `windows` are the
    stages as (name, start, end); the drain stage is the one named "drain"."""
    times = {name: (start, end) for name, start, end in windows}
    members = {key: f for key, f in flows.items() if inter_node(key) and f.segments}
    # allowTLS: the member traffic is plaintext, and the capture shows it: the check would
    # see plaintext. And the TLS record parser, which the checks below rely on, refuses it.
    found = sum(op_msg_headers(f.between(*times["allowTLS"])) for f in members.values())
    figures["allow_plaintext_op_msg_between_nodes"] = found
    if found == 0:
        failures.append("the capture in allowTLS shows no plaintext OP_MSG: the check would "
                        "not see plaintext")
    passed_as_tls = [describe_flow(key) for key, f in members.items()
                     if op_msg_headers(f.stream) and tls_records(f.stream)[1] is None]
    if passed_as_tls:
        failures.append(f"plaintext member traffic parses as TLS records: {passed_as_tls}")
    # From preferTLS on (every node is in preferTLS when the drain starts): each connection
    # between nodes opened from then is TLS from its first byte; the plaintext ones made
    # before carried OP_MSG and were closed by the drain (by either end).
    drain_start, drain_end = times["drain"]
    tls_bytes = tls_flows = drained_op_msg = 0
    for key, flow in members.items():
        if flow.syn and flow.syn_ts >= drain_start:
            if not is_tls(flow):
                failures.append(not_tls(key, flow))
                continue
            tls_bytes += len(flow.stream)
            tls_flows += 1
        elif not is_tls(flow) and flow.bytes_between(drain_start, float("inf")):
            drained_op_msg += op_msg_headers(flow.between(drain_start, float("inf")))
            reverse = flows.get((key[1], key[0]))
            closes = [f.close_ts for f in (flow, reverse) if f is not None and f.closed]
            if not closes or min(closes) >= drain_end:
                failures.append(f"{describe_flow(key)} carried plaintext after preferTLS and "
                                f"was not closed by the drain")
    figures.update(after_preferTLS_tls_flows_opened=tls_flows,
                   after_preferTLS_tls_bytes_checked=tls_bytes,
                   after_preferTLS_plaintext_op_msg_on_drained_flows=drained_op_msg)
    if drained_op_msg == 0:
        failures.append("the capture from preferTLS on shows no plaintext OP_MSG on the "
                        "member connections the drain closed: it did not cover preferTLS")
    if tls_bytes < 10000:
        failures.append(f"only {tls_bytes} TLS bytes captured between nodes after preferTLS")
    plaintext = plaintext_bytes_by_stage(flows, windows)
    after = [name for name, start, _ in windows if start >= drain_end]
    for name in after:
        if plaintext[name]:
            failures.append(f"{plaintext[name]} plaintext bytes between nodes in stage {name}, "
                            f"after the drain")
    return plaintext
