#!/usr/bin/env python3
"""The side-by-side comparison of bench/run.sh: starts the echo backend and every proxy,
runs each workload of BENCH.md against each of them, interleaved, reads each proxy's CPU
time and memory from /proc, and writes a Markdown report, a JSON file of every run and a
plot. bench/run.sh builds and installs what this needs, then calls it.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- /proc accounting

def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    return data[data.rindex(")") + 2:].split()


def process_tree(root):
    """Pids of `root` and all its descendants (nginx workers, forked children)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(entry)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids):
    """utime+stime of each pid (all its threads, live and exited), in seconds."""
    out = {}
    for pid in pids:
        try:
            fields = _stat_fields(pid)
            out[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, ValueError, IndexError):
            pass
    return out


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def wait_port(port, timeout, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# ---------------------------------------------------------------- servers (proxies)

class Server:
    """One proxy (or backend) process tree the bench starts, measures and stops."""

    def __init__(self, name, port, argv, files=None, wait=10):
        self.name = name
        self.port = port
        self.argv = argv
        self.files = files or {}
        self.wait = wait
        self.proc = None
        self.log = None
        self.error = None

    def start(self, workdir):
        for path, text in self.files.items():
            with open(path, "w") as f:
                f.write(text)
        self.log = open(os.path.join(workdir, f"{self.name}.log"), "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        if not wait_port(self.port, self.wait, self.proc):
            code = self.proc.poll()
            self.stop()
            tail = ""
            try:
                with open(os.path.join(workdir, f"{self.name}.log"), errors="replace") as f:
                    tail = f.read()[-400:].strip().replace("\n", " | ")
            except OSError:
                pass
            self.error = (f"did not listen on port {self.port} within {self.wait}s"
                          f" (exit status {code}): {tail}")
            return False
        self.error = None
        return True

    def pids(self):
        return process_tree(self.proc.pid) if self.proc else []

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None

    def restart(self, workdir):
        self.stop()
        deadline = time.time() + 5
        while not port_free(self.port) and time.time() < deadline:
            time.sleep(0.05)
        return self.start(workdir)


def haproxy_server(name, port, echo, cert, workdir, threads, tls):
    cfg = os.path.join(workdir, f"{name}.cfg")
    bind = f"bind 127.0.0.1:{port}" + (f" ssl crt {cert} ssl-min-ver TLSv1.3" if tls else "")
    text = "\n".join([
        "global",
        "  maxconn 8000",
        f"  nbthread {threads}" if threads else "",
        "defaults",
        "  mode tcp",
        "  timeout connect 5s",
        "  timeout client 10m",
        "  timeout server 10m",
        "frontend fe",
        f"  {bind}",
        "  default_backend be",
        "backend be",
        f"  server echo 127.0.0.1:{echo}",
        ""])
    return Server(name, port, ["haproxy", "-db", "-f", cfg], {cfg: text})


def nginx_server(name, port, echo, cert, workdir, workers):
    prefix = os.path.join(workdir, name)
    os.makedirs(prefix, exist_ok=True)
    cfg = os.path.join(prefix, "nginx.conf")
    text = f"""load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile 19000;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 12000; }}
stream {{
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {cert};
    ssl_protocols TLSv1.3;
    ssl_session_tickets on;
    proxy_pass 127.0.0.1:{echo};
  }}
}}
"""
    return Server(name, port, ["nginx", "-p", prefix, "-e", f"{prefix}/error.log", "-c", cfg],
                  {cfg: text})


def hitch_server(name, port, echo, cert, workdir):
    cfg = os.path.join(workdir, f"{name}.conf")
    text = f"""frontend = "[127.0.0.1]:{port}"
backend = "[127.0.0.1]:{echo}"
pem-file = "{cert}"
tls-protos = TLSv1.3
daemon = off
backlog = 4096
"""
    argv = ["hitch", f"--config={cfg}"]
    if os.geteuid() == 0:
        argv.append("--user=nobody")  # hitch will not keep root privileges.
    return Server(name, port, argv, {cfg: text})


def stunnel_server(name, port, echo, cert, workdir):
    cfg = os.path.join(workdir, f"{name}.conf")
    text = f"""foreground = yes
pid =
debug = 3
output = {workdir}/{name}.out
[echo]
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{echo}
cert = {cert}
sslVersionMin = TLSv1.3
"""
    binary = "stunnel4" if shutil.which("stunnel4") else "stunnel"
    return Server(name, port, [binary, cfg], {cfg: text})


def sidecar_server(name, port, echo, certs, workdir, binary):
    argv = [binary, "--port", str(port), "--bind_ip", "127.0.0.1", "--upstream",
            f"127.0.0.1:{echo}", "--tlsMode", "allowTLS", "--tlsCertificateKeyFile",
            certs["server"], "--tlsCAFile", certs["ca"], "--metrics", "",
            # The load generator presents no client certificate, as against the peers.
            "--tlsAllowConnectionsWithoutCertificates",
            "--control-socket", os.path.join(workdir, f"{name}.sock")]
    return Server(name, port, argv)


# ---------------------------------------------------------------- rows and workloads

SHORT_NAMES = {
    "noproxy": "no proxy", "backend-tls": "backend TLS", "haproxy-tcp": "HAProxy TCP",
    "haproxy-1t": "HAProxy 1t", "haproxy": "HAProxy", "nginx-1w": "nginx 1w",
    "nginx": "nginx", "hitch": "hitch", "stunnel": "stunnel", "sidecar-tls": "sidecar TLS",
    "sidecar-plain": "sidecar plain",
}


class Row:
    def __init__(self, key, title, server, tls, kind):
        self.key = key
        self.title = title
        self.server = server  # None: the loadgen talks to the echo backend directly.
        self.tls = tls
        self.kind = kind  # "limit", "peer", "ours"
        self.skip = None


def workloads(args):
    w = [
        ("rr1", ["--workload", "rr", "--conns", "1", "--size", "1024"], "both"),
        ("rr64", ["--workload", "rr", "--conns", "64", "--size", "1024"], "both"),
        ("bulk", ["--workload", "bulk", "--conns", "4", "--chunk", "65536"], "both"),
        ("hs", ["--workload", "hs", "--workers", "16", "--size", "1024"], "tls"),
        ("hsr", ["--workload", "hs", "--workers", "16", "--size", "1024", "--resume"], "tls"),
        ("idle", ["--workload", "idle", "--conns", str(args.idle_conns), "--size", "1024"],
         "proxied"),
    ]
    if args.workloads:
        keep = set(args.workloads.split(","))
        w = [x for x in w if x[0] in keep]
    return w


def applies(row, scope):
    if scope == "tls":
        return row.tls
    if scope == "proxied":
        return row.server is not None
    return True


def run_loadgen(args, row, port, wl_args, certs, workdir):
    """Runs one measurement; returns a dict of figures (with 'error' on failure)."""
    cmd = [args.loadgen, "--port", str(port), "--duration", str(args.duration),
           "--warmup", str(args.warmup), "--label", row.key, "--markers"] + wl_args
    if row.tls:
        cmd += ["--tls", "--ca", certs["ca"]]
    idle = "idle" in wl_args
    ready = os.path.join(workdir, "idle.ready")
    if idle:
        if os.path.exists(ready):
            os.unlink(ready)
        cmd += ["--ready-file", ready, "--hold", "120"]
    pids = row.server.pids() if row.server else []
    result = {}
    rss_before = rss_kib(pids) if idle else 0
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cpu0 = t0 = None
    cpu1 = t1 = None
    stderr_lines = []
    deadline = time.time() + args.duration + args.warmup + 90
    if idle:
        while time.time() < deadline and proc.poll() is None and not os.path.exists(ready):
            time.sleep(0.05)
        time.sleep(0.3)  # Let the last replies settle in the proxy.
        pids = row.server.pids()
        result["rss_idle_kib"] = rss_kib(pids)
        result["rss_before_kib"] = rss_before
        if proc.poll() is None:
            proc.send_signal(signal.SIGUSR1)
    else:
        for line in proc.stderr:
            line = line.strip()
            if line == "MEASURE_START":
                t0, cpu0 = time.monotonic(), cpu_seconds(pids)
            elif line == "MEASURE_END":
                t1, cpu1 = time.monotonic(), cpu_seconds(pids)
            elif line:
                stderr_lines.append(line)
    try:
        out, err = proc.communicate(timeout=max(5, deadline - time.time()))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        result["error"] = "loadgen timed out"
    stderr_lines += [x for x in (err or "").splitlines() if x and not x.startswith("MEASURE_")]
    lines = [x for x in out.splitlines() if x.startswith("{")]
    if not lines:
        result["error"] = result.get("error") or ("loadgen: " + " | ".join(stderr_lines)[-300:])
        return result
    result.update(json.loads(lines[-1]))
    if cpu0 is not None and cpu1 is not None and pids:
        used = sum(cpu1.get(p, 0) - cpu0.get(p, 0) for p in cpu1)
        result["proxy_cpu_s"] = used
        result["wall_s"] = t1 - t0
        result["proxy_cores"] = used / (t1 - t0) if t1 > t0 else 0
    if idle and result.get("established", 0) > 0:
        result["kib_per_conn"] = (result["rss_idle_kib"] - result["rss_before_kib"]) / result[
            "established"]
    if idle and result.get("established", 0) < args.idle_conns:
        result["error"] = (f"only {result.get('established', 0)} of {args.idle_conns} idle "
                           f"connections: {result.get('last_error', '')}")
    return result


# ---------------------------------------------------------------- figures

def per_core(result, key):
    cores = result.get("proxy_cores")
    if not cores or cores <= 0.01 or key not in result:
        return None
    return result[key] / cores


# Each column: (header, workload, function of one run's result -> number or None).
COLUMNS = [
    ("rr c1 req/s", "rr1", lambda r: r.get("req_per_s")),
    ("rr c1 p50 µs", "rr1", lambda r: r.get("p50_us")),
    ("rr c1 p99 µs", "rr1", lambda r: r.get("p99_us")),
    ("rr c64 req/s", "rr64", lambda r: r.get("req_per_s")),
    ("rr c64 p99 µs", "rr64", lambda r: r.get("p99_us")),
    ("rr c64 proxy cores", "rr64", lambda r: r.get("proxy_cores")),
    ("rr c64 req/s per proxy core", "rr64", lambda r: per_core(r, "req_per_s")),
    ("bulk MB/s", "bulk", lambda r: r.get("mb_per_s")),
    ("bulk MB/s per proxy core", "bulk", lambda r: per_core(r, "mb_per_s")),
    ("hs conn/s", "hs", lambda r: r.get("conn_per_s")),
    ("hs conn/s per proxy core", "hs", lambda r: per_core(r, "conn_per_s")),
    ("hs p50 µs", "hs", lambda r: r.get("p50_us")),
    ("hs p99 µs", "hs", lambda r: r.get("p99_us")),
    ("resumed conn/s per proxy core", "hsr", lambda r: per_core(r, "conn_per_s")),
    ("resumed share", "hsr",
     lambda r: r["resumed"] / r["handshakes"] if r.get("handshakes") else None),
    ("KiB per idle conn", "idle", lambda r: r.get("kib_per_conn")),
]


def medians(results, row, workload_keys):
    """{column header: median over runs, or None when measured and failed; absent when
    the column does not apply to the row}."""
    out = {}
    for header, wl, fn in COLUMNS:
        if wl not in workload_keys.get(row.key, ()):
            continue
        if row.server is None and "proxy core" in header:
            continue
        values = []
        for r in results.get((row.key, wl), []):
            if "error" in r:
                continue
            v = fn(r)
            if v is not None:
                values.append(v)
        out[header] = statistics.median(values) if values else None
    return out


def fmt(v, header=""):
    if v is None:
        return "n/a"
    if "share" in header:
        return f"{v:.0%}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


# Targets of BENCH.md: (figure, column, higher is better, factor, note).
TARGETS = [
    ("rr c64 TLS req/s per proxy core", "rr c64 req/s per proxy core", True, 1.3),
    ("rr c1 TLS p50 latency", "rr c1 p50 µs", False, 1.0),
    ("rr c1 TLS p99 latency", "rr c1 p99 µs", False, 1.0),
    ("bulk TLS MB/s per proxy core", "bulk MB/s per proxy core", True, 1.2),
    ("full TLS handshakes per proxy core", "hs conn/s per proxy core", True, 1.3),
    ("resumed handshakes per proxy core", "resumed conn/s per proxy core", True, 1.0),
    ("KiB per idle TLS connection (vs best peer)", "KiB per idle conn", False, 1.0),
]


def write_report(args, rows, results, workload_keys, path_md, path_json, plot_name, notes,
                 versions):
    table = {row.key: medians(results, row, workload_keys) for row in rows if not row.skip}
    lines = []
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines.append(f"# tls-sidecar bench, {now}")
    lines.append("")
    lines.append(f"Machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()},"
                 f" Linux {platform.release()}), shared by proxy, load generator and echo "
                 f"backend; nothing pinned. Runs: {args.runs} per cell, interleaved, "
                 f"{args.duration} s measured after {args.warmup} s warm-up; idle: "
                 f"{args.idle_conns} connections. Medians of the runs."
                 + f" Load average when the report was written: {os.getloadavg()[0]:.1f}"
                 " (above ~2 means other work shared the cores and the figures are noisy)."
                 + (" **Quick smoke run: the figures mean nothing.**" if args.quick else ""))
    lines.append("")
    if versions:
        lines.append("Peers: " + "; ".join(f"{k} {v}" for k, v in versions.items()) + ".")
        lines.append("")
    for note in notes:
        lines.append(f"- {note}")
    if notes:
        lines.append("")
    headers = [h for h, _, _ in COLUMNS]
    lines.append("| proxy | " + " | ".join(headers) + " |")
    lines.append("|---|" + "---:|" * len(headers))
    for row in rows:
        if row.skip:
            continue
        cells = []
        for h in headers:
            if h not in table[row.key]:
                cells.append("–")
            else:
                cells.append(fmt(table[row.key][h], h))
        lines.append(f"| {row.title} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("“–”: not applicable to that row; “n/a”: measured but failed (see notes). "
                 "Per-proxy-core = figure / (CPU seconds of the proxy's processes / wall "
                 "seconds) over the measured window.")
    lines.append("")

    # Targets.
    lines.append("## tls-sidecar against the best peer (BENCH.md targets)")
    lines.append("")
    ours = [r for r in rows if r.kind == "ours" and r.tls and not r.skip]
    ours_plain = [r for r in rows if r.kind == "ours" and not r.tls and not r.skip]
    peers = [r for r in rows if r.kind == "peer" and not r.skip]
    if not ours:
        skipped = [r for r in rows if r.kind == "ours" and r.skip]
        why = skipped[0].skip if skipped else "not configured"
        lines.append(f"tls-sidecar was not measured: {why}. No ratios.")
    else:
        lines.append("| figure | tls-sidecar | best peer | ratio | target | met |")
        lines.append("|---|---:|---|---:|---|---|")
        o = table[ours[0].key]
        for figure, col, higher, factor in TARGETS:
            cands = [(table[p.key].get(col), p.title) for p in peers
                     if table[p.key].get(col) is not None]
            if not cands or o.get(col) is None:
                lines.append(f"| {figure} | {fmt(o.get(col))} | n/a | n/a | – | – |")
                continue
            best = max(cands) if higher else min(cands)
            ratio = o[col] / best[0] if best[0] else None
            if higher:
                target = f"≥ {factor}×"
                met = ratio is not None and ratio >= factor
            else:
                target = "≤ best peer"
                met = ratio is not None and ratio <= factor
            lines.append(f"| {figure} | {fmt(o[col])} | {fmt(best[0])} ({best[1]}) | "
                         f"{ratio:.2f}× | {target} | {'yes' if met else '**no**'} |")
        kib = o.get("KiB per idle conn")
        hap = [table[p.key].get("KiB per idle conn") for p in peers if p.key.startswith("haproxy")]
        hap = [x for x in hap if x is not None]
        if kib is not None:
            hap_txt = f"{min(hap):.1f} (HAProxy)" if hap else "n/a"
            ok = kib <= 8 and (not hap or kib <= 0.5 * min(hap))
            ratio_txt = f"{kib / min(hap):.2f}×" if hap and min(hap) > 0 else "n/a"
            lines.append(f"| KiB per idle TLS connection | {kib:.1f} | {hap_txt} | {ratio_txt} "
                         f"| ≤ 8 and ≤ 0.5× HAProxy | {'yes' if ok else '**no**'} |")
        tcp = next((r for r in rows if r.key == "haproxy-tcp" and not r.skip), None)
        if ours_plain and tcp:
            for col in ("rr c64 req/s", "rr c64 req/s per proxy core"):
                a, b = table[ours_plain[0].key].get(col), table[tcp.key].get(col)
                if a is not None and b:
                    lines.append(f"| plaintext passthrough {col} | {fmt(a)} | {fmt(b)} (HAProxy "
                                 f"TCP mode) | {a / b:.2f}× | ≥ 1.0× | "
                                 f"{'yes' if a / b >= 1.0 else '**no**'} |")
        lines.append("| memory under a peer that never reads | – | – | – | bounded by buffer caps"
                     " | not measured by this harness |")
    lines.append("")
    if plot_name:
        lines.append(f"![throughput and latency per proxy]({plot_name})")
        lines.append("")
    lines.append("Raw figures of every run: " + os.path.basename(path_json) + ".")
    lines.append("")
    with open(path_md, "w") as f:
        f.write("\n".join(lines))
    raw = [{"row": k[0], "workload": k[1], "runs": v} for k, v in sorted(results.items())]
    with open(path_json, "w") as f:
        json.dump({"date": now, "medians": table, "runs": raw}, f, indent=1)
    return table


def write_plot(rows, table, out_dir, stem):
    if not shutil.which("gnuplot"):
        return None, "plot skipped: gnuplot is not installed"
    data = os.path.join(out_dir, f"{stem}.dat")
    cols = ["rr c64 req/s per proxy core", "bulk MB/s per proxy core",
            "hs conn/s per proxy core", "rr c1 p50 µs", "rr c1 p99 µs", "rr c64 req/s",
            "resumed conn/s per proxy core", "KiB per idle conn"]
    with open(data, "w") as f:
        f.write("# proxy " + " ".join(f'"{c}"' for c in cols) + "\n")
        for row in rows:
            if row.skip:
                continue
            vals = [table[row.key].get(c) for c in cols]
            f.write(f'"{SHORT_NAMES.get(row.key, row.key)}" ' + " ".join("NaN" if v is None else f"{v:.3f}"
                                                  for v in vals) + "\n")
    svg = f"{stem}.svg"
    script = f"""set terminal svg size 1200,1400 dynamic font "sans,10"
set output "{os.path.join(out_dir, svg)}"
set datafile missing "NaN"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics rotate by -30 left
set grid ytics
set key off
set multiplot layout 4,2 title "tls-sidecar and peers, medians (per proxy core = figure / proxy CPU cores used)"
set yrange [0:*]
set title "rr c64 TLS or plaintext: req/s"
plot "{data}" using 7:xtic(1) lc rgb "#4472c4"
set title "rr c64: req/s per proxy core"
plot "{data}" using 2:xtic(1) lc rgb "#4472c4"
set title "bulk: MB/s per proxy core"
plot "{data}" using 3:xtic(1) lc rgb "#ed7d31"
set title "full TLS handshakes/s per proxy core"
plot "{data}" using 4:xtic(1) lc rgb "#7f7f7f"
set title "resumed TLS handshakes/s per proxy core"
plot "{data}" using 8:xtic(1) lc rgb "#a5a5a5"
set title "KiB of proxy RSS per idle connection"
plot "{data}" using 9:xtic(1) lc rgb "#5b9bd5"
set title "rr c1 latency, µs (log scale)"
set logscale y
set yrange [*:*]
set key top left
plot "{data}" using 5:xtic(1) title "p50" lc rgb "#70ad47", "" using 6 title "p99" lc rgb "#c00000"
unset multiplot
"""
    gp = os.path.join(out_dir, f"{stem}.gp")
    with open(gp, "w") as f:
        f.write(script)
    res = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
    if res.returncode != 0:
        return None, "plot failed: " + res.stderr.strip()[-300:]
    return svg, None


# ---------------------------------------------------------------- main

def tool_versions(have):
    out = {}
    probes = {
        "haproxy": ["haproxy", "-v"],
        "nginx": ["nginx", "-v"],
        "hitch": ["hitch", "--version"],
        "stunnel": ["stunnel4" if shutil.which("stunnel4") else "stunnel", "-version"],
    }
    for name, argv in probes.items():
        if name not in have:
            continue
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=5,
                                 stdin=subprocess.DEVNULL)
            match = re.search(r"\d+\.\d+(\.\d+)?", res.stdout + res.stderr)
            if match:
                out[name] = match.group(0)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return out


def make_certs(workdir, sidecar):
    d = os.path.join(workdir, "certs")
    os.makedirs(d, exist_ok=True)
    ca, key = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
    skey, csr, crt = (os.path.join(d, x) for x in ("server.key", "server.csr", "server.crt"))
    ext = os.path.join(d, "server.ext")
    pem = os.path.join(d, "server.pem")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                "keyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n")
    steps = [
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key],
        ["openssl", "req", "-x509", "-new", "-key", key, "-sha256", "-days", "30", "-subj",
         "/CN=tls-sidecar bench CA", "-out", ca],
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", skey],
        ["openssl", "req", "-new", "-key", skey, "-subj", "/CN=localhost", "-out", csr],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", key, "-CAcreateserial",
         "-days", "30", "-sha256", "-extfile", ext, "-out", crt],
    ]
    for cmd in steps:
        subprocess.run(cmd, check=True, capture_output=True)
    pk8 = subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", skey],
                         check=True, capture_output=True).stdout
    with open(crt, "rb") as f:
        chain = f.read()
    with open(pem, "wb") as f:
        f.write(chain + pk8)
    os.chmod(pem, 0o644)  # hitch and nginx workers may drop root before reading it.
    return {"ca": ca, "server": pem}


def _exit_on_signal(signum, frame):
    # SystemExit unwinds through main()'s finally, which stops every proxy it started.
    raise SystemExit(128 + signum)


def main():
    signal.signal(signal.SIGTERM, _exit_on_signal)
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--out", default=None, help="report directory (default bench/results)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--idle-conns", type=int, default=5000)
    ap.add_argument("--backend-threads", type=int, default=1)
    ap.add_argument("--port-base", type=int, default=29100)
    ap.add_argument("--proxies", default="", help="comma-separated row keys to run")
    ap.add_argument("--workloads", default="", help="comma-separated: rr1,rr64,bulk,hs,hsr,idle")
    ap.add_argument("--sidecar", default="", help="tls-sidecar binary (default BUILD/tls-sidecar)")
    ap.add_argument("--name", default="", help="report name (default: the date and time)")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.duration, args.warmup, args.idle_conns = 1, 0.25, 0.05, 100
    src = os.path.dirname(os.path.abspath(__file__))
    out_dir = args.out or os.path.join(src, "results")
    os.makedirs(out_dir, exist_ok=True)
    args.loadgen = os.path.join(args.build_dir, "bench", "loadgen")
    echo_bin = os.path.join(args.build_dir, "bench", "echo_backend")
    for b in (args.loadgen, echo_bin):
        if not os.access(b, os.X_OK):
            sys.exit(f"bench: {b} is missing: build the loadgen and echo_backend targets first")
    sidecar_bin = args.sidecar or os.path.join(args.build_dir, "tls-sidecar")
    if not os.access(sidecar_bin, os.X_OK):
        alt = os.path.join(args.build_dir, "proxy", "tls-sidecar")
        if os.access(alt, os.X_OK) and not args.sidecar:
            sidecar_bin = alt

    workdir = tempfile.mkdtemp(prefix="tls-sidecar-bench-")
    certs = make_certs(workdir, sidecar_bin)
    # Ports from --port-base up, skipping any in use, so a stray process cannot collide.
    ports = iter(x for x in range(args.port_base, args.port_base + 1000) if port_free(x))

    def p():
        return next(ports)

    echo_port = p()
    notes = []

    echo = Server("echo", echo_port, [echo_bin, "--port", str(echo_port), "--threads",
                                      str(args.backend_threads)])
    backend_tls_port = p()
    servers = {
        "backend-tls": Server("backend-tls", backend_tls_port,
                              [echo_bin, "--port", str(backend_tls_port), "--threads",
                               str(args.backend_threads), "--tls", "--cert", certs["server"]]),
        "haproxy-tcp": haproxy_server("haproxy-tcp", p(), echo_port, certs["server"], workdir,
                                      None, False),
        "haproxy-1t": haproxy_server("haproxy-1t", p(), echo_port, certs["server"], workdir, 1,
                                     True),
        "haproxy": haproxy_server("haproxy", p(), echo_port, certs["server"], workdir, None,
                                  True),
        "nginx-1w": nginx_server("nginx-1w", p(), echo_port, certs["server"], workdir, 1),
        "nginx": nginx_server("nginx", p(), echo_port, certs["server"], workdir, "auto"),
        "hitch": hitch_server("hitch", p(), echo_port, certs["server"], workdir),
        "stunnel": stunnel_server("stunnel", p(), echo_port, certs["server"], workdir),
        "sidecar": sidecar_server("sidecar", p(), echo_port, certs, workdir, sidecar_bin),
    }
    rows = [
        Row("noproxy", "no proxy, plaintext", None, False, "limit"),
        Row("backend-tls", "backend terminating TLS itself (BoringSSL, no hop)",
            servers["backend-tls"], True, "limit"),
        Row("haproxy-tcp", "HAProxy TCP mode, plaintext", servers["haproxy-tcp"], False, "limit"),
        Row("haproxy-1t", "HAProxy, 1 thread", servers["haproxy-1t"], True, "peer"),
        Row("haproxy", "HAProxy, default", servers["haproxy"], True, "peer"),
        Row("nginx-1w", "nginx stream, 1 worker", servers["nginx-1w"], True, "peer"),
        Row("nginx", "nginx stream, default", servers["nginx"], True, "peer"),
        Row("hitch", "hitch", servers["hitch"], True, "peer"),
        Row("stunnel", "stunnel", servers["stunnel"], True, "peer"),
        Row("sidecar-tls", "**tls-sidecar, TLS**", servers["sidecar"], True, "ours"),
        Row("sidecar-plain", "**tls-sidecar, plaintext**", servers["sidecar"], False, "ours"),
    ]
    needs = {"haproxy-tcp": "haproxy", "haproxy-1t": "haproxy", "haproxy": "haproxy",
             "nginx-1w": "nginx", "nginx": "nginx", "hitch": "hitch",
             "stunnel": "stunnel4" if shutil.which("stunnel4") else "stunnel"}
    only = set(args.proxies.split(",")) if args.proxies else None
    for row in rows:
        if only is not None and row.key not in only:
            row.skip = "not selected"
        elif row.key in needs and not shutil.which(needs[row.key]):
            row.skip = f"{needs[row.key]} is not installed"
            notes.append(f"{row.title}: skipped, {row.skip}.")
        elif row.kind == "ours" and not os.access(sidecar_bin, os.X_OK):
            row.skip = f"the binary {sidecar_bin} does not exist yet"
    if any(r.kind == "ours" and r.skip and r.skip != "not selected" for r in rows):
        notes.append(f"tls-sidecar: not measured, the binary {sidecar_bin} does not exist yet.")
    versions = tool_versions({needs[r.key].replace("stunnel4", "stunnel") for r in rows
                              if r.key in needs and not r.skip})

    if not echo.start(workdir):
        sys.exit(f"bench: echo backend: {echo.error}")
    started = []
    start_failures = []
    try:
        for row in rows:
            if row.skip or row.server is None or row.server in started:
                continue
            if row.server.proc is None and not row.server.start(workdir):
                for r in rows:
                    if r.server is row.server:
                        r.skip = f"{row.server.name} failed to start: {row.server.error}"
                notes.append(f"{row.title}: not measured, {row.server.name} failed to start: "
                             f"{row.server.error}")
                start_failures.append(row.server.name)
                continue
            started.append(row.server)
        wls = workloads(args)
        workload_keys = {r.key: [w for w, _, scope in wls if applies(r, scope)] for r in rows}
        results = {}
        errors = {}
        for run in range(args.runs):
            for wl, wl_args, scope in wls:
                for row in rows:
                    if row.skip or not applies(row, scope):
                        continue
                    if wl == "idle" and row.server is not None:
                        # A fresh process, so memory freed by earlier runs does not hide
                        # what idle connections cost.
                        if not row.server.restart(workdir):
                            errors.setdefault((row.key, wl), row.server.error)
                            results.setdefault((row.key, wl), []).append(
                                {"error": row.server.error})
                            continue
                    port = row.server.port if row.server else echo_port
                    res = run_loadgen(args, row, port, wl_args, certs, workdir)
                    # A handshake loop may see a rare reset; anything else must be clean.
                    allowed = 0.01 * res.get("handshakes", 0) if wl in ("hs", "hsr") else 0
                    if "error" not in res and (res.get("errors", 0) > allowed or
                                               (wl in ("hs", "hsr") and not res.get("handshakes"))):
                        res["error"] = f"{res['errors']} connection errors: {res.get('last_error')}"
                    if "error" in res:
                        errors.setdefault((row.key, wl), res["error"])
                    results.setdefault((row.key, wl), []).append(res)
                    print(f"bench: run {run + 1}/{args.runs} {wl:5} {row.key:14} " +
                          (f"ERROR {res['error']}" if "error" in res else
                           f"req/s={res.get('req_per_s', 0):.0f} MB/s={res.get('mb_per_s', 0):.1f} "
                           f"conn/s={res.get('conn_per_s', 0):.0f} "
                           f"cores={res.get('proxy_cores', 0):.2f} "
                           f"KiB/conn={res.get('kib_per_conn', 0):.1f}"),
                          flush=True)
        for (rk, wl), e in sorted(errors.items()):
            notes.append(f"{rk} {wl}: {e}")
        hs_rows = [(r.key, results.get((r.key, "hsr"), [])) for r in rows if not r.skip]
        for rk, runs in hs_rows:
            for r in runs:
                if r.get("handshakes") and r.get("resumed", 0) < 0.9 * r["handshakes"]:
                    notes.append(f"{rk} hsr: only {r['resumed']} of {r['handshakes']} "
                                 "connections resumed their session.")
                    break
    finally:
        for s in started:
            s.stop()
        echo.stop()

    stem = args.name or datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    path_md = os.path.join(out_dir, f"{stem}.md")
    path_json = os.path.join(out_dir, f"{stem}.json")
    table = write_report(args, rows, results, workload_keys, path_md, path_json, None, notes,
                         versions)
    plot, why = write_plot(rows, table, out_dir, stem)
    if why:
        notes.append(why)
    write_report(args, rows, results, workload_keys, path_md, path_json, plot, notes, versions)
    print(f"bench: report written to {path_md}" + (f", plot {plot}" if plot else ""))

    # The report must have a number in every cell that applies.
    missing = [(r.key, h) for r in rows if not r.skip for h, v in table[r.key].items()
               if v is None]
    if missing:
        print("bench: cells without a figure: " + ", ".join(f"{k}/{h}" for k, h in missing),
              file=sys.stderr)
        return 1
    if start_failures:
        print("bench: failed to start: " + ", ".join(start_failures), file=sys.stderr)
        return 1
    # A report without tls-sidecar's own rows measures only the peers: that is no pass, even
    # when every figure it has is there (unless the rows were left out with --proxies).
    unmeasured = [r for r in rows if r.kind == "ours" and r.skip and r.skip != "not selected"]
    if unmeasured:
        print("bench: tls-sidecar not measured: " +
              "; ".join(f"{r.title.strip('*')}: {r.skip}" for r in unmeasured), file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
