"""Decodes the sidecar's error replies with pymongo's BSON decoder (an implementation
independent of ours) and checks the fields a driver reads. Usage: pymongo_decode_test.py DUMP
where DUMP is the reply_dump binary."""
import struct
import subprocess
import sys

try:
    import bson
except ImportError as error:
    sys.exit(f"pymongo_decode_test: pymongo's bson is not importable by {sys.executable} "
             f"({error}): install python3-pymongo (tests/run.sh does)")

OP_REPLY, OP_MSG = 1, 2013


def document_of(message):
    length, request_id, response_to, op_code = struct.unpack("<iiii", message[:16])
    assert length == len(message), (length, len(message))
    if op_code == OP_REPLY:
        flags, cursor_id, starting_from, number_returned = struct.unpack("<iqii", message[16:36])
        assert number_returned == 1 and not flags & 2, (number_returned, flags)
        docs = bson.decode_all(message[36:])
        assert len(docs) == 1
        return op_code, response_to, docs[0]
    assert op_code == OP_MSG, op_code
    flag_bits, kind = struct.unpack("<IB", message[16:21])
    assert flag_bits == 0 and kind == 0
    docs = bson.decode_all(message[21:])
    assert len(docs) == 1
    return op_code, response_to, docs[0]


def main():
    output = subprocess.run([sys.argv[1]], check=True, capture_output=True, text=True).stdout
    replies = dict(line.split(" ", 1) for line in output.splitlines())
    checked = 0
    for name, hex_bytes in replies.items():
        op_code, response_to, doc = document_of(bytes.fromhex(hex_bytes.strip()))
        assert op_code == (OP_MSG if name.endswith("op_msg") else OP_REPLY), name
        assert response_to == (1234 if op_code == OP_MSG else 5678), (name, response_to)
        assert list(doc.keys()) == ["ok", "errmsg", "code", "codeName"], doc
        assert doc["ok"] == 0.0 and isinstance(doc["ok"], float), doc
        if name.startswith("tls_required"):
            assert "requires TLS" in doc["errmsg"] and "tls=true" in doc["errmsg"], doc
            assert (doc["code"], doc["codeName"]) == (141, "SSLHandshakeFailed"), doc
        else:
            assert "upstream" in doc["errmsg"] and "connection refused" in doc["errmsg"], doc
            assert (doc["code"], doc["codeName"]) == (6, "HostUnreachable"), doc
        checked += 1
    assert checked == 4, checked
    print(f"{checked} passed, 0 failed")


if __name__ == "__main__":
    main()
