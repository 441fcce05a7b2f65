#!/usr/bin/env python3
"""`make soak`: does a worker's memory stay flat under a long run?

Starts its own etcd and a one-worker nginx (the bench harness's), warms up,
records the worker's RSS, then runs 1,000,000 gets and sets at concurrency
16 and 100,000 watch create/cancel cycles, and records RSS again. Fails
(exit 1) when the end RSS is more than 5% above the warm-up RSS, or when any
operation failed. --quick runs a tenth of it after the same warm-up. Not
part of `make test`: about 4 minutes on a 2-core machine.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the bench harness: Etcd, Nginx, proc_rss_kib)

LIMIT = 1.05


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    run.server_args(p)
    p.add_argument("--lib-dir", default=os.path.join(run.ROOT, "target/release"))
    args = p.parse_args()
    scale = 10 if args.quick else 1
    etcd = run.Etcd(args.etcd)
    ngx = None
    try:
        ngx = run.Nginx(args)
        rss = lambda: run.proc_rss_kib(ngx.worker)  # noqa: E731
        failed = 0

        def kv(op, n):
            r = ngx.run(etcd, w="kv", client="grpc", op=op, c=16, n=n, warmup=0)
            return r["errors"], r["ops_per_sec"]

        def cycles(n):
            r = ngx.run(etcd, w="watch_cycles", client="grpc", c=16, n=n)
            return r["errors"], n / r["secs"]

        # The warm-up is never scaled down: allocators and Lua's heap reach
        # their working size only after some tens of thousands of calls.
        for op in ("get", "set"):
            kv(op, 50_000)
        cycles(10_000)
        warm = rss()
        print(f"warm-up done: RSS {warm} KiB")
        rows = []
        for step in range(10):
            for op in ("get", "set"):
                errors, rate = kv(op, 50_000 // scale)
                failed += errors
            rows.append((f"{(step + 1) * 100_000 // scale} gets+sets", rss(), rate))
            print(f"  {rows[-1][0]:>28}: RSS {rows[-1][1]} KiB ({rows[-1][1] / warm:.3f}x)", flush=True)
        for step in range(10):
            errors, rate = cycles(10_000 // scale)
            failed += errors
            rows.append((f"{(step + 1) * 10_000 // scale} watch cycles", rss(), rate))
            print(f"  {rows[-1][0]:>28}: RSS {rows[-1][1]} KiB ({rows[-1][1] / warm:.3f}x)", flush=True)
        end = rss()
        ratio = end / warm
        print(f"soak: {1_000_000 // scale} gets/sets at c=16 and {100_000 // scale} watch "
              f"create/cancel cycles; worker RSS {warm} KiB after warm-up, {end} KiB at the end "
              f"({(ratio - 1) * 100:+.1f}%); failed operations: {failed}")
        if failed or ratio > LIMIT:
            print(f"soak: FAILED (limit +{(LIMIT - 1) * 100:.0f}%, no failures)")
            sys.exit(1)
        print("soak: ok")
    finally:
        if ngx:
            ngx.stop()
        etcd.stop()


if __name__ == "__main__":
    main()
