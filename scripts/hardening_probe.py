#!/usr/bin/env python3
"""Reproduces issue 18's input findings against a ringcast binary and prints the figures.

Usage: scripts/hardening_probe.py BINARY [ping-flood|empty-flood|control-rate ...]

- ping-flood: 4 clients with 4 KiB receive buffers send 95,000 empty pings each and never
  read (default --max-backlog 1 MiB): RSS growth, queued bytes, slow-consumer closes.
- empty-flood: --cores 1 --fanout-budget 1MiB; room A has 4 readers that never read and a
  client flooding empty messages; room B a publisher at 20 msg/s that reads its own
  messages back: room B's latency (p50, max) over 10 s.
- control-rate: --max-inbound-rate 10; a client sends 200,000 pings, another 20,000
  unsolicited pongs: pongs received and the close code each got.

Loopback only; the server is started on a free port and stopped at the end.
"""

import asyncio
import os
import socket
import struct
import subprocess
import sys
import time

from ws_client import connect, frame, read_frame

def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, binary, args):
        self.port = free_port()
        self.process = subprocess.Popen(
            [binary, "--listen", f"127.0.0.1:{self.port}", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("server did not start")

    def rss_kib(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def metric(self, name):
        with socket.create_connection(("127.0.0.1", self.port)) as conn:
            conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            body = b""
            while chunk := conn.recv(65536):
                body += chunk
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


async def ping_flood(binary):
    server = Server(binary, ["--cores", "1"])
    try:
        baseline = server.rss_kib()
        burst = frame(0x9) * 95_000
        clients = [await connect(server.port, "/ws/pings", rcvbuf=4096) for _ in range(4)]
        for _, writer in clients:
            writer.write(burst)
        await asyncio.sleep(3)
        print(
            f"ping-flood: RSS +{(server.rss_kib() - baseline) / 1024:.1f} MiB, "
            f"queued {server.metric('ringcast_queued_bytes') / 1048576:.2f} MiB, "
            f"slow-consumer closes {server.metric('ringcast_slow_consumer_closes_total'):.0f} of 4"
        )
        for _, writer in clients:
            writer.transport.abort()
    finally:
        server.stop()


async def empty_flood(binary):
    server = Server(binary, ["--cores", "1", "--fanout-budget", "1MiB"])
    try:
        stalled = [await connect(server.port, "/ws/a", rcvbuf=4096) for _ in range(4)]
        _, flooder = await connect(server.port, "/ws/a")
        burst = frame(0x2) * 10_000
        stop = asyncio.Event()

        async def flood():
            while not stop.is_set():
                flooder.write(burst)
                await flooder.drain()

        flooding = asyncio.create_task(flood())
        await asyncio.sleep(1)
        reader, writer = await connect(server.port, "/ws/b")
        latencies = []

        async def receive():
            while True:
                opcode, payload = await read_frame(reader)
                if opcode == 0x1:
                    latencies.append(time.monotonic() - float(payload))

        receiving = asyncio.create_task(receive())
        start = time.monotonic()
        for seq in range(200):
            await asyncio.sleep(max(0, start + seq / 20 - time.monotonic()))
            writer.write(frame(0x1, repr(start + seq / 20).encode()))
        deadline = time.monotonic() + 15
        while len(latencies) < 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        stop.set()
        flooding.cancel()
        receiving.cancel()
        latencies.sort()
        if latencies:
            print(
                f"empty-flood: room B got {len(latencies)} of 200; latency p50 "
                f"{latencies[len(latencies) // 2] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms; "
                f"pauses {server.metric('ringcast_publish_pauses_total'):.0f}, "
                f"messages in {server.metric('ringcast_messages_in_total'):.0f}"
            )
        else:
            print("empty-flood: room B got nothing")
        for _, conn in stalled:
            conn.transport.abort()
        flooder.transport.abort()
        writer.transport.abort()
    finally:
        server.stop()


async def control_rate(binary):
    server = Server(binary, ["--cores", "1", "--max-inbound-rate", "10"])
    try:
        for opcode, count in ((0x9, 200_000), (0xA, 20_000)):
            reader, writer = await connect(server.port, "/ws/rate")
            sent_at = time.monotonic()
            writer.write(frame(opcode, b"x") * count)
            pongs, code = 0, None
            try:
                while True:
                    got, payload = await asyncio.wait_for(read_frame(reader), 5)
                    if got == 0xA:
                        pongs += 1
                    elif got == 0x8:
                        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                        break
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                pass
            name = "pings" if opcode == 0x9 else "unsolicited pongs"
            print(
                f"control-rate: {count} {name}: {pongs} pongs back in "
                f"{time.monotonic() - sent_at:.1f} s, close {code}"
            )
            writer.transport.abort()
    finally:
        server.stop()


PROBES = {"ping-flood": ping_flood, "empty-flood": empty_flood, "control-rate": control_rate}


def main():
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        raise SystemExit(__doc__)
    for name in sys.argv[2:] or PROBES:
        asyncio.run(PROBES[name](sys.argv[1]))


if __name__ == "__main__":
    main()
