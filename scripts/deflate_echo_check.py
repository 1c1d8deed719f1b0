#!/usr/bin/env python3
"""Re-checks the Autobahn 12.*/13.* cases kosoku could not judge, with an independent client.

    deflate_echo_check.py INDEX_JSON TESTDATA_DIR URL

kosoku 0.1.0 ends a compression case with ERROR "Strings must be encoded before hashing" as
soon as the server echoes a message uncompressed on a permessage-deflate connection (its
engine hands such a message to the case as str, which the case hashes). RFC 7692 6 lets a
server send any message uncompressed, and ringcast does for messages under
--deflate-min-size and for those that do not shrink (Autobahn's bitmap and PDF). The same
cases pass against a server that compresses every message (scripts/deflate_peer.py).

For each such case this sends the case's first MESSAGES messages (the same slices of the same
test file, as case12_x_x.py's sendOne cuts them) through Python `websockets` with
permessage-deflate negotiated, and checks each echo is the message sent, with its type. Exit 0
when every re-checked case echoes exactly; 1 otherwise (each failure printed).
"""
import asyncio
import json
import sys

from websockets.asyncio.client import connect

RUNNER_ERROR = "Strings must be encoded before hashing"
MESSAGES = 100
# case12_x_x.py: MSG_SIZES (payload length), the test files in WS_COMPRESSION_TESTDATA_KEYS
# order (12.1 ... 12.5) with their "binary" flag; 13.* sends json_data1 in every group.
SIZES = [16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072,
         8192, 16384, 32768, 65536, 131072, 131072, 131072, 131072]
FILES_12 = [("data1.json", False), ("lena512.bmp", True), ("pg2229.txt", True),
            ("data1.html", False), ("10.1.1.105.5439.pdf", True)]


def messages(data: bytes, binary: bool, length: int):
    """The case's messages, as sendOne cuts them from the file (text cut by characters)."""
    payload = data if binary else data.decode("utf-8")
    at = 0
    for _ in range(MESSAGES):
        end = (at + length) % len(payload)
        msg = payload[at:end] if end > at else payload[at:] + payload[:end]
        at = end
        yield msg


async def check(url: str, data: bytes, binary: bool, length: int) -> str | None:
    async with connect(url, compression="deflate", max_size=None) as ws:
        if ws.protocol.extensions == []:
            return "permessage-deflate not negotiated"
        for index, msg in enumerate(messages(data, binary, length)):
            await ws.send(msg)
            echo = await ws.recv()
            if echo != msg:
                return f"message {index + 1}: the echo differs (type or bytes)"
    return None


async def main() -> int:
    index_path, testdata, url = sys.argv[1:4]
    with open(index_path) as f:
        index = json.load(f)
    failures = 0
    checked = 0
    for per_agent in index.values():
        for case_id, entry in sorted(per_agent.items()):
            if entry["behavior"] != "ERROR":
                continue
            with open(f"{sys.argv[1].rsplit('/', 1)[0]}/{entry['reportfile']}") as f:
                if json.load(f).get("result") != RUNNER_ERROR:
                    continue
            section, group, number = (int(part) for part in case_id.split("."))
            name, binary = FILES_12[group - 1] if section == 12 else ("data1.json", False)
            with open(f"{testdata}/{name}", "rb") as f:
                data = f.read()
            problem = await check(url, data, binary, SIZES[number - 1])
            checked += 1
            if problem:
                failures += 1
                print(f"{case_id}: {problem}")
    print(f"re-checked {checked} cases kosoku could not judge: {checked - failures} echoed exactly")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
