"""Plaintext first messages in requireTLS that frame as MongoDB but cannot be decoded
(issue 12 item 4): OP_COMPRESSED, larger than the sidecar inspects, nested deeper than the
BSON limit, or with a responseTo other than 0/-1. Each is answered with the readable
requireTLS error (SPEC §4) in the opcode the client can read, addressed to its requestID,
then closed and counted as plaintext_in_requireTLS; and the next client is served."""

import socket
import struct

import bson
import pymongo
import pytest

import harness

OP_COMPRESSED = 2012


def compressed(message, request_id):
    """`message` wrapped in OP_COMPRESSED with the noop compressor (id 0)."""
    original_opcode = struct.unpack("<i", message[12:16])[0]
    body = message[16:]
    payload = struct.pack("<iiB", original_opcode, len(body), 0) + body
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, OP_COMPRESSED) + payload


def with_response_to(message, response_to):
    return message[:8] + struct.pack("<i", response_to) + message[12:]


def deep_document(depth):
    document = {"leaf": 1}
    for _ in range(depth):
        document = {"d": document}
    return document


def deep_hello(depth, request_id):
    # bson.encode recurses in Python: build the nested bytes by hand instead.
    inner = bson.encode({"leaf": 1})
    for _ in range(depth):
        inner = struct.pack("<i", 4 + 1 + 2 + len(inner) + 1) + b"\x03d\x00" + inner + b"\x00"
    head = bson.encode({"hello": 1, "$db": "admin"})
    document = head[:-1] + b"\x03deep\x00" + inner + b"\x00"
    document = struct.pack("<i", len(document)) + document[4:]
    body = b"\x00" + document
    return struct.pack("<iiii", 16 + 4 + len(body), request_id, 0, harness.OP_MSG) + \
        struct.pack("<I", 0) + body


CASES = {
    "op_compressed_op_msg": (
        lambda: compressed(harness.op_msg({"hello": 1, "$db": "admin"}, request_id=31), 31),
        31, harness.OP_MSG),
    "op_compressed_op_query": (
        lambda: compressed(harness.op_query("admin.$cmd", {"isMaster": 1}, request_id=32), 32),
        32, harness.OP_REPLY),
    "larger_than_inspected": (
        lambda: harness.op_msg({"hello": 1, "$db": "admin",
                                "client": {"application": {"name": "x" * (200 * 1024)}}},
                               request_id=33),
        33, harness.OP_MSG),
    "deeper_than_bson_limit": (lambda: deep_hello(300, 34), 34, harness.OP_MSG),
    "response_to_not_zero": (
        lambda: with_response_to(harness.op_msg({"hello": 1, "$db": "admin"}, request_id=35), 77),
        35, harness.OP_MSG),
    "response_to_not_zero_op_query": (
        lambda: with_response_to(harness.op_query("admin.$cmd", {"isMaster": 1}, request_id=36),
                                 5),
        36, harness.OP_REPLY),
}


def read_reply_with_header(sock):
    header = harness.read_exact(sock, 16)
    length, _request_id, response_to, opcode = struct.unpack("<iiii", header)
    payload = harness.read_exact(sock, length - 16)
    if opcode == harness.OP_MSG:
        assert payload[4] == 0
        return opcode, response_to, bson.decode(payload[5:])
    assert opcode == harness.OP_REPLY, opcode
    return opcode, response_to, bson.decode(payload[20:])


@pytest.mark.parametrize("case", sorted(CASES))
def test_undecodable_plaintext_first_message_gets_the_require_tls_error(procs, pki, case):
    build, request_id, reply_opcode = CASES[case]
    standin = procs.standin()
    sidecar = procs.sidecar("--tlsMode", "requireTLS", "--tlsCertificateKeyFile", pki["server"],
                            "--tlsCAFile", pki["ca"], upstream=standin.address)
    message = build()
    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=10) as sock:
        sock.sendall(message)
        opcode, response_to, document = read_reply_with_header(sock)
    assert opcode == reply_opcode, case
    assert response_to == request_id, case
    assert document["ok"] == 0
    assert document["code"] == 141 and document["codeName"] == "SSLHandshakeFailed"
    assert "requires TLS" in document["errmsg"] and "tls=true" in document["errmsg"]
    sidecar.wait_for_log("plaintext_in_requireTLS")
    # The next client, over TLS as the mode asks, is served.
    with pymongo.MongoClient("127.0.0.1", sidecar.port, tls=True, tlsCAFile=str(pki["ca"]),
                             serverSelectionTimeoutMS=10000) as client:
        assert client.admin.command("ping")["ok"] == 1
    assert sidecar.alive()
