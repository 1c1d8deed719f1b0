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


def ext(kind, body):
    return struct.pack(">HH", kind, len(body)) + body


def vec16(body):
    return struct.pack(">H", len(body)) + body


def vec8(body):
    return bytes([len(body)]) + body


def client_hello(version=0x0303, tls13=True, alpn=(b"http/1.1",), sni=b"localhost", cut=None):
    """A ClientHello record, fixed bytes (zero random, a constant X25519 share): the server
    answers it with its ServerHello; `cut` keeps only that many bytes of the record."""
    suites = [0x1301, 0x1302, 0x1303] if tls13 else []
    suites += [0xC02B, 0xC02C, 0xCCA9]
    exts = b""
    if sni is not None:
        exts += ext(0, vec16(b"\x00" + vec16(sni)))
    exts += ext(10, vec16(struct.pack(">HH", 0x001D, 0x0017)))  # x25519, secp256r1
    exts += ext(11, vec8(b"\x00"))  # uncompressed points
    exts += ext(13, vec16(struct.pack(">HHH", 0x0403, 0x0804, 0x0401)))
    exts += ext(23, b"")  # extended master secret
    exts += ext(65281, b"\x00")  # renegotiation_info
    if alpn:
        exts += ext(16, vec16(b"".join(vec8(p) for p in alpn)))
    if tls13:
        exts += ext(43, vec8(struct.pack(">HH", 0x0304, 0x0303)))
        exts += ext(45, vec8(b"\x01"))  # psk_dhe_ke
        exts += ext(51, vec16(struct.pack(">HH", 0x001D, 32) + bytes([9]) + bytes(31)))
    body = struct.pack(">H", version) + bytes(32) + vec8(bytes(32) if tls13 else b"")
    body += vec16(b"".join(struct.pack(">H", c) for c in suites)) + vec8(b"\x00")
    if version > 0x0300:
        body += vec16(exts)
    handshake = b"\x01" + struct.pack(">I", len(body))[1:] + body
    record = b"\x16" + struct.pack(">HH", min(version, 0x0301), len(handshake)) + handshake
    return record if cut is None else record[:cut]


# Records written raw into a TLS stream (tls_upgrade kinds 2 and 3): not encrypted with the
# session's keys, so each is an error the server must close on.
RECORDS = {
    "app-data-bad-tag": b"\x17\x03\x03\x00\x20" + bytes(range(32)),
    "plain-alert": b"\x15\x03\x03\x00\x02\x01\x00",
    "ccs": b"\x14\x03\x03\x00\x01\x01",
    "oversize-record": b"\x17\x03\x03\xff\xff" + bytes(64),
    "unknown-type": b"\x63\x03\x03\x00\x01\x00",
    "hello-again": client_hello(),
    "cut-header": b"\x17\x03",
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

    # tls_upgrade, byte 0: kind (bits 0-1: 0 raw, 1 through TLS, 2 head through TLS then raw,
    # 3 raw after the handshake), TLS 1.2 (bit 2), wait for the head (bit 3), abrupt (bit 4),
    # reset (bit 5), ALPN offer (bits 6-7: none, http/1.1, h2, h2 + http/1.1).
    raw = {
        "hello-tls13": client_hello(),
        "hello-tls12": client_hello(tls13=False),
        "hello-tls10": client_hello(version=0x0301, tls13=False, alpn=()),
        "hello-ssl3": client_hello(version=0x0300, tls13=False, alpn=()),
        "hello-h2-only": client_hello(alpn=(b"h2",)),
        "hello-no-sni": client_hello(sni=None),
        "hello-truncated": client_hello(cut=60),
        "hello-header-only": client_hello(cut=5),
        "plain-http": HTTP_ONLY["healthz"],
        "plain-upgrade": UPGRADE,
    } | {f"record-{name}": record for name, record in RECORDS.items()}
    for name, data in raw.items():
        write("tls_upgrade", f"raw-{name}", b"\x00" + data)
    write("tls_upgrade", "raw-split-hello", b"\x08" + client_hello())
    write("tls_upgrade", "raw-abrupt-hello", b"\x10" + client_hello(cut=100))
    write("tls_upgrade", "raw-reset-hello", b"\x30" + client_hello())
    for name in ["text", "ping-pong", "close-reason", "fragmented-text", "utf8-invalid",
                 "len64-oversize", "unmasked", "text-then-close", "masked-fragments"]:
        write("tls_upgrade", f"upgrade-{name}", b"\x41" + UPGRADE + STREAMS[name])
        write("tls_upgrade", f"upgrade-after-101-{name}", b"\x49" + UPGRADE + STREAMS[name])
    write("tls_upgrade", "upgrade-tls12", b"\x4d" + UPGRADE + STREAMS["text-then-close"])
    write("tls_upgrade", "upgrade-no-alpn", b"\x09" + UPGRADE + STREAMS["ping-pong"])
    write("tls_upgrade", "upgrade-h2-http11", b"\xc9" + UPGRADE + STREAMS["text"])
    write("tls_upgrade", "upgrade-h2-only", b"\x81" + UPGRADE)
    write("tls_upgrade", "upgrade-abrupt", b"\x59" + UPGRADE + STREAMS["len16"])
    write("tls_upgrade", "upgrade-reset", b"\x79" + UPGRADE + STREAMS["len16"])
    for name in ["healthz", "metrics", "pipelined", "bad-origin", "chunked-body", "partial-head"]:
        write("tls_upgrade", name, b"\x41" + HTTP_ONLY[name])
    for name, record in RECORDS.items():
        # After the 101 (the WebSocket phase's reader) and in the HTTP phase (hyper's adapter).
        write("tls_upgrade", f"inject-after-101-{name}", b"\x4a" + UPGRADE + record)
        write("tls_upgrade", f"inject-http-{name}", b"\x43" + record)
    write("tls_upgrade", "inject-after-101-tls12", b"\x4e" + UPGRADE + RECORDS["app-data-bad-tag"])
    write("tls_upgrade", "inject-with-request", b"\x42" + UPGRADE + RECORDS["ccs"])


if __name__ == "__main__":
    main()
