#!/usr/bin/env python3
"""A recovery storm against ringcast: CLIENTS subscribers of one room, all away while BEHIND
messages are published, then all reconnecting at once with ?since= their last position.

Usage: scripts/recovery_storm.py BINARY [--clients 5000] [--behind 1000] [--cores 1]
                                 [--port 8098] [--server-cpu 1]

Prints: how many were told `recovered` (and anything else), whether each got exactly the
BEHIND missed messages in order (no gap, no duplicate), the time from each reconnect's TCP
connect to its first replayed message (p50/p99/max), and the server's RSS before the storm,
at its peak and after. Loopback only; the server is started and stopped here.
"""

import argparse
import asyncio
import json
import resource
import socket
import subprocess
import time

from ws_client import connect, frame, read_frame

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def storm(args, server):
    port = args.port
    # Where the room stands: a watcher that asks for it.
    reader, writer = await connect(port, "/ws/storm?since=")
    _, notice = await read_frame(reader)
    position = json.loads(notice)
    epoch, offset = position["epoch"], position["offset"]
    writer.close()
    _, publisher = await connect(port, "/ws/storm")
    for i in range(args.behind):
        publisher.write(frame(0x1, f"{i:08d}".encode()))
    await publisher.drain()
    await asyncio.sleep(1)
    before = rss_kib(server.pid)
    peak = before
    outcomes, intact, firsts = {}, 0, []
    gate = asyncio.Event()

    async def client():
        nonlocal intact
        await gate.wait()
        started = time.monotonic()
        reader, writer = await connect(port, f"/ws/storm?since={epoch}:{offset}")
        _, notice = await read_frame(reader)
        said = json.loads(notice)["ringcast"]
        outcomes[said] = outcomes.get(said, 0) + 1
        expected = 0
        while expected < args.behind:
            _, payload = await read_frame(reader)
            if expected == 0:
                firsts.append(time.monotonic() - started)
            if payload != f"{expected:08d}".encode():
                break
            expected += 1
        intact += expected == args.behind
        writer.close()

    async def sample():
        nonlocal peak
        while not gate.is_set() or len(firsts) < args.clients:
            peak = max(peak, rss_kib(server.pid))
            await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(client()) for _ in range(args.clients)]
    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 600)
    elapsed = time.monotonic() - started
    sampler.cancel()
    await asyncio.sleep(1)
    after = rss_kib(server.pid)
    firsts.sort()
    pick = lambda q: firsts[min(len(firsts) - 1, int(q * len(firsts)))] * 1000 if firsts else float("nan")
    print(
        f"storm: {args.clients} clients {args.behind} behind, --cores {args.cores}: "
        f"first messages {outcomes}; {intact} got all {args.behind} in order; "
        f"first replayed p50 {pick(0.5):.0f} ms, p99 {pick(0.99):.0f} ms, max {pick(1.0):.0f} ms; "
        f"storm over in {elapsed:.1f} s; server RSS {before / 1024:.1f} -> peak "
        f"{peak / 1024:.1f} -> {after / 1024:.1f} MiB"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--behind", type=int, default=1000)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--port", type=int, default=8098)
    parser.add_argument("--server-cpu", default="1")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = subprocess.Popen(
        ["taskset", "-c", args.server_cpu, args.binary, "--listen", f"127.0.0.1:{args.port}",
         "--cores", str(args.cores)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", args.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        asyncio.run(storm(args, server))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
