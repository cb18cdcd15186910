"""Real clients against the stand-in mongod alone (no sidecar): pymongo, the Node.js driver and
mongosh connect and do CRUD; many connections are served at once; --echo echoes with
half-close. These prove the stand-in before the end-to-end tests put it behind the sidecar."""

import hashlib
import os
import pathlib
import socket
import sys
import uuid

import pymongo
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "e2e"))

import harness  # noqa: E402
import streams  # noqa: E402


@pytest.fixture
def procs(tmp_path):
    group = harness.ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        print(group.describe())
        group.stop_all()


def test_pymongo_crud_and_cursors(procs):
    standin = procs.standin("--verbose")
    client = pymongo.MongoClient("127.0.0.1", standin.port, serverSelectionTimeoutMS=5000)
    try:
        coll = client.test.things
        inserted = coll.insert_one({"name": "ada", "n": 1})
        assert coll.find_one({"_id": inserted.inserted_id})["name"] == "ada"
        coll.insert_many([{"n": i} for i in range(2, 502)])
        # More than one batch: find + getMore until the cursor is exhausted.
        assert [d["n"] for d in coll.find({}, batch_size=50)] == list(range(1, 502))
        assert coll.count_documents({"n": {"$gte": 500}}) == 2
        assert coll.update_one({"name": "ada"}, {"$set": {"n": 100}}).modified_count == 1
        assert coll.find_one({"name": "ada"})["n"] == 100
        assert coll.delete_many({"n": {"$lt": 10}}).deleted_count == 8
        assert "things" in client.test.list_collection_names()
        client.test.drop_collection("things")
        assert client.test.things.find_one() is None
        with pytest.raises(pymongo.errors.OperationFailure) as failure:
            client.admin.command("noSuchCommand")
        assert failure.value.code == 59
    finally:
        client.close()


def test_node_driver_crud(procs):
    standin = procs.standin()
    marker = uuid.uuid4().hex
    result = harness.node_crud(f"mongodb://127.0.0.1:{standin.port}/", marker)
    assert result.returncode == 0, result.stdout + result.stderr
    direct = pymongo.MongoClient("127.0.0.1", standin.port)
    try:
        assert direct.e2e.node.find_one({"marker": marker}) is not None
    finally:
        direct.close()


def test_mongosh_crud(procs, tmp_path):
    standin = procs.standin("--verbose")
    marker = uuid.uuid4().hex
    result = harness.mongosh_crud(f"mongodb://127.0.0.1:{standin.port}/", marker, home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '{"found":true}' in result.stdout, result.stdout + result.stderr


def test_replica_set_hello_lets_drivers_discover_the_set(procs):
    standin = procs.standin("--replSet", "rs0")
    client = pymongo.MongoClient(f"mongodb://127.0.0.1:{standin.port}/?replicaSet=rs0",
                                 serverSelectionTimeoutMS=5000)
    try:
        client.test.rs.insert_one({"x": 1})
        assert client.test.rs.find_one({"x": 1}) is not None
    finally:
        client.close()


def test_serves_hundreds_of_concurrent_connections(procs):
    standin = procs.standin()
    sockets = [socket.create_connection(("127.0.0.1", standin.port), timeout=10)
               for _ in range(300)]
    try:
        for i, sock in enumerate(sockets):
            sock.sendall(harness.op_msg({"hello": 1, "$db": "admin"}, request_id=i + 1))
        for sock in sockets:
            _, reply = harness.read_reply(sock)
            assert reply["ok"] == 1
    finally:
        for sock in sockets:
            sock.close()


def test_legacy_op_query_hello_is_answered_with_op_reply(procs):
    standin = procs.standin()
    with socket.create_connection(("127.0.0.1", standin.port), timeout=10) as sock:
        sock.sendall(harness.op_query("admin.$cmd", {"isMaster": 1}))
        opcode, reply = harness.read_reply(sock)
    assert opcode == harness.OP_REPLY
    assert reply["ismaster"] is True


def test_echo_returns_every_byte_then_half_closes(procs):
    echo = procs.standin("--echo")
    data = os.urandom(8 << 20)
    with streams.Stream(echo.port) as stream:
        count, digest = stream.pump(data)
        assert stream.tcp_eof
    assert count == len(data)
    assert digest == hashlib.sha256(data).hexdigest()
