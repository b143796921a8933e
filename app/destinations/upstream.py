"""Shared handling of upstream HTTP calls and answers: the call itself, status codes,
Retry-After, trimmed bodies, scrubbed secrets."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import orjson
import structlog

from app import logs
from app.destinations.base import OutboundRequest
from app.problems import Problem

log = structlog.get_logger("app.destinations")

MAX_BODY_CHARS = 2000
MAX_STRING_CHARS = 500


MAX_RETRY_AFTER_SECONDS = 3600.0
"""The longest wait an upstream may ask for: a larger ``Retry-After`` (a misconfigured proxy, a
date far ahead) would otherwise pause a destination, or park a delivery, for days."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` (or ``RateLimit-Reset``) header, delta-seconds or
    an HTTP date, at most ``MAX_RETRY_AFTER_SECONDS``."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER_SECONDS, max(0.0, seconds))


def decode_body(raw: bytes) -> Any:
    """The upstream body as JSON when it parses, else as text."""
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")


def trim_body(body: Any, secrets: Iterable[str] = ()) -> Any:
    """A bounded copy of an upstream body for problem documents, with secrets masked."""
    secret_list = [s for s in secrets if s]
    if isinstance(body, str):
        return _scrub(body[:MAX_BODY_CHARS], secret_list)
    trimmed = _trim(body, secret_list, depth=0)
    if len(orjson.dumps(trimmed)) > MAX_BODY_CHARS:
        return _scrub(orjson.dumps(trimmed).decode()[:MAX_BODY_CHARS], secret_list)
    return trimmed


def _trim(value: Any, secrets: list[str], depth: int) -> Any:
    if depth > 8:
        return "…"
    if isinstance(value, str):
        return _scrub(value[:MAX_STRING_CHARS], secrets)
    if isinstance(value, Mapping):
        return {str(k): _trim(v, secrets, depth + 1) for k, v in list(value.items())[:50]}
    if isinstance(value, list):
        return [_trim(v, secrets, depth + 1) for v in value[:50]]
    return value


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


async def exchange(
    client: httpx.AsyncClient,
    request: OutboundRequest,
    *,
    destination: str,
    label: str,
    request_id_header: str,
    content: bytes,
    headers: dict[str, str] | None = None,
    logged_path: str | None = None,
) -> httpx.Response:
    """One HTTP call to a destination, logged once (``upstream_call``, never the body, and
    ``logged_path`` instead of the path when given);
    timeouts and connection errors raise the retryable ``timeout`` and
    ``destination_unavailable`` problems."""
    started = time.perf_counter()

    def logged(status: int | None, request_id: str | None, error: str | None = None) -> None:
        log.info(
            "upstream_call",
            destination=destination,
            method=request.method,
            path=logs.clip(logged_path or request.path),  # rendered from event data; masked by the redactor
            status=status,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
            upstream_request_id=request_id,
            error=error,
        )

    try:
        response = await client.request(request.method, request.path, content=content, headers=headers)
    except httpx.TimeoutException as exc:
        logged(None, None, type(exc).__name__)
        raise Problem(
            "timeout",
            f"{label} did not answer within the timeout ({type(exc).__name__})",
            destination=destination,
            **unknown_outcome(exc),
        ) from None
    except httpx.TransportError as exc:
        logged(None, None, type(exc).__name__)
        raise Problem(
            "destination_unavailable",
            f"Could not reach {label} ({type(exc).__name__})",
            destination=destination,
            **unknown_outcome(exc),
        ) from None
    logged(response.status_code, response.headers.get(request_id_header))
    return response


NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
"""Failures before a request left: the destination cannot have it."""


def unknown_outcome(exc: httpx.TransportError) -> dict[str, bool]:
    """``outcome_unknown`` for a failure after the request may have been sent (a read timeout,
    a connection lost mid-exchange): the destination may have stored it."""
    return {} if isinstance(exc, NOT_SENT) else {"outcome_unknown": True}


def code_for_status(status: int) -> str:
    """The problem code for a destination's non-2xx status (the same for every API)."""
    if status in (401, 403):
        return "destination_auth_failed"
    if status == 404 or 300 <= status < 400:
        return "destination_not_found"
    if status == 408:
        return "timeout"
    if status == 409:
        return "destination_conflict"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "destination_unavailable"
    return "destination_rejected"


def int_header(headers: httpx.Headers, name: str) -> int | None:
    """A numeric header as an int (``"5"`` or ``"5.0"``), None when absent or not a number."""
    value = headers.get(name)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def json_client(
    base_url: str,
    *,
    connect_timeout: float,
    read_timeout: float,
    headers: dict[str, str] | None = None,
) -> httpx.AsyncClient:
    """The pooled JSON client every destination uses: explicit timeouts, no redirects."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Accept": "application/json", "Content-Type": "application/json", **(headers or {})},
        timeout=httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        ),
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        follow_redirects=False,
    )
