#!/usr/bin/env python3
"""A TCP proxy in front of one etcd member that loses one answer.

    cut_proxy.py BASE TARGET_HOST:PORT MIN_BYTES LIFETIME_S

It listens on a free loopback port and writes it to BASE.port. Bytes pass
both ways until the file BASE.arm appears. From then on, once MIN_BYTES
have come from the client (a large request, not an HTTP/2 ping), the
answer direction is dropped, the request keeps flowing to etcd for 1.5 s
(so etcd receives all of it and proposes it), and then the client
connection is reset: a write that reached etcd and whose reply never came back.
BASE.cut is written and BASE.arm removed. The proxy exits after
LIFETIME_S seconds whatever happens, so a dead test leaves nothing behind.
"""

import os
import socket
import struct
import sys
import threading
import time


def pump(src, dst, state, count_up, base, min_bytes):
    """Copies src to dst; count_up marks the client-to-etcd direction."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if count_up and not state["cut"] and os.path.exists(base + ".arm"):
                state["seen"] += len(data)
                if state["seen"] >= min_bytes:
                    state["cut"] = True
                    # disarmed at once: no other connection is cut
                    try:
                        os.remove(base + ".arm")
                    except OSError:
                        pass
                    dst.sendall(data)
                    threading.Thread(target=cut, args=(src, dst, state, base),
                                     daemon=True).start()
                    continue
            if not count_up and state["cut"]:
                continue  # the answer is lost
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                if state["reset"]:
                    s.close()
                else:
                    s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def cut(client, upstream, state, base):
    time.sleep(1.5)
    with open(base + ".cut", "w") as f:
        f.write("cut\n")
    # SO_LINGER 0: the close sends a RST, as a dropped connection looks;
    # SHUT_RD wakes the pumps, which then close both sockets
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    state["reset"] = True
    for s in (client, upstream):
        try:
            s.shutdown(socket.SHUT_RD)
        except OSError:
            pass


def serve(client, target, base, min_bytes):
    try:
        upstream = socket.create_connection(target, timeout=5)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    state = {"cut": False, "reset": False, "seen": 0}
    threading.Thread(target=pump, args=(upstream, client, state, False, base, min_bytes),
                     daemon=True).start()
    pump(client, upstream, state, True, base, min_bytes)


def main():
    base, target, min_bytes, lifetime = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    host, port = target.rsplit(":", 1)
    # started from an nginx worker: its listening sockets must not stay
    # open here (the next test's nginx could not bind them)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    with open(base + ".port.tmp", "w") as f:
        f.write(str(listener.getsockname()[1]))
    os.rename(base + ".port.tmp", base + ".port")
    threading.Timer(lifetime, lambda: os._exit(0)).start()
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, (host, int(port)), base, min_bytes),
                         daemon=True).start()


if __name__ == "__main__":
    main()
