"""probe.py: new connections to one node, one after another, while its sidecar is hot
restarted; run inside the client namespace.

    probe.py HOST PORT STOP_FILE RESULT_FILE

Each connection sends a plaintext OP_MSG hello and reads the whole reply, as a client without
a pool would. It counts replies received whole, connections refused (the port closed: a hot
restart must never do that), replies cut short (some bytes, then the end) and connections
closed before any byte of the reply (one the old process accepted in its last instant and,
having had no request yet, closed as idle: a driver retries that). It stops once STOP_FILE
exists. RESULT_FILE has {"ok", "refused", "cut_short", "closed_before_reply", "finished"},
rewritten every 0.2 s and at the end.
"""

import json
import os
import pathlib
import socket
import struct
import sys
import time

import bson

HOST, PORT = sys.argv[1], int(sys.argv[2])
STOP = pathlib.Path(sys.argv[3])
RESULT = pathlib.Path(sys.argv[4])


def hello(request_id):
    body = bson.BSON.encode({"hello": 1, "$db": "admin"})
    payload = struct.pack("<I", 0) + b"\x00" + body
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, 2013) + payload


def once(request_id, counts):
    try:
        with socket.create_connection((HOST, PORT), timeout=10) as conn:
            conn.sendall(hello(request_id))
            data = b""
            try:
                while len(data) < 4 or len(data) < struct.unpack("<i", data[:4])[0]:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except ConnectionResetError:
                pass
    except ConnectionRefusedError:
        counts["refused"] += 1
        return
    except ConnectionResetError:  # reset before a reply byte, while sending
        data = b""
    if not data:
        counts["closed_before_reply"] += 1
    elif len(data) < 4 or len(data) < struct.unpack("<i", data[:4])[0]:
        counts["cut_short"] += 1
    else:
        counts["ok"] += 1


def write(counts, finished):
    temporary = RESULT.with_suffix(".tmp")
    temporary.write_text(json.dumps(dict(counts, finished=finished)))
    os.replace(temporary, RESULT)


def main():
    counts = {"ok": 0, "refused": 0, "cut_short": 0, "closed_before_reply": 0}
    request_id = 1
    written = 0.0
    while not STOP.exists():
        once(request_id, counts)
        request_id += 1
        if time.monotonic() - written > 0.2:
            write(counts, False)
            written = time.monotonic()
        time.sleep(0.01)
    write(counts, True)


main()
