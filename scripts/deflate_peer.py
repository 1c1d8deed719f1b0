#!/usr/bin/env python3
"""A broadcast server with permessage-deflate, built on Python `websockets` (pip), that is not
ringcast: the independent peer loadgen's --deflate is checked against
(scripts/check-loadgen-deflate.sh). Every message a client sends goes to every client of the
same path, the sender included, as ringcast's rooms do.

    python3 scripts/deflate_peer.py [--port 0] [--no-deflate]

Prints `port N` once it listens. websockets accepts the client's server_no_context_takeover
and client_no_context_takeover and compresses each message for each connection.
"""
import argparse
import asyncio
import collections

import websockets
from websockets.asyncio.server import broadcast, serve


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-deflate", action="store_true", help="decline the extension")
    args = parser.parse_args()
    rooms: dict[str, set] = collections.defaultdict(set)

    async def handler(connection) -> None:
        room = rooms[connection.request.path]
        room.add(connection)
        try:
            async for message in connection:
                broadcast(room, message)
        except websockets.ConnectionClosed:
            pass
        finally:
            room.discard(connection)

    compression = None if args.no_deflate else "deflate"
    async with serve(handler, "127.0.0.1", args.port, compression=compression,
                     max_size=None, max_queue=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"port {port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
