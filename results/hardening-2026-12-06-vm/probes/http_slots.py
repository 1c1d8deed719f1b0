#!/usr/bin/env python3
"""3 clients pipeline 1000 GET / and never read; how long until a 4th client gets a slot."""
import socket, subprocess, sys, time, re
binary, io, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
cap = 40.0
proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--cores", "2", "--io", io,
    "--max-connections", "3", "--header-timeout", "2s", *extra],
    stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={"NO_COLOR": "1", "RUST_LOG": "info"})
addr = None
for line in proc.stderr:
    m = re.search(r"addr=\"?([0-9.]+):(\d+)", line)
    if "listening" in line and m:
        addr = (m.group(1), int(m.group(2))); break
holders = []
req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 1000
for _ in range(3):
    s = socket.socket(); s.connect(addr); s.setblocking(False)
    sent = 0
    t = time.time()
    while sent < len(req) and time.time() - t < 3:
        try: sent += s.send(req[sent:])
        except BlockingIOError: time.sleep(0.01)
    holders.append(s)
time.sleep(0.5)  # let the server accept the holders first
start = time.time()
first_status = None
while True:
    c = socket.create_connection(addr); c.settimeout(cap)
    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    try:
        data = c.recv(100)
    except socket.timeout:
        data = b"(timeout)"
    c.close()
    status = data.split(b"\r\n")[0].decode(errors="replace")
    if first_status is None: first_status = status
    waited = time.time() - start
    if " 200 " in status:
        print(f"{io} {extra}: 4th client got a slot after {waited:.2f}s (first answer: {first_status})"); break
    if waited > cap:
        print(f"{io} {extra}: no slot after {waited:.1f}s (answers: {status})"); break
    time.sleep(0.2)
proc.kill()
