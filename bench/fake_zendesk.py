"""A minimal, fast stand-in for Zendesk for ``bench/ingest.py --deliver``.

Raw asyncio HTTP/1.1 with keep-alive (uvloop when installed): every ``POST`` is answered
``202`` at once with a Zendesk-like body; ``GET /count`` answers how many POSTs it accepted.
No auth, no validation: it exists so the relay's dispatcher does its real work (lease, send
over httpx, record the outcome) without the fake being the bottleneck.

    python bench/fake_zendesk.py --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

ACCEPTED_BODY = b'{"status":"received","profile_id":"01HBENCHPROFILE","user_id":"1"}'
ACCEPTED = (
    b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json; charset=utf-8\r\n"
    b"Content-Length: " + str(len(ACCEPTED_BODY)).encode() + b"\r\n\r\n" + ACCEPTED_BODY
)


class Counter:
    accepted = 0


class FakeZendeskProtocol(asyncio.Protocol):
    """Parses pipelined/keep-alive requests with a Content-Length body; answers each at once."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            lines = head.split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            del self.buffer[:total]
            assert self.transport is not None
            if lines[0].startswith("GET /count"):
                body = str(Counter.accepted).encode()
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
            else:
                Counter.accepted += 1
                self.transport.write(ACCEPTED)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FakeZendeskProtocol, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
