#!/usr/bin/env python3
"""Reloads nginx every second while clients loop on requests, for
t/reload-load.t (not part of the product).

Usage: reload_load.py PORT MASTER_PID ERROR_LOG SECONDS

Four client threads send `GET /get` (HTTP/1.0, one connection per request,
so that a reload never races a kept-alive connection) and read the serving worker's
pid from the body. Every second the master gets SIGHUP; every worker it had
before counts as old from then on and is polled until its pid is gone. At
the end one line goes into the error log:

  reload under load: R reloads, N requests, F failed, O old workers,
  L lingered, slowest exit M ms after its last request

where an old worker "lingered" if it was still alive 2 s after both the
reload that retired it and the last request it answered.
"""

import os
import signal
import socket
import sys
import threading
import time

port, master, log, seconds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
lock = threading.Lock()
last_answer = {}  # worker pid -> time of its last answer
requests = failed = 0
failures = []
stop = False


def workers():
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == master:
                    pids.append(int(d))
            except OSError:
                pass
    return pids


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def client():
    global requests, failed
    while not stop:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /get HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            s.close()
            head, _, body = data.partition(b"\r\n\r\n")
            ok = head.startswith(b"HTTP/1.1 200") and body.startswith(b"ok ")
            with lock:
                requests += 1
                if ok:
                    last_answer[int(body.split()[1])] = time.time()
                else:
                    failed += 1
                    failures.append(data[:200])
        except OSError as e:
            with lock:
                requests += 1
                failed += 1
                failures.append(repr(e).encode())


threads = [threading.Thread(target=client) for _ in range(4)]
for t in threads:
    t.start()

retired = {}  # old worker pid -> time of the reload that retired it
gone = {}     # old worker pid -> time it was seen gone
reloads = 0
start = time.time()
while time.time() - start < seconds:
    for pid in workers():
        retired.setdefault(pid, time.time())
    os.kill(master, signal.SIGHUP)
    reloads += 1
    t_end = time.time() + 1
    while time.time() < t_end:
        for pid in retired:
            if pid not in gone and not alive(pid):
                gone[pid] = time.time()
        time.sleep(0.01)
stop = True
for t in threads:
    t.join()
# the last generation is current: only workers retired by a reload count
current = set(workers())
deadline = time.time() + 5
while time.time() < deadline and any(p not in gone and p not in current for p in retired):
    for pid in retired:
        if pid not in gone and pid not in current and not alive(pid):
            gone[pid] = time.time()
    time.sleep(0.01)

lingered, slowest, details, took_all = 0, 0.0, [], []
old = [p for p in retired if p not in current]
for pid in old:
    since = max(retired[pid], last_answer.get(pid, 0))
    took = gone.get(pid, time.time()) - since
    slowest = max(slowest, took)
    took_all.append(took)
    if pid not in gone or took > 2:
        lingered += 1
        details.append(f"pid {pid}: gone {gone.get(pid, time.time()) - retired[pid]:.2f} s after its "
                       f"reload, last answer {last_answer.get(pid, 0) - retired[pid]:.2f} s after it")
with open(log, "a") as f:
    for d in details[:5]:
        f.write(f"reload under load: lingered: {d}\n")
    for fl in failures[:5]:
        f.write(f"reload under load: failure: {fl!r}\n")
    f.write(f"reload under load: {reloads} reloads, {requests} requests, {failed} failed, "
            f"{len(old)} old workers, {lingered} lingered, slowest exit "
            f"{int(slowest * 1000)} ms after its last request, median "
            f"{int(sorted(took_all)[len(took_all) // 2] * 1000) if took_all else 0} ms\n")
