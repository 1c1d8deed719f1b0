#!/usr/bin/env python3
"""Two ringcast nodes on one Redis reached through a delaying proxy (127.0.0.1 only).

usage: slow_redis.py BINARY MODE [SECONDS]
MODE: subscribe (client->redis chunks containing SUBSCRIBE wait 60 ms) or all (every chunk,
both ways, waits 60 ms). Prints /readyz, ringcast_broker_up, reconnects after SECONDS, and
whether a message crosses from node A to node B.
"""
import base64, os, socket, subprocess, sys, threading, time

DELAY = float(os.environ.get("DELAY_S", "0.06"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pump(src, dst, delay_if):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if delay_if(data):
                time.sleep(DELAY)
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def proxy(listen_port, redis_port, mode):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen_port))
    ls.listen(64)
    up = (lambda d: b"SUBSCRIBE" in d.upper()) if mode == "subscribe" else (lambda d: True)
    down = (lambda d: False) if mode == "subscribe" else (lambda d: True)
    while True:
        c, _ = ls.accept()
        r = socket.create_connection(("127.0.0.1", redis_port))
        for s in (c, r):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=pump, args=(c, r, up), daemon=True).start()
        threading.Thread(target=pump, args=(r, c, down), daemon=True).start()


def http_get(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


def metric(port, name):
    _, body = http_get(port, "/metrics")
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def ws_connect(port, room):
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws/{room} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    assert b" 101 " in data.split(b"\r\n")[0], data
    return s


def ws_send(s, text):
    payload = text.encode()
    mask = os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask
              + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def ws_recv_text(s, timeout):
    s.settimeout(timeout)
    try:
        head = s.recv(2)
        n = head[1] & 0x7F
        data = b""
        while len(data) < n:
            data += s.recv(n - len(data))
        return data.decode()
    except (socket.timeout, IndexError):
        return None


def main():
    binary, mode = sys.argv[1], sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 6
    rport, pport = free_port(), free_port()
    redis = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(rport),
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    threading.Thread(target=proxy, args=(pport, rport, mode), daemon=True).start()
    time.sleep(0.3)
    ports = [free_port(), free_port()]
    nodes = [subprocess.Popen([binary, "--listen", f"127.0.0.1:{p}", "--cores", "1",
                               "--broker", f"redis://127.0.0.1:{pport}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for p in ports]
    try:
        for port in ports:
            deadline = time.time() + 10
            while True:
                try:
                    http_get(port, "/healthz")
                    break
                except OSError:
                    assert time.time() < deadline, "node did not start"
                    time.sleep(0.05)
        a = ws_connect(ports[0], "chat")
        b = ws_connect(ports[1], "chat")
        t0 = time.time()
        time.sleep(seconds)
        for name, port in zip("AB", ports):
            status, _ = http_get(port, "/readyz")
            up = metric(port, "ringcast_broker_up")
            rec = metric(port, "ringcast_broker_reconnects_total")
            print(f"node {name} after {time.time() - t0:.1f} s: /readyz {status}, "
                  f"ringcast_broker_up {up:.0f}, reconnects {rec:.0f}")
            _, body = http_get(port, "/metrics")
            for line in body.splitlines():
                if line.startswith("ringcast_broker_reconnects_total{"):
                    print("   ", line)
        crossed = 0
        for i in range(5):
            ws_send(a, f"m{i}")
            got = None
            while True:
                got = ws_recv_text(b, 2)
                if got is None or got == f"m{i}":
                    break
            crossed += got == f"m{i}"
        print(f"cross-node A->B: {crossed}/5 messages arrived (2 s wait each)")
    finally:
        for n in nodes:
            n.terminate()
            n.wait()
        redis.terminate()
        redis.wait()


if __name__ == "__main__":
    main()
