"""Logging (app/logs.py): redaction everywhere, JSON or console lines, levels, stdlib loggers."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import ValidationError

from app.logs import MAX_LOGGED_FIELD, Redactor, clip, configure_logging
from app.settings import Settings

SECRET = "s3cret-value"
LEAKS = ("bob@example.org", "abc.def-123", SECRET, "555-0100", "7946 0958", "tok_live_42", "hunter22")


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    yield buffer
    structlog.reset_defaults()
    logging.getLogger().handlers = []


def assert_clean(text: str) -> None:
    for leaked in LEAKS:
        assert leaked not in text, leaked


def test_every_kind_of_value_is_masked_at_any_depth() -> None:
    redactor = Redactor(secrets=[SECRET])
    event: dict[str, Any] = {
        "event": f"sending for bob@example.org with {SECRET}",
        "nested": {
            "list": ["mail bob@example.org now", {"auth": "Bearer abc.def-123"}],
            "set": {"+1 415 555 0100"},
        },
        "tuple": ("call (415) 555-0100",),
        "bytes": b'{"access_token": "tok_live_42"}',
        "path": Path("/data/bob@example.org.json"),
        "exc": ValueError(f"leaked {SECRET} and +44 20 7946 0958"),
        "bob@example.org": "a key is text too",
        "headers": {"Authorization": "hunter22", "X-Api-Key": "hunter22", "x-relay-signature": "hunter22"},
        "counts": {"queued": 2, "ok": True, "none": None, "ratio": 0.5},
    }
    out = redactor(None, "info", event)
    assert_clean(json.dumps(out))
    assert out["nested"]["list"][1]["auth"] == "Bearer ***"
    assert out["headers"] == {"Authorization": "***", "X-Api-Key": "***", "x-relay-signature": "***"}
    assert out["counts"] == {"queued": 2, "ok": True, "none": None, "ratio": 0.5}  # numbers untouched


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T12:00:00.123Z",
        "order ORD-1001 total 539.97",
        "latency_ms 12.5 status 202",
        "event a1b2c3d4-0000-4000-8000-000000000001",
        "token refresh failed, retrying",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor().redact_text(text) == text


def test_json_lines_with_exception_text_are_masked(stream: io.StringIO) -> None:
    configure_logging("info", "json", secrets=[SECRET], stream=stream)
    log = structlog.get_logger("test")
    try:
        raise RuntimeError(f"upstream said bob@example.org is bad; key {SECRET}")
    except RuntimeError:
        log.exception("send_failed", user={"email": "bob@example.org", "phone": "+1 (415) 555-0100"})
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["event"] == "send_failed" and line["level"] == "error"
    assert "RuntimeError" in line["exception"]
    assert_clean(stream.getvalue())


def test_console_format_is_masked_too(stream: io.StringIO) -> None:
    configure_logging("info", "console", secrets=[SECRET], stream=stream)
    structlog.get_logger("test").info("request", path="/v1/events", who="bob@example.org", key=SECRET)
    text = stream.getvalue()
    assert "request" in text and "/v1/events" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert_clean(text)


@pytest.mark.parametrize(
    ("level", "shown"),
    [("debug", ["d", "i", "w"]), ("info", ["i", "w"]), ("warning", ["w"]), ("error", [])],
)
def test_the_level_filters_lines(stream: io.StringIO, level: str, shown: list[str]) -> None:
    configure_logging(level, "json", stream=stream)
    log = structlog.get_logger("test")
    log.debug("d")
    log.info("i")
    log.warning("w")
    logging.getLogger("stdlib").info("i-stdlib")
    events = [json.loads(text)["event"] for text in stream.getvalue().splitlines()]
    assert [e for e in events if e != "i-stdlib"] == shown
    assert ("i-stdlib" in events) == (level in ("debug", "info"))


def test_standard_library_loggers_are_json_and_masked(stream: io.StringIO) -> None:
    configure_logging("info", "json", secrets=[SECRET], stream=stream)
    logging.getLogger("uvicorn.error").error("bad request from bob@example.org with token=%s", SECRET)
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["logger"] == "uvicorn.error" and line["level"] == "error"
    assert line["event"] == "bad request from *** with token=***"
    assert_clean(stream.getvalue())


def test_log_level_and_format_settings_are_checked() -> None:
    settings = Settings(_env_file=None, relay_log_level="DEBUG", relay_log_format="Console")  # type: ignore[call-arg]
    assert (settings.relay_log_level, settings.relay_log_format) == ("debug", "console")
    for field, value in (("relay_log_level", "loud"), ("relay_log_format", "xml")):
        with pytest.raises(ValidationError, match=field):
            Settings(_env_file=None, **{field: value})  # type: ignore[call-arg]


# A stranger chooses what a log line carries (a path, a header): every pattern must run in
# time linear in it. Each text is built to make a backtracking pattern retry at every start.
HOSTILE: dict[str, Callable[[int], str]] = {
    "address-characters-then-at": lambda n: "GET /" + "a" * n + "@",
    "dotted-then-at": lambda n: "a." * (n // 2) + "@",
    "at-then-domain-without-dot": lambda n: "a@" + "b" * n,
    "many-ats": lambda n: "a@" * (n // 2),
    "percent-escapes": lambda n: "%41" * (n // 3) + "@",
    "percent-at-end": lambda n: "a" * n + "%",
    "plus-then-blanks": lambda n: "+1" + " " * n,
    "credential-then-blanks": lambda n: "token: " + " " * n,
    "bearer-then-blanks": lambda n: "bearer " * (n // 7),
}


def redaction_seconds(text: str) -> float:
    redactor = Redactor(secrets=[SECRET])
    best = float("inf")
    for _ in range(3):  # the best of three: the machine is shared
        started = time.perf_counter()
        redactor.redact_text(text)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("build", HOSTILE.values(), ids=HOSTILE.keys())
def test_redaction_is_linear_in_the_text(build: Callable[[int], str]) -> None:
    small = redaction_seconds(build(32_768))
    assert small < 0.25  # the quadratic e-mail pattern took 0.7 s here (2.9 s at 64 KB)
    large = redaction_seconds(build(327_680))
    assert large < 40 * max(small, 0.0005)  # ten times the text: ~10x linear, ~100x quadratic


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("/api/v2/users/jane.doe%40example.com/events", "/api/v2/users/***/events"),
        ("/v1/customers?email=Jane.Doe%40Example.COM&x=1", "/v1/customers?email=***&x=1"),
        ("/search?query=phone%3A%2B1%20415%20555%200100", "/search?query=phone:***"),
        ("call %2B14155550100 now", "call *** now"),
        ("/api/v2/users/jane.doe@example.com/events", "/api/v2/users/***/events"),
        ("/x?token%3Dtok_live_42", "/x?token=***"),
    ],
)
def test_percent_encoded_addresses_phones_and_credentials_are_masked(text: str, masked: str) -> None:
    assert Redactor().redact_text(text) == masked


@pytest.mark.parametrize("text", ["/a%20b/c%2Fd?q=100%25", "50% off", "%zz", "/users/12345%2F6/events"])
def test_percent_encoded_text_without_anything_sensitive_is_left_as_it_was(text: str) -> None:
    assert Redactor().redact_text(text) == text


def test_clip_cuts_a_field_and_says_how_much() -> None:
    assert clip("abc", 5) == "abc"
    assert clip("a" * 10, 4) == "aaaa...(6 more characters)"
    assert len(clip("x" * 100_000)) < MAX_LOGGED_FIELD + 40
