#!/usr/bin/env python3
"""Writes the committed seed corpora: fuzz/corpus/<target>/seed-*.

Run from anywhere: `python3 fuzz/seeds.py`. Rewrites the seed-* files only (libFuzzer's own
finds never land in fuzz/corpus; scripts/fuzz.sh gives it a temporary directory for those).
The input layouts are described at the top of each fuzz_targets/*.rs.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
# Most seeds use the all-zero mask key, so payload bytes are plaintext: libFuzzer's comparison
# feedback (close codes, UTF-8 checks) then works on them directly. A few use a real key.
ZERO_MASK = bytes(4)
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def frame(first, payload=b"", mask=ZERO_MASK, masked=True, length=None):
    """A client frame; `length` overrides the encoded payload length (oversize headers)."""
    n = len(payload) if length is None else length
    second = 0x80 if masked else 0
    if n < 126:
        head = bytes([first, second | n])
    elif n < 1 << 16:
        head = bytes([first, second | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, second | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close(code, reason=b""):
    return frame(0x88, struct.pack(">H", code) + reason)


# Frame streams shared by both targets.
STREAMS = {
    "text": frame(0x81, b"hello"),
    "binary": frame(0x82, bytes(range(40))),
    "empty-text": frame(0x81),
    "ping-pong": frame(0x89, b"ping") + frame(0x8A, b"pong"),
    "close-empty": frame(0x88),
    "close-reason": close(1000, "bye \u20ac".encode()),
    "close-bad-code": close(1005),
    "close-one-byte": frame(0x88, b"\x03"),
    "fragmented-text": frame(0x01, b"frag") + frame(0x00, b"men") + frame(0x80, b"ted"),
    "ping-between-fragments": frame(0x01, b"ab") + frame(0x89, b"p") + frame(0x80, b"cd"),
    "utf8-split": frame(0x01, "\u20ac".encode()[:1]) + frame(0x80, "\u20ac".encode()[1:]),
    "utf8-invalid": frame(0x81, b"a\xff"),
    "fragmented-binary": frame(0x02, b"\x00\x01") + frame(0x80, b"\x02"),
    "len16": frame(0x82, b"x" * 300),
    "len64-oversize": frame(0x82, length=1 << 40),
    "len64-top-bit": frame(0x82, length=1 << 63),
    "unmasked": frame(0x81, b"hi", masked=False),
    "rsv1": frame(0xC1, b"hi"),
    "reserved-opcode": frame(0x83, b"hi"),
    "continuation-first": frame(0x80, b"hi"),
    "fragmented-ping": frame(0x09, b"p"),
    "big-control": frame(0x89, b"p" * 126),
    "text-then-close": frame(0x81, b"one") + frame(0x82, b"two") + close(1001, b"done"),
    "masked-text": frame(0x81, "h\u00e9llo".encode(), mask=MASK),
    "masked-fragments": frame(0x01, b"ab", mask=MASK) + frame(0x89, b"p", mask=MASK)
    + frame(0x80, "\u20ac".encode(), mask=MASK),
    "masked-close": frame(0x88, struct.pack(">H", 4000) + b"why", mask=MASK),
}

UPGRADE = (
    b"GET /ws/fuzz HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)

HTTP_ONLY = {
    "healthz": b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "metrics": b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "index": b"GET / HTTP/1.0\r\n\r\n",
    "not-found": b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    "pipelined": b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    "ws-no-upgrade": b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-room": UPGRADE.replace(b"/ws/fuzz", b"/ws/a%20b"),
    "bad-origin": UPGRADE.replace(b"Host: 127.0.0.1\r\n", b"Host: h\r\nOrigin: http://evil\r\n"),
    "same-origin": UPGRADE.replace(b"Host: 127.0.0.1\r\n", b"Host: h\r\nOrigin: http://h\r\n"),
    "bad-version": UPGRADE.replace(b"Version: 13", b"Version: 8"),
    "no-key": UPGRADE.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b""),
    "chunked-body": b"POST /ws HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "partial-head": b"GET /ws/fuzz HTTP/1.1\r\nHost: 127.0",
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}


def write(target, name, data):
    directory = os.path.join(HERE, "corpus", target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"seed-{name}"), "wb") as out:
        out.write(data)


def main():
    for name, stream in STREAMS.items():
        # max_message 65536 (index 7), one read.
        write("client_frames", name, bytes([7, 0]) + stream)
    # Reads of 1, 2, 3... bytes, and a small max_message.
    write("client_frames", "chunked-1-2-3", bytes([7, 3, 0, 1, 2]) + STREAMS["ping-between-fragments"])
    write("client_frames", "chunked-bytewise", bytes([7, 1, 0]) + STREAMS["text-then-close"])
    write("client_frames", "max-message-7", bytes([2, 2, 4, 9]) + STREAMS["fragmented-text"])
    write("client_frames", "max-message-1", bytes([0, 0]) + frame(0x81, b"ab"))

    for name in ["text", "ping-pong", "close-reason", "fragmented-text", "utf8-invalid",
                 "len64-oversize", "unmasked", "text-then-close", "ping-between-fragments",
                 "masked-fragments"]:
        # Mode 0x30 ('0'): frames sent together with the request; 0x31 ('1'): after the 101.
        write("http_upgrade", f"upgrade-{name}", b"0" + UPGRADE + STREAMS[name])
        write("http_upgrade", f"upgrade-after-101-{name}", b"1" + UPGRADE + STREAMS[name])
    write("http_upgrade", "upgrade-only", b"0" + UPGRADE)
    write("http_upgrade", "upgrade-abrupt", b"3" + UPGRADE + STREAMS["text"])
    write("http_upgrade", "upgrade-reset", b"7" + UPGRADE + STREAMS["len16"])
    for name, request in HTTP_ONLY.items():
        write("http_upgrade", name, b"0" + request)


if __name__ == "__main__":
    main()
