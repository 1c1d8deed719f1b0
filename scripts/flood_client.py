#!/usr/bin/env python3
"""A WebSocket client that publishes 64-byte binary messages into a room as fast as TCP lets
it (masked frames, written in 64 KiB bursts) for a number of seconds; prints how many it sent.
Used by scripts/flood.sh. Stdlib only; loopback addresses only."""
import argparse
import base64
import os
import socket
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/ws/flooded")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    sock = socket.create_connection(("127.0.0.1", args.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"handshake refused: {head[:80]!r}")
    # A masked binary frame with an all-zero key: the payload goes as is.
    assert args.size < 126
    frame = bytes([0x82, 0x80 | args.size, 0, 0, 0, 0]) + b"\x5a" * args.size
    burst = frame * (65536 // len(frame))
    per_burst = 65536 // len(frame)
    sent = 0
    deadline = time.monotonic() + args.seconds
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            sock.sendall(burst)
            sent += per_burst
        except socket.timeout:
            continue  # the server is pushing back; keep trying until the deadline
        except OSError as err:
            print(f"flood_client: connection ended after {sent} messages: {err}")
            break
    print(f"flood_client: sent {sent} messages of {args.size} B in {args.seconds:.0f} s")


if __name__ == "__main__":
    main()
