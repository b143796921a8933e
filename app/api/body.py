"""Reading request bodies with a size limit enforced while streaming."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Receive

from app.problems import Problem


async def read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The whole body from ASGI ``receive``, or ``payload_too_large`` as soon as it is known
    to exceed ``limit`` (from the declared Content-Length, or while it streams)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Problem("invalid_request", "The client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_limited_body(request: Request, limit: int) -> bytes:
    """``read_body`` for a Starlette request (the body not yet read)."""
    declared = request.headers.get("content-length")
    return await read_body(request.receive, declared.encode() if declared is not None else None, limit)


def _too_large(limit: int) -> Problem:
    return Problem("payload_too_large", f"Body is larger than RELAY_MAX_BODY_BYTES ({limit} bytes)")
