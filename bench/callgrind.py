#!/usr/bin/env python3
"""Instructions per call of etcd_grpc builds, counted by callgrind.

    python3 bench/callgrind.py ROOT_A,LIB_DIR_A [ROOT_B,LIB_DIR_B ...]
        [--ops get:256,set:256,watch:1] [--n 3000] [--top 25]

Each ROOT is a checkout (its lua/ is loaded), each LIB_DIR holds its
libetcd_grpc_core.so. One etcd; per build and workload, two one-worker
nginx runs under `valgrind --tool=callgrind --separate-threads=yes`: a
warm-up and N calls of bench/run.py's KV workload, then the same with N
calls more. `watch` (its concurrency is ignored) counts watch reads
instead: N events, each its own message, put by bench-limit outside the
worker while nothing reads, then read from one prefix watcher's buffer
(every one of them is there: a marker key's event, put last, is read
first from a second watcher on the same stream). The difference of the worker's totals over N is the cost per
call, without start-up, warm-up and exit; it is printed for the whole
worker and per thread (t1 the nginx thread, t2 the runtime thread), and
with --top the functions with the largest inclusive cost on each thread
of the longer run. (callgrind_control cannot reach nginx's forked
workers here, so collection is not switched on and off.)

Instruction counts do not depend on the machine's load, so two builds can
be compared on a busy machine where ops/s and CPU time cannot
(BENCHMARKS.md, issue 14).
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: Etcd, Nginx, the KV workload)


def wrapper(out_dir, nginx):
    """A script that starts nginx under callgrind (collection off)."""
    path = os.path.join(out_dir, "nginx-callgrind")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                f"exec valgrind --tool=callgrind --separate-threads=yes "
                f"--callgrind-out-file={out_dir}/cg.%p --log-file={out_dir}/vg.%p "
                f"{nginx} -g 'user root root;' \"$@\"\n")
    os.chmod(path, 0o755)
    return path


def worker_totals(out_dir, pid):
    """{thread number: instructions} of process pid, from its dump at exit."""
    totals = {}
    for path in glob.glob(f"{out_dir}/cg.{pid}-*"):
        thread = int(path.rsplit("-", 1)[1])
        with open(path) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    totals[thread] = int(line.split()[1])
                    break
    return totals


def profile(args, etcd, root, lib, op, c, rounds):
    """Runs a warm-up, then `rounds` x N calls in a fresh nginx under
    callgrind; returns the worker's per-thread totals and its dump dir."""
    out_dir = tempfile.mkdtemp(prefix="etcd-grpc-cg-")
    os.chmod(out_dir, 0o777)  # nginx's workers may run as another user
    nargs = types.SimpleNamespace(nginx=wrapper(out_dir, args.nginx), lib_dir=lib,
                                  modules=args.modules)
    ngx = run.Nginx(nargs, lua_root=root, lib_dir=lib)
    pid = ngx.worker
    try:
        for n in [args.warm] + [args.n] * rounds:
            if op == "watch":
                watch_round(args, etcd, ngx, n)
            else:
                ngx.run(etcd, w="kv", client="grpc", op=op, c=c, n=n)
    finally:
        ngx.stop()
    return worker_totals(out_dir, pid), out_dir, pid


def watch_round(args, etcd, ngx, n):
    """The `watch` workload: a prefix watcher whose buffer a writer
    outside the worker (bench-limit's blast, one put at a time) fills
    with n events, then reads them (the writer's puts are not counted)."""
    prefix, marker = "/bench/cgwatch/", "/bench/cgwatchend/"
    ngx.run(etcd, w="watch_open", client="grpc", prefix=prefix, marker=marker, buffer=n + 16)
    # One put at a time: a watcher etcd falls behind on gets its events
    # batched, fewer messages than events, more or less from run to run.
    run.limit(args, etcd, "blast", "--prefix", prefix, "--count", str(n),
              "--concurrency", "1")
    run.limit(args, etcd, "blast", "--prefix", marker, "--count", "1", "--concurrency", "1")
    got = ngx.run(etcd, w="watch_drain", client="grpc", count=n)
    if got.get("events") != n or got.get("messages") != n:
        sys.exit(f"callgrind: watch read {got}, not {n} events in {n} messages")



def top(out_dir, pid, thread, n):
    """The n functions of one thread with the largest inclusive cost."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                          f"{out_dir}/cg.{pid}-{thread:02d}"], capture_output=True, text=True).stdout
    lines = [x for x in out.splitlines() if re.match(r"^\s*[\d,]+ \(", x)]
    return "\n".join(lines[:n])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("builds", nargs="+")
    p.add_argument("--ops", default="get:256,set:256")
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--warm", type=int, default=1000)
    p.add_argument("--top", type=int, default=0)
    p.add_argument("--limit", default=os.path.join(run.ROOT, "target/release/bench-limit"),
                   help="bench-limit, the writer of the `watch` workload")
    run.server_args(p)
    args = p.parse_args()
    etcd = run.Etcd(args.etcd)
    try:
        for spec in args.ops.split(","):
            op, c = spec.split(":")
            for build in args.builds:
                root, lib = build.split(",")
                # The difference of two runs, one with N calls more, leaves
                # out start-up, warm-up and exit.
                one, _, _ = profile(args, etcd, root, lib, op, c, 1)
                two, out_dir, pid = profile(args, etcd, root, lib, op, c, 2)
                per = {k: (two.get(k, 0) - one.get(k, 0)) / args.n for k in sorted(two)}
                threads = " ".join(f"t{k}={v / 1000:.1f}k" for k, v in per.items())
                each = "watch message" if op == "watch" else "op"
                print(f"{build} {op} c={c}: {sum(per.values()) / 1000:.1f}k instr/{each} "
                      f"({threads})", flush=True)
                if args.top:
                    for k in sorted(two):
                        print(f"-- thread {k}, inclusive, warm-up and {2 * args.n} calls:")
                        print(top(out_dir, pid, k, args.top))
    finally:
        etcd.stop()


if __name__ == "__main__":
    main()
