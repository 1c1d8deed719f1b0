"""A minimal asyncio WebSocket client for the probes in scripts/ (hardening_probe.py,
recovery_storm.py): raw frames, so a probe can send what no well-behaved client would."""

import asyncio
import socket
import struct

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def frame(opcode, payload=b""):
    """A masked client frame (mask 0: the payload goes as is)."""
    head = bytes([0x80 | opcode])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    return head + b"\0\0\0\0" + payload


async def read_frame(reader):
    """The next server frame: (opcode, payload)."""
    b0, b1 = await reader.readexactly(2)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0 & 0x0F, await reader.readexactly(length)


async def connect(port, path, rcvbuf=None):
    """Opens a WebSocket to 127.0.0.1:port at `path` (with SO_RCVBUF `rcvbuf` if given) and
    returns (reader, writer) past the 101."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head[:40])
    return reader, writer
