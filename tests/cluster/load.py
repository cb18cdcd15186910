"""load.py: continuous client load against the three nodes, run inside the client namespace.

    load.py CONTROL_DIR CA_FILE HOST1 HOST2 HOST3

Per node it runs one "moving" client (plaintext until told to switch, then TLS, as step 2 of
the procedure asks) and, once TLS is allowed everywhere, one TLS client; during the forced
rollback of node 1 a plaintext client also works against node 1. Each client inserts a
document and reads it back in a loop.

What the clients do comes from CONTROL_DIR/phase: "plaintext" (only the moving clients, in
plaintext), "mixed" (TLS clients start too), "tls" (the moving clients close and reconnect
with tls=true), "rollback" (the rollback client starts; back to "tls" it closes), "stop".
Which stage of the walk an operation belongs to comes from CONTROL_DIR/stage, written by the
walk; operations are counted per client, per stage and per kind (insert, find).

Drivers retry a failed read or write once on their own (retryReads/retryWrites); both are
off here, so a failure the sidecar caused is a failure, never hidden by a retry. Every
raised exception is a failed operation, recorded with its text. A client thread that ends
in any other way than by the "stop" phase (an exception outside the operation's own try,
for instance while connecting) is recorded as died.

CONTROL_DIR/progress.json is rewritten every 0.2 s, and CONTROL_DIR/result.json at the end:
{"clients": {NAME: {"stages": {STAGE: {"insert": N, "find": N}}, "failures": N,
"finished": bool, "died": str|null}}, "failures", "errors", "switched"}.
"""

import json
import os
import pathlib
import sys
import threading
import time
import traceback

import pymongo

CONTROL = pathlib.Path(sys.argv[1])
CA = sys.argv[2]
# The client certificate `tls-sidecar certs init` wrote beside the CA: with a CAFile, the
# sidecar (as mongod) may require one from TLS clients.
CLIENT_CERTIFICATE = str(pathlib.Path(CA).parent / "client.pem")
HOSTS = sys.argv[3:]

lock = threading.Lock()
totals = {"clients": {}, "failures": 0, "errors": [], "switched": 0}


def read(name, default):
    try:
        return (CONTROL / name).read_text().strip() or default
    except FileNotFoundError:
        return default


def phase():
    return read("phase", "plaintext")


def stage():
    return read("stage", "start")


def connect(host, tls, name):
    options = dict(directConnection=True, appname=name, serverSelectionTimeoutMS=15000,
                   connectTimeoutMS=10000, socketTimeoutMS=15000, retryReads=False,
                   retryWrites=False)
    if tls:
        options.update(tls=True, tlsCAFile=CA, tlsCertificateKeyFile=CLIENT_CERTIFICATE)
    return pymongo.MongoClient(host, 27017, **options)


def record(name, current_stage, kind):
    with lock:
        stages = totals["clients"][name]["stages"]
        stages.setdefault(current_stage, {"insert": 0, "find": 0})[kind] += 1


def fail(name, tls, error):
    with lock:
        totals["failures"] += 1
        totals["clients"][name]["failures"] += 1
        totals["errors"].append(f"{time.strftime('%H:%M:%S')} {name} [{stage()}] "
                                f"({'tls' if tls else 'plaintext'}): {error!r}"[:400])


def work(host, name, kind):
    """kind: "moving", "tls" or "rollback"."""
    tls = kind == "tls"
    if kind == "tls":
        while phase() == "plaintext":
            time.sleep(0.05)
    if kind == "rollback":
        while phase() not in ("rollback", "stop"):
            time.sleep(0.05)
    client = connect(host, tls, name)
    seq = 0
    try:
        while True:
            current = phase()
            if current == "stop" or (kind == "rollback" and current != "rollback"):
                break
            if kind == "moving" and not tls and current in ("tls", "rollback"):
                # Step 2 of the procedure: the client is reconfigured for TLS and reconnects.
                client.close()
                tls = True
                client = connect(host, True, name)
                with lock:
                    totals["switched"] += 1
            seq += 1
            current_stage = stage()
            collection = client.load[name]
            try:
                collection.insert_one({"seq": seq, "tls": tls})
                record(name, current_stage, "insert")
                found = collection.find_one({"seq": seq})
                if found is None or found["tls"] != tls:
                    raise RuntimeError(f"read back {found!r} for seq {seq}")
                record(name, current_stage, "find")
            except Exception as error:  # every failure is counted and reported, never hidden
                fail(name, tls, error)
            time.sleep(0.02)
    finally:
        client.close()
    with lock:
        totals["clients"][name]["finished"] = True


def guarded(host, name, kind):
    try:
        work(host, name, kind)
    except BaseException:  # a thread that dies says why, and the walk fails on it
        with lock:
            totals["clients"][name]["died"] = traceback.format_exc()[-1500:]


def write(path):
    with lock:
        text = json.dumps(totals)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


threads = []
for index, host in enumerate(HOSTS, start=1):
    kinds = ["moving", "tls"] + (["rollback"] if index == 1 else [])
    for kind in kinds:
        name = f"node{index}-{kind}"
        totals["clients"][name] = {"stages": {}, "failures": 0, "finished": False, "died": None}
        threads.append(threading.Thread(target=guarded, args=(host, name, kind), daemon=True))
for thread in threads:
    thread.start()
while any(thread.is_alive() for thread in threads):
    write(CONTROL / "progress.json")
    time.sleep(0.2)
write(CONTROL / "result.json")
