import socket, subprocess, sys, re, time, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
binary, n = sys.argv[1], int(sys.argv[2])
proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--cores", "1", "--io", "epoll", "--header-timeout", "300s", "--max-connections", "30000"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={"NO_COLOR": "1", "RUST_LOG": "info"})
for line in proc.stderr:
    m = re.search(r"addr=\"?([0-9.]+):(\d+)", line)
    if "listening" in line and m: addr = (m.group(1), int(m.group(2))); break
idle = [socket.create_connection(addr) for _ in range(n)]
time.sleep(1)
def scrapes(k):
    s = socket.create_connection(addr)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * k)
    got = b""; t = time.perf_counter()
    while got.count(b"HTTP/1.1 200") < k or not got.endswith(b"\n"):
        got += s.recv(1 << 20)
    dt = time.perf_counter() - t
    s.close(); return dt
scrapes(1)
k = 200
dt = scrapes(k)
# healthz latency while another client pipelines scrapes
s = socket.create_connection(addr)
s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * k)
worst = 0
t_end = time.perf_counter() + 2
while time.perf_counter() < t_end:
    h = socket.create_connection(addr); t = time.perf_counter()
    h.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); h.recv(100)
    worst = max(worst, time.perf_counter() - t); h.close(); time.sleep(0.02)
print(f"{binary.split('/')[-1]} with {n} idle connections: {dt/k*1e3:.2f} ms per pipelined /metrics ({k} in {dt:.2f}s); worst /healthz wait during a pipelined scrape burst {worst*1e3:.0f} ms")
proc.kill()
