#!/usr/bin/env python3
"""Kernel events per call of two etcd_grpc builds, side by side.

    python3 bench/syscalls.py ROOT_A,LIB_DIR_A ROOT_B,LIB_DIR_B [--rounds N]
        [--ops get,set] [--concurrency 1,16,256] [--value-size 256] [--tls]

Each ROOT is a checkout (its lua/ is loaded), each LIB_DIR holds its
libetcd_grpc_core.so. One etcd (with --tls: over TLS, a CA made with
openssl) and one one-worker nginx per build; the KV workload of
bench/run.py (get and set at concurrency 1, 16, 256; sets of
--value-size bytes) runs on each in turn, interleaved round by round,
while `perf stat` counts the worker's write, writev, futex, sendto,
epoll_wait and recvfrom calls and its context switches; `writes` is
write + writev + sendto (a non-vectored socket write is a sendto, the
doorbell's a write). Counts per call are steady on a loaded machine where
ops/s and CPU are not (BENCHMARKS.md items 6-8, 14 and 15 were measured
with it). Needs perf (Debian's linux-perf) with syscall tracepoints.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: Etcd, Nginx, the KV workload)

EVENTS = ["syscalls:sys_enter_write", "syscalls:sys_enter_writev", "syscalls:sys_enter_futex", "context-switches",
          "syscalls:sys_enter_sendto", "syscalls:sys_enter_epoll_wait",
          "syscalls:sys_enter_recvfrom"]


def counted(pid, fn):
    """Runs fn() while perf counts EVENTS of process pid: (fn(), counts)."""
    with tempfile.NamedTemporaryFile("r", suffix=".perf") as out:
        p = subprocess.Popen(["perf", "stat", "-x,", "-o", out.name,
                              "-e", ",".join(EVENTS), "-p", str(pid)])
        time.sleep(0.3)  # perf attached before the first call
        res = fn()
        p.send_signal(2)
        p.wait()
        counts = {}
        for line in out:
            f = line.strip().split(",")
            if len(f) > 2 and f[2] in EVENTS:
                try:
                    counts[f[2].split(":")[-1]] = float(f[0])
                except ValueError:
                    pass  # "<not counted>"
    return res, counts


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--ops", default="get,set")
    p.add_argument("--concurrency", default="1,16,256")
    p.add_argument("--value-size", type=int, default=256, help="bytes per set value")
    p.add_argument("--tls", action="store_true", help="etcd over TLS")
    run.server_args(p)
    args = p.parse_args()
    builds = [x.split(",") for x in (args.a, args.b)]
    nargs = types.SimpleNamespace(nginx=args.nginx, lib_dir=builds[0][1], modules=args.modules)
    etcd = run.Etcd(args.etcd, tls=args.tls)
    extra = {"value_size": args.value_size}
    if args.tls:
        extra["ca"] = etcd.ca
    ngxs = [run.Nginx(nargs, lua_root=root, lib_dir=lib) for root, lib in builds]
    table = {}
    try:
        for op in args.ops.split(","):
            for c in map(int, args.concurrency.split(",")):
                n = 2000 if c == 1 else 20000  # a lone call is slow: fewer of them
                for _ in range(args.rounds):
                    for name, ngx in zip("AB", ngxs):
                        res, ev = counted(ngx.worker, lambda: ngx.run(
                            etcd, w="kv", client="grpc", op=op, c=c, n=n, **extra))
                        row = {k: v / n for k, v in ev.items()}
                        row["writes"] = sum(row.get(k, 0) for k in (
                            "sys_enter_write", "sys_enter_writev", "sys_enter_sendto"))
                        row["ops_s"] = res["ops_per_sec"]
                        row["cpu_us"] = res["cpu_us_per_op"]
                        table.setdefault((op, c, name), []).append(row)
    finally:
        for ngx in ngxs:
            ngx.stop()
        etcd.stop()
    print("per call, mean of %d rounds (A = %s, B = %s%s, values of %d bytes)"
          % (args.rounds, args.a, args.b, ", TLS" if args.tls else "", args.value_size))
    for (op, c, name), rows in table.items():
        mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
        print("%s c=%-3d %s  " % (op, c, name)
              + "  ".join("%s %.3f" % (k.replace("sys_enter_", ""), v) for k, v in mean.items()))


if __name__ == "__main__":
    main()
