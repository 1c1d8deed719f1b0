import os, subprocess, sys, time
sys.path.insert(0, "/tmp")
from slow_redis import free_port, http_get, metric, ws_connect
binary = sys.argv[1]
rport = free_port()
redis = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(rport), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
time.sleep(0.3)
port = free_port()
node = subprocess.Popen([binary, "--listen", f"127.0.0.1:{port}", "--cores", "1", "--broker", f"redis://127.0.0.1:{rport}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(200):
        try:
            http_get(port, "/healthz"); break
        except OSError:
            time.sleep(0.05)
    c = ws_connect(port, "chat")
    time.sleep(1)
    print("killed:", subprocess.run(["redis-cli", "-p", str(rport), "CLIENT", "KILL", "TYPE", "pubsub"], capture_output=True, text=True).stdout.strip())
    time.sleep(2)
    _, body = http_get(port, "/metrics")
    print([l for l in body.splitlines() if l.startswith("ringcast_broker_reconnects_total")], "readyz", http_get(port, "/readyz")[0])
finally:
    node.terminate(); node.wait(); redis.terminate(); redis.wait()
