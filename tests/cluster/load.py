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

Drivers retry a failed read or write once on their own (retryReads/retryWrites, on here:
the walk's faults close connections under them, as real faults do). Retries and failures are
counted apart: a command listener and a pool listener record, per operation (on its own
thread), every attempt that failed (a command that failed, or a connection that could not be
checked out); an operation that then succeeded counts one retry. An exception that reaches
the client is a failed operation, recorded with its text. A document that was inserted and
then not found is counted as `missing`, with its client and stage (the walk decides whether
a fault explains it). A client thread that ends in any other way than by the "stop" phase
(an exception outside the operation's own try, for instance while connecting) is recorded as
died.

CONTROL_DIR/progress.json is rewritten every 0.2 s, and CONTROL_DIR/result.json at the end:
{"clients": {NAME: {"stages": {STAGE: {"insert": N, "find": N, "failures": N,
"retries": N, "missing": N}}, "failures": N, "finished": bool, "died": str|null}},
"failures", "retries", "missing", "errors", "switched"}.
"""

import json
import os
import pathlib
import sys
import threading
import time
import traceback

import pymongo
from pymongo import monitoring

CONTROL = pathlib.Path(sys.argv[1])
CA = sys.argv[2]
# The client certificate `tls-sidecar certs init` wrote beside the CA: with a CAFile, the
# sidecar (as mongod) may require one from TLS clients.
CLIENT_CERTIFICATE = str(pathlib.Path(CA).parent / "client.pem")
HOSTS = sys.argv[3:]

lock = threading.Lock()
totals = {"clients": {}, "failures": 0, "retries": 0, "missing": 0, "errors": [],
          "switched": 0}
KINDS = ("insert", "find", "failures", "retries", "missing")
# The operation running on this thread: its failed attempts (Attempts below).
current = threading.local()


class Attempts(monitoring.CommandListener, monitoring.ConnectionPoolListener):
    """Counts the failed attempts of the operation running on the calling thread: pymongo
    calls these listeners on the thread that runs the command or checks out the connection
    (its monitor's heartbeats use neither)."""

    def failed_attempt(self, what):
        if getattr(current, "failed", None) is not None:
            current.failed.append(what)

    def started(self, event):
        pass

    def succeeded(self, event):
        pass

    def failed(self, event):
        self.failed_attempt(f"{event.command_name}: {event.failure}")

    def connection_check_out_failed(self, event):
        if event.reason == monitoring.ConnectionCheckOutFailedReason.CONN_ERROR:
            self.failed_attempt("connection check-out failed")

    def pool_created(self, event):
        pass

    def pool_cleared(self, event):
        pass

    def pool_closed(self, event):
        pass

    def connection_created(self, event):
        pass

    def connection_ready(self, event):
        pass

    def connection_closed(self, event):
        pass

    def connection_check_out_started(self, event):
        pass

    def connection_checked_out(self, event):
        pass

    def connection_checked_in(self, event):
        pass


ATTEMPTS = Attempts()


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
                   connectTimeoutMS=10000, socketTimeoutMS=15000, retryReads=True,
                   retryWrites=True, event_listeners=[ATTEMPTS])
    if tls:
        options.update(tls=True, tlsCAFile=CA, tlsCertificateKeyFile=CLIENT_CERTIFICATE)
    return pymongo.MongoClient(host, 27017, **options)


def record(name, current_stage, kind):
    with lock:
        stages = totals["clients"][name]["stages"]
        stages.setdefault(current_stage, dict.fromkeys(KINDS, 0))[kind] += 1
        if kind in ("failures", "retries", "missing"):
            totals[kind] += 1
            if kind == "failures":
                totals["clients"][name]["failures"] += 1


def note(name, current_stage, tls, what):
    with lock:
        totals["errors"].append(f"{time.strftime('%H:%M:%S')} {name} [{current_stage}] "
                                f"({'tls' if tls else 'plaintext'}): {what}"[:400])


def attempt(name, current_stage, tls, operation):
    """Runs one operation; a success after failed attempts counts one retry. Raises what
    reaches the client."""
    current.failed = []
    try:
        result = operation()
    finally:
        failed, current.failed = current.failed, None
    if failed:
        record(name, current_stage, "retries")
        note(name, current_stage, tls, f"retried after: {failed[0]}")
    return result


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
                attempt(name, current_stage, tls,
                        lambda: collection.insert_one({"seq": seq, "tls": tls}))
                record(name, current_stage, "insert")
                found = attempt(name, current_stage, tls,
                                lambda: collection.find_one({"seq": seq}))
                if found is None:
                    record(name, current_stage, "missing")
                    note(name, current_stage, tls, f"missing: seq {seq} not found")
                elif found["tls"] != tls:
                    raise RuntimeError(f"read back {found!r} for seq {seq}")
                else:
                    record(name, current_stage, "find")
            except Exception as error:  # every failure is counted and reported, never hidden
                record(name, current_stage, "failures")
                note(name, current_stage, tls, f"failed: {error!r}")
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
