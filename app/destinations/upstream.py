"""Shared handling of upstream HTTP answers: Retry-After, trimmed bodies, scrubbed secrets."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

MAX_BODY_CHARS = 2000
MAX_STRING_CHARS = 500


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


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
