import socket, subprocess, sys, re
proc = subprocess.Popen([sys.argv[1], "--listen", "127.0.0.1:0", "--cores", "1", "--io", "epoll"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={"NO_COLOR": "1", "RUST_LOG": "info"})
for line in proc.stderr:
    m = re.search(r"addr=\"?([0-9.]+):(\d+)", line)
    if "listening" in line and m: addr = (m.group(1), int(m.group(2))); break
def ask(ver, key, v="13"):
    s = socket.create_connection(addr); s.settimeout(5)
    s.sendall(f"GET /ws/hs {ver}\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {v}\r\n\r\n".encode())
    d = s.recv(300).decode(errors="replace"); s.close(); return d.split("\r\n")[0] + (" [has Sec-WebSocket-Version]" if "sec-websocket-version" in d.lower() else "")
print("version 8:", ask("HTTP/1.1", "dGhlIHNhbXBsZSBub25jZQ==", "8"))
for k in ["dGhlIHNhbXBsZSBub25jZQ", "c2hvcnQ=", "dGhlIHNhbXBsZSBub25jZSE=", "not base64 at all!!!!!=="]:
    print("key", k, ":", ask("HTTP/1.1", k))
print("HTTP/1.0:", ask("HTTP/1.0", "dGhlIHNhbXBsZSBub25jZQ=="))
proc.kill()
