"""Logging: structlog JSON (or console) lines, with a redaction processor for secrets and PII.

Standard-library loggers (uvicorn's among them) go through the same redaction and renderer,
so no line leaves the process unmasked.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO
from urllib.parse import unquote

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

# Every pattern runs in time linear in the text: a log line may carry what a stranger sent.
# An address may only start where a run of local-part characters starts (the look-behind):
# a match starting later in the run would reach the same `@` and the same domain, and trying
# each start again would be quadratic in the run's length. The URL delimiters `/ ? = &` are
# left out of the local part, so a logged path or query keeps its shape around the mask.
_LOCAL = r"A-Za-z0-9.!#$%'*+^_`{|}~-"
EMAIL = re.compile(rf"(?<![{_LOCAL}])[{_LOCAL}]++@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)+")
# An auth scheme and its credentials, or a credential-named key and its value (`token=…`,
# `"access_token": "…"`, `X-Yotpo-Token: …`).
CREDENTIAL = re.compile(
    r"(?i)(\b(?:bearer|basic)\s+|(?:token|secret|password|passwd|api[_-]?key|signature)[\"']?\s*[:=]\s*[\"']?)"
    r"[A-Za-z0-9._~+/=:-]{4,}"
)
PHONE = re.compile(
    r"\+\d[\d\s().-]{7,}\d"  # international, E.164 and written forms
    r"|(?<![\w.-])\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?![\w-])"  # North American national form
)
# A run of URL characters holding a percent escape (`jane.doe%40example.com`, `%2B1%20415…`):
# it is decoded, and masked whole if the decoded text holds anything sensitive. It starts
# only where a run starts, for the same reason as EMAIL's look-behind.
PERCENT_ENCODED = re.compile(r"(?<![^\s\"'<>])[^\s\"'<>]*?%[0-9A-Fa-f]{2}[^\s\"'<>]*+")
# Keys whose value is a credential whatever it looks like.
SECRET_KEY = re.compile(r"(?i)(authorization|password|passwd|secret|token|api[_-]?key|cookie|signature)$")
MASK = "***"
# Characters of a request field (path, query, header) a log line keeps; the rest is cut.
MAX_LOGGED_FIELD = 1024

_level = logging.INFO  # what configure_logging set, for callers that skip building a line


def info_enabled() -> bool:
    """Whether info lines are written; a hot path checks this before building one."""
    return _level <= logging.INFO


def clip(text: str, limit: int = MAX_LOGGED_FIELD) -> str:
    """``text`` cut to ``limit`` characters for a log line, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text) - limit} more characters)"


class Redactor:
    """Masks e-mail addresses, phone numbers, credentials and configured secrets anywhere."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, _logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
        return self.redact_mapping(event_dict)

    def redact(self, value: Any) -> Any:
        """A copy of ``value`` with every sensitive substring masked (recursing into containers)."""
        if isinstance(value, str):
            return self.redact_text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            return self.redact_mapping(value)
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact(item) for item in value]
        if isinstance(value, BaseException):
            return self.redact_text(f"{type(value).__name__}: {value}")
        if isinstance(value, bytes | bytearray):
            return self.redact_text(bytes(value).decode("utf-8", "replace"))
        return self.redact_text(str(value))  # what the renderer would print, masked first

    def redact_mapping(self, mapping: Mapping[Any, Any]) -> dict[Any, Any]:
        """``redact`` for a dict: keys too, and the whole value of a credential-named key."""
        out: dict[Any, Any] = {}
        for key, item in mapping.items():
            name = self.redact_text(key) if isinstance(key, str) else key
            if isinstance(key, str) and isinstance(item, str) and item and SECRET_KEY.search(key):
                out[name] = MASK
            else:
                out[name] = self.redact(item)
        return out

    def redact_text(self, text: str) -> str:
        if "%" in text:
            text = PERCENT_ENCODED.sub(self._redact_encoded, text)
        return self._redact_plain(text)

    def _redact_plain(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if "@" in text:
            text = EMAIL.sub(MASK, text)
        text = CREDENTIAL.sub(lambda m: f"{m.group(1)}{MASK}", text)
        return PHONE.sub(MASK, text)

    def _redact_encoded(self, found: re.Match[str]) -> str:
        """A percent-encoded run as it was, or decoded and masked if it hides something."""
        decoded = unquote(found.group())
        masked = self._redact_plain(decoded)
        return found.group() if masked == decoded else masked


def configure_logging(
    level: str = "info",
    fmt: str = "json",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Set up structlog, and the standard library's root logger, for the whole process; call
    once at start-up (and in tests)."""
    out = stream or sys.stderr
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    global _level
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    _level = numeric_level
    redactor = Redactor(secrets)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, redactor, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redactor,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric_level)
    # httpx logs every request's full URL at info; a read-back's or an erasure's query names a
    # person's identifier, which the redactor may not know. ``upstream_call`` logs each call.
    logging.getLogger("httpx").setLevel(max(numeric_level, logging.WARNING))
