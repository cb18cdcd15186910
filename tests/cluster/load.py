"""load.py: continuous client load against the three nodes, run inside the client namespace.

    load.py CONTROL_DIR CA_FILE HOST1 HOST2 HOST3

Per node it runs one "moving" client (plaintext until told to switch, then TLS, as the
seeds' step 2 asks) and, once TLS is allowed everywhere, one TLS client. Each client inserts
a document and reads it back in a loop. What it is told comes from CONTROL_DIR/phase:
"plaintext" (only the moving clients, in plaintext), "mixed" (TLS clients start too),
"tls" (the moving clients close and reconnect with tls=true), "stop". A raised exception is
a failed operation (pymongo's own single retry of a read or write is not); each is recorded.
At stop it writes CONTROL_DIR/result.json: {"operations", "failures", "errors"}.
"""

import json
import pathlib
import sys
import threading
import time

import pymongo

CONTROL = pathlib.Path(sys.argv[1])
CA = sys.argv[2]
HOSTS = sys.argv[3:]

lock = threading.Lock()
totals = {"operations": 0, "failures": 0, "errors": [], "switched": 0}


def phase():
    try:
        return (CONTROL / "phase").read_text().strip()
    except FileNotFoundError:
        return "plaintext"


def connect(host, tls, name):
    options = dict(directConnection=True, appname=name, serverSelectionTimeoutMS=15000,
                   connectTimeoutMS=10000, socketTimeoutMS=15000)
    if tls:
        options.update(tls=True, tlsCAFile=CA)
    return pymongo.MongoClient(host, 27017, **options)


def work(host, name, moving):
    tls = not moving
    if not moving:
        while phase() == "plaintext":
            time.sleep(0.05)
    client = connect(host, tls, name)
    seq = 0
    while True:
        current = phase()
        if current == "stop":
            break
        if moving and not tls and current == "tls":
            # The seeds' step 2: the client is reconfigured for TLS and reconnects.
            client.close()
            tls = True
            client = connect(host, True, name + "-tls")
            with lock:
                totals["switched"] += 1
        seq += 1
        try:
            collection = client.load[name]
            collection.insert_one({"seq": seq, "tls": tls})
            found = collection.find_one({"seq": seq})
            if found is None or found["tls"] != tls:
                raise RuntimeError(f"read back {found!r} for seq {seq}")
            with lock:
                totals["operations"] += 2
        except Exception as error:  # every failure is counted and reported, never hidden
            with lock:
                totals["failures"] += 1
                totals["errors"].append(f"{time.strftime('%H:%M:%S')} {name} "
                                        f"({'tls' if tls else 'plaintext'}): {error!r}"[:400])
        time.sleep(0.02)
    client.close()


threads = []
for index, host in enumerate(HOSTS, start=1):
    threads.append(threading.Thread(target=work, args=(host, f"node{index}-moving", True)))
    threads.append(threading.Thread(target=work, args=(host, f"node{index}-tls", False)))
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
(CONTROL / "result.json").write_text(json.dumps(totals))
