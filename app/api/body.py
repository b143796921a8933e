"""Reading request bodies with a size limit enforced while streaming."""

from __future__ import annotations

from starlette.requests import Request

from app.problems import Problem


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The whole body, or ``payload_too_large`` as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> Problem:
    return Problem("payload_too_large", f"Body is larger than RELAY_MAX_BODY_BYTES ({limit} bytes)")
