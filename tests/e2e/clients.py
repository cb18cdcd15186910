"""clients: the three MongoDB clients of the end-to-end tests, behind one call.

crud(client, port, tls, ca, marker, workdir) inserts {marker} through 127.0.0.1:port and
finds it back, with pymongo (in this process), the Node.js driver or mongosh. It returns
Outcome(ok, text): ok when the document came back, text holding everything the client
said (its error messages on failure), so that a test can assert on what a user would read.
"""

import collections
import urllib.parse

import pymongo

import harness

CLIENTS = ("pymongo", "node", "mongosh")

# Long enough for a loaded two-core machine, short enough that the cases where the server is
# expected to refuse do not dominate the suite's run time (drivers retry until this expires).
SERVER_SELECTION_TIMEOUT_MS = 4000

Outcome = collections.namedtuple("Outcome", "ok text")


def uri(port, tls, ca):
    params = {"serverSelectionTimeoutMS": str(SERVER_SELECTION_TIMEOUT_MS),
              "connectTimeoutMS": "5000"}
    if tls:
        params["tls"] = "true"
        params["tlsCAFile"] = str(ca)
    return f"mongodb://127.0.0.1:{port}/?{urllib.parse.urlencode(params)}"


def _pymongo_crud(port, tls, ca, marker):
    options = dict(serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS, connectTimeoutMS=5000,
                   appname="e2e-pymongo")
    if tls:
        options.update(tls=True, tlsCAFile=str(ca))
    client = pymongo.MongoClient("127.0.0.1", port, **options)
    try:
        coll = client.e2e.pymongo
        coll.insert_one({"marker": marker})
        found = coll.find_one({"marker": marker})
        if found is None or found.get("marker") != marker:
            return Outcome(False, f"document {marker} not found after insert")
        return Outcome(True, repr(found))
    except pymongo.errors.PyMongoError as exc:
        details = getattr(exc, "details", None)
        return Outcome(False, f"{type(exc).__name__}: {exc} {details or ''}")
    finally:
        client.close()


def crud(client, port, tls, ca, marker, workdir):
    if client == "pymongo":
        return _pymongo_crud(port, tls, ca, marker)
    if client == "node":
        result = harness.node_crud(uri(port, tls, ca), marker)
        return Outcome(result.returncode == 0 and '"ok":true' in result.stdout,
                       result.stdout + result.stderr)
    if client == "mongosh":
        result = harness.mongosh_crud(uri(port, tls, ca), marker, home=workdir)
        return Outcome(result.returncode == 0 and '{"found":true}' in result.stdout,
                       result.stdout + result.stderr)
    raise ValueError(client)
