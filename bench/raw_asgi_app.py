"""Second baseline for ``bench/ingest.py``: a raw ASGI callable, no framework at all.

``POST /v1/events`` reads the body from ``receive`` (all chunks), parses it with orjson and
answers ``202`` with ``{"status":"accepted"}``; any other request gets an empty ``404``. It
answers the ASGI lifespan protocol so uvicorn starts it quietly. Served by uvicorn with the
same ``uvicorn.run`` arguments as ``bench/bare_app.py`` (those of ``aep-relay serve`` with
uvicorn's own httptools protocol: one worker, no access log, log level warning, no ``server``
header). It is the floor for what uvicorn can
do per request: the gap between it and ``bare_app.py`` is FastAPI/Starlette's own cost.

    python bench/raw_asgi_app.py --port 8082
"""

from __future__ import annotations

import argparse
from typing import Any

import orjson
import uvicorn

PATH = "/v1/events"
ACCEPTED = orjson.dumps({"status": "accepted"})
ACCEPTED_START = {
    "type": "http.response.start",
    "status": 202,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(ACCEPTED)).encode()),
    ],
}
ACCEPTED_BODY = {"type": "http.response.body", "body": ACCEPTED}
NOT_FOUND_START = {"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]}
EMPTY_BODY = {"type": "http.response.body", "body": b""}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The whole server: lifespan, then one route."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] != "POST" or scope["path"] != PATH:
        await send(NOT_FOUND_START)
        await send(EMPTY_BODY)
        return
    message = await receive()
    body = message.get("body", b"")
    if message.get("more_body", False):
        chunks = [body]
        while message.get("more_body", False):
            message = await receive()
            chunks.append(message.get("body", b""))
        body = b"".join(chunks)
    orjson.loads(body)
    await send(ACCEPTED_START)
    await send(ACCEPTED_BODY)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    args = parser.parse_args()
    # the same uvicorn.run arguments as bench/bare_app.py
    uvicorn.run(
        app, host=args.host, port=args.port, access_log=False, log_level="warning", server_header=False
    )


if __name__ == "__main__":
    main()
