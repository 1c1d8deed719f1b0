#!/usr/bin/env python3
"""Suspected (b): what node B holds when its subscribe link sends SUBSCRIBE with a backlog
waiting in its socket and in Redis. usage: subscribe_backlog.py BINARY [MIB]"""
import os, socket, subprocess, sys, threading, time
sys.path.insert(0, os.path.dirname(__file__))
from slow_redis import free_port, http_get, metric, ws_connect

binary = sys.argv[1]
mib = int(sys.argv[2]) if len(sys.argv) > 2 else 16


def status(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key):
            return int(line.split()[1]) // 1024  # MiB
    return None


def drain(s):
    s.settimeout(None)
    try:
        while s.recv(1 << 16):
            pass
    except OSError:
        pass


def frame(payload):
    mask = b"\0\0\0\0"
    n = len(payload)
    return bytes([0x82, 0x80 | 126]) + n.to_bytes(2, "big") + mask + payload


rport = free_port()
redis = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(rport), "--save", "",
                          "--appendonly", "no"], stdout=subprocess.DEVNULL)
time.sleep(0.3)
ports = [free_port(), free_port()]
url = f"redis://127.0.0.1:{rport}"
a = subprocess.Popen([binary, "--listen", f"127.0.0.1:{ports[0]}", "--cores", "1", "--broker", url],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
b = subprocess.Popen([binary, "--listen", f"127.0.0.1:{ports[1]}", "--cores", "1", "--broker", url,
                      "--fanout-budget", "1MiB", "--max-backlog", "8MiB", "--write-timeout", "120s", "--publish-timeout", "200s"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for port in ports:
        for _ in range(200):
            try:
                http_get(port, "/healthz")
                break
            except OSError:
                time.sleep(0.05)
    # B: a stalled reader in room x (small receive buffer, never reads) and a reading one.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", ports[1]))
    import base64
    key = base64.b64encode(os.urandom(16)).decode()
    stalled.sendall((f"GET /ws/x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    time.sleep(0.2)
    stalled.recv(1024)  # the 101
    reader = ws_connect(ports[1], "x")
    threading.Thread(target=drain, args=(reader,), daemon=True).start()
    flooder = ws_connect(ports[0], "x")
    threading.Thread(target=drain, args=(flooder,), daemon=True).start()
    deadline = time.time() + 10
    while metric(ports[1], "ringcast_broker_subscriptions") < 1 or metric(ports[0], "ringcast_broker_up") < 1:
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    base = status(b.pid, "VmRSS")
    payload = os.urandom(32 * 1024)
    for _ in range(mib * 32):
        flooder.sendall(frame(payload))
    time.sleep(2)
    out = subprocess.run(["redis-cli", "-p", str(rport), "CLIENT", "LIST", "TYPE", "pubsub"],
                         capture_output=True, text=True).stdout
    omem = [f for line in out.splitlines() for f in line.split() if f.startswith("omem=")]
    print(f"{mib} MiB flooded into room x; B's budget is held by its stalled reader")
    print(f"  Redis output buffers of the subscribers: {omem}")
    print(f"  B RSS before {base} MiB, now {status(b.pid, 'VmRSS')} MiB, peak {status(b.pid, 'VmHWM')} MiB")
    # B gains room y (the link sends SUBSCRIBE at its next look), then the stalled reader goes.
    y = ws_connect(ports[1], "y")
    time.sleep(0.3)
    stalled.close()
    time.sleep(3)
    print(f"  after SUBSCRIBE y and the stalled reader's close: B RSS {status(b.pid, 'VmRSS')} MiB, "
          f"peak {status(b.pid, 'VmHWM')} MiB; messages in {metric(ports[1], 'ringcast_broker_messages_in_total'):.0f}, "
          f"subscribe reconnects {metric(ports[1], 'ringcast_broker_reconnects_total'):.0f}")
finally:
    for p in (a, b, redis):
        p.terminate()
        p.wait()
