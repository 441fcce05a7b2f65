"""The benchmark's output: progress lines, the table, the targets, and the
results part of BENCHMARKS.md. Pure functions of the results dict."""

import sys

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def progress(what, _row):
    print(f"bench: {what} done", file=sys.stderr, flush=True)


def ratio(a, b):
    return f"{a / b:.2f}" if b else "-"


def fmt(v):
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def trio(label, section, figure):
    """One figure of a workload for the three clients."""
    return (label, figure(section["limit"]), figure(section["grpc"]),
            figure(section["gateway"]))


def flavors(label, section, figure):
    """The limit's figure on each of its runtimes, as text."""
    return (label, f"{fmt(figure(section['limit_multi']))} / "
                   f"{fmt(figure(section['limit_current']))}", "", "")


def rows(r):
    """(label, limit, grpc, gateway) for every figure, numbers unformatted."""
    out = []
    for row in r.get("kv", []):
        name = f"{row['op']} c={row['concurrency']}"
        l, g, w = row["limit"], row["grpc"], row["gateway"]
        out.append((f"{name} ops/s", l["ops_per_sec"], g["ops_per_sec"], w["ops_per_sec"]))
        out.append(flavors("  limit multi-thread / current-thread ops/s", row,
                           lambda x: x["ops_per_sec"]))
        if "grpc_b" in row:
            out.append((f"  {name} ops/s, build B (--ab)", l["ops_per_sec"],
                        row["grpc_b"]["ops_per_sec"], w["ops_per_sec"]))
        for p in ("p50_us", "p99_us", "max_us"):
            out.append((f"{name} {p[:-3]} us", l[p], g[p], w[p]))
        out.append((f"{name} client CPU s/10k ops", l["cpu_us_per_op"] / 100,
                    g["cpu_us_per_op"] / 100, w["cpu_us_per_op"] / 100))
        if "grpc_b" in row:
            out.append((f"  {name} client CPU s/10k ops, build B", l["cpu_us_per_op"] / 100,
                        row["grpc_b"]["cpu_us_per_op"] / 100, w["cpu_us_per_op"] / 100))
        out.append((f"{name} client+etcd CPU s/10k ops",
                    (l["cpu_us_per_op"] + l["etcd_cpu_us_per_op"]) / 100,
                    (g["cpu_us_per_op"] + g["etcd_cpu_us_per_op"]) / 100,
                    (w["cpu_us_per_op"] + w["etcd_cpu_us_per_op"]) / 100))
    if "watch_latency" in r:
        wl = r["watch_latency"]
        for p in ("p50_us", "p99_us", "max_us"):
            out.append((f"watch put->event {p[:-3]} us", wl["limit"][p], wl["grpc"][p],
                        wl["gateway"][p]))
        wr = r["watch_rate"]
        out.append(("watch events/s (1 watcher)", wr["limit"]["events_per_sec"],
                    wr["grpc"]["events_per_sec"], wr["gateway"]["events_per_sec"]))
        out.append(("  writer puts/s meanwhile", wr["limit"]["writer_puts_per_sec"],
                    wr["grpc"]["writer_puts_per_sec"], wr["gateway"]["writer_puts_per_sec"]))
    if "watchers" in r:
        ws = r["watchers"]
        for n in ("1", "10", "100", "1000"):
            out.append((f"connections, {n} watchers", ws["limit"]["connections"] if n == "1000"
                        else "", ws["grpc"]["connections"][n], ws["gateway"]["connections"][n]))
        idle = ws["idle_secs"]
        out.append((f"idle CPU, 1000 watchers, % core",
                    ws["limit"]["idle_cpu_secs"] / idle * 100,
                    ws["grpc"]["idle_cpu_secs"] / idle * 100,
                    ws["gateway"]["idle_cpu_secs"] / idle * 100))
        out.append(("RSS per 1000 watchers, MiB", ws["limit"]["rss_growth_kib"] / 1024,
                    ws["grpc"]["rss_growth_kib"] / 1024, ws["gateway"]["rss_growth_kib"] / 1024))
    if "readdir" in r:
        rd = r["readdir"]
        out.append(trio("readdir 10k x 1 KiB, ms", rd, lambda x: x["secs"] * 1000))
        out.append(trio("readdir peak RSS growth, MiB", rd, lambda x: x["rss_growth_kib"] / 1024))
    if "sync" in r:
        sy = r["sync"]
        name = f"start-up sync {sy['keys'] // 1000}k x 1 KiB, {sy['prefixes']} prefixes"
        out.append(trio(f"{name}, ms", sy, lambda x: x["secs"] * 1000))
        out.append(flavors("  limit multi-thread / current-thread ms", sy,
                           lambda x: x["secs"] * 1000))
        out.append(trio("  its client CPU, ms", sy, lambda x: x["cpu_secs"] * 1000))
        out.append(trio("  its peak RSS growth, MiB", sy, lambda x: x["rss_growth_kib"] / 1024))
    if "burst" in r:
        b = r["burst"]
        name = (f"watch burst {b['count']:,} puts, {b['prefixes']} prefixes x "
                f"{b['workers']} workers")
        out.append(trio(f"{name}: all seen, ms", b, lambda x: x["secs"] * 1000))
        out.append(flavors("  limit multi-thread / current-thread ms", b,
                           lambda x: x["secs"] * 1000))
        out.append(trio("  the writer's own time, ms", b, lambda x: x["writer_secs"] * 1000))
        out.append(trio("  worker CPU per event, us", b, lambda x: x["cpu_us_per_event"]))
        if "grpc_b" in b:
            g, l, w = b["grpc_b"], b["limit"], b["gateway"]
            out.append(("  all seen, ms, build B (--ab)", l["secs"] * 1000, g["secs"] * 1000,
                        w["secs"] * 1000))
            out.append(("  worker CPU per event, us, build B", l["cpu_us_per_event"],
                        g["cpu_us_per_event"], w["cpu_us_per_event"]))
            for name in ("grpc", "grpc_b"):
                rounds = " / ".join(fmt(x) for x in b[name]["rounds_cpu_us_per_event"])
                out.append((f"  worker CPU per event by round, {name}", "", rounds, ""))
        if "handoff_reads_per_message" in b.get("grpc", {}):
            out.append(("  reads through the hand-off per message", "",
                        b["grpc"]["handoff_reads_per_message"], ""))
    kp = r.get("keepers")
    if kp:
        out.append(("keepalives/s, 1000 keepers TTL 30", "", kp["keepalives_per_sec"], ""))
        out.append(("RSS per keeper, bytes", "", kp["rss_per_keeper_bytes"], ""))
        out.append(("CPU per renewal, us", "", kp["cpu_us_per_renewal"], ""))
        out.append(("idle CPU, 1000 keepers, % core", "", kp["idle_cpu_pct"], ""))
        out.append(("connections / LeaseKeepAlive streams, 1000 keepers", "",
                    f"{kp['connections']} / {kp['streams']}", ""))
    mi = r.get("mirror")
    if mi:
        ld, ap = mi["load"], mi["apply"]
        name = f"mirror {mi['keys'] // 1000}k x 1 KiB"
        out.append((f"{name}: load (cli:mirror), ms", "", ld["secs"] * 1000, ""))
        out.append(("  RSS per key, bytes (peak growth, MiB)", "",
                    f"{fmt(mi['rss_per_key_bytes'])} ({fmt(ld['peak_rss_growth_kib'] / 1024)})",
                    ""))
        out.append(("  RSS per key after malloc_trim, bytes", "",
                    mi["trimmed_rss_per_key_bytes"], ""))
        out.append(("  Lua heap per key, bytes", "", mi["lua_per_key_bytes"], ""))
        out.append(("m:get of a random key, its value's length read, ns", "",
                    mi["get"]["ns_per_get"], ""))
        out.append(("  the lookup alone, ns (empty loop subtracted from both)", "",
                    mi["get"]["ns_per_lookup"], ""))
        out.append((f"mirror applies, events/s ({mi['count']:,} puts, 64 at a time)", "",
                    ap["events_per_sec"], ""))
        out.append(("  writer puts/s meanwhile; bound by", "",
                    f"{fmt(mi['writer']['puts_per_sec'])}; {mi['bound_by']}", ""))
        out.append(("  worker CPU per applied event, us (% of a core)", "",
                    f"{fmt(ap['cpu_us_per_event'])} ({ap['worker_cpu_pct']:.0f}%)", ""))
        out.append(("  last event applied after the writer's end, ms", "",
                    ap["lag_after_writer_ms"], ""))
    return out


def table(r):
    head = ("figure", "limit", "etcd_grpc", "gateway", "grpc/limit", "grpc/gateway")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, l, g, w in rows(r):
        num = all(isinstance(x, (int, float)) for x in (l, g, w))
        cells = (label, fmt(l), fmt(g), fmt(w), ratio(g, l) if num else "-",
                 ratio(g, w) if num else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| target | figure | met |")
    lines.append("|---|---|---|")
    for t in r["targets"]:
        lines.append(f"| {t['target']} | {t['figure']} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines)


def targets(r):
    out = []

    def add(target, figure, met):
        out.append({"target": target, "figure": figure, "met": bool(met)})

    for row in r.get("kv", []):
        name = f"{row['op']} c={row['concurrency']}"
        l, g, w = row["limit"], row["grpc"], row["gateway"]
        q = g["ops_per_sec"] / l["ops_per_sec"]
        want = 0.8 if row["concurrency"] == 1 else 0.9
        add(f"{name} ops/s >= {want} x limit", f"{q:.2f}", q >= want)
        if row["concurrency"] in (16, 256):
            q = g["ops_per_sec"] / w["ops_per_sec"]
            add(f"{name} ops/s >= 2.5 x gateway", f"{q:.2f}", q >= 2.5)
        if row["concurrency"] == 16:
            q = g["p99_us"] / l["p99_us"]
            add(f"{name} p99 <= 1.2 x limit", f"{q:.2f}", q <= 1.2)
        q = g["cpu_us_per_op"] / l["cpu_us_per_op"]
        add(f"{name} worker CPU/op <= 1.5 x limit", f"{q:.2f}", q <= 1.5)
    if "sync" in r:
        sy = r["sync"]
        q = sy["grpc"]["secs"] / sy["limit"]["secs"]
        add("start-up sync time <= 1.2 x limit", f"{q:.2f}", q <= 1.2)
        q = sy["grpc"]["rss_growth_kib"] / max(sy["limit"]["rss_growth_kib"], 1)
        add("start-up sync peak RSS <= 1.2 x limit", f"{q:.2f}", q <= 1.2)
    if "watchers" in r:
        ws = r["watchers"]
        conns = ws["grpc"]["connections"]
        add("2 connections at 1/10/100/1000 watchers", "/".join(str(conns[n]) for n in conns),
            all(v == 2 for v in conns.values()))
        pct = ws["grpc"]["idle_cpu_secs"] / ws["idle_secs"] * 100
        add("idle CPU with 1000 watchers < 1% of a core", f"{pct:.2f}%", pct < 1)
    if "watch_latency" in r:
        p99 = r["watch_latency"]["grpc"]["p99_us"]
        add("watch delivery p99 < 2 ms", f"{p99 / 1000:.2f} ms", p99 < 2000)
    kp = r.get("keepers")
    if kp:
        add("1000 keepers: <= 2 connections, 1 LeaseKeepAlive stream",
            f"{kp['connections']} / {kp['streams']}", kp["connections"] <= 2 and kp["streams"] == 1)
        add("idle CPU with 1000 keepers < 1% of a core", f"{kp['idle_cpu_pct']:.2f}%",
            kp["idle_cpu_pct"] < 1)
    return out


def write_doc(path, r, table_md):
    m = r["machine"]
    section = "\n".join([
        BEGIN,
        f"Measured {m['date']} on {m['cpu'] or 'unknown CPU'}, {m['cores']} cores, "
        f"{m['mem_gib']} GiB, Linux {m['kernel']}; etcd {r['etcd']}; "
        f"{'QUICK run' if r['quick'] else 'full run'} in {r['secs']} s; "
        f"load average up to {r.get('load', 0):.1f} on {m['cores']} cores during the run"
        f"{' (a shared, loaded machine: compare ratios, not absolute figures)' if r.get('load', 0) > m['cores'] / 2 else ''}.",
        "",
        table_md,
        END,
    ])
    with open(path) as f:
        text = f.read()
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(path, "w") as f:
        f.write(head + section + tail)
