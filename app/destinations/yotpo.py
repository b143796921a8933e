"""Yotpo custom customer events (Core API): token auth, pre-send rules, response classes.

Facts behind each rule and error shape: ``shared/reference/yotpo.md``. The endpoint's method and
path are settings (``YOTPO_EVENTS_METHOD``, ``YOTPO_EVENTS_PATH``): no published copy shows them.

Auth: a pre-issued token (``YOTPO_ACCESS_TOKEN``, formerly ``YOTPO_API_KEY``) is used as is;
otherwise a token is obtained with ``POST {token_path}`` ``{"secret": ...}`` and cached. On a
401/403 from an events call the token is fetched again once (when a secret is configured) and
the call re-sent.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import structlog

from app.destinations.base import Delivered, Kind, OutboundRequest, Violation
from app.destinations.timestamps import RFC3339_RULE, is_rfc3339
from app.destinations.upstream import (
    code_for_status,
    decode_body,
    exchange,
    int_header,
    json_client,
    parse_retry_after,
    trim_body,
)
from app.problems import Problem
from app.settings import ConfigError, Settings
from app.urls import check_base_url, path_segment

log = structlog.get_logger("app.destinations.yotpo")

NAME = "yotpo"
DEFAULT_BASE_URL = "https://api.yotpo.com"
NAME_MAX = 255
DEFAULT_RETRY_AFTER = 1.0  # Yotpo's guidelines: back off 1 s on 429
# Public code says a token lasts 14 days (UNCERTAIN): refresh well before that.
DEFAULT_TOKEN_MAX_AGE = 12 * 3600.0
ENDPOINTS = ("custom_events",)
TOP_LEVEL_KEYS = ("type", "source", "timestamp", "id", "customer", "properties")

# The namespace of the default event ids: uuid5(NAMESPACE_URL, "urn:aep-relay:yotpo:event-id").
# Fixed here, so an event gets the same id from every version and replica of the relay.
EVENT_ID_NAMESPACE = uuid.UUID("489c7d1d-df33-5f75-9987-794a04e1cb58")

SNAKE_CASE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # fullmatch: `$` would let a trailing newline by


@dataclass(frozen=True)
class YotpoConfig:
    """Where and how to reach one Yotpo store."""

    base_url: str
    store_id: str | None
    access_token: str | None  # a pre-issued access token, used as is
    secret: str | None  # the API secret that obtains tokens
    events_method: str
    events_path: str
    token_path: str
    connect_timeout: float
    read_timeout: float
    rate_limit_per_minute: int
    rate_limit_per_second: float

    @classmethod
    def from_settings(cls, settings: Settings) -> YotpoConfig:
        base_url = check_base_url((settings.yotpo_base_url or DEFAULT_BASE_URL).rstrip("/"), "YOTPO_BASE_URL")
        for setting, path in (
            ("YOTPO_EVENTS_PATH", settings.yotpo_events_path),
            ("YOTPO_TOKEN_PATH", settings.yotpo_token_path),
        ):
            if not path.startswith("/"):
                raise ConfigError(f"{setting} must be a path starting with '/': {path!r}")
        return cls(
            base_url=base_url,
            store_id=settings.yotpo_store_id or None,
            access_token=_access_token(settings),
            secret=settings.yotpo_secret.get_secret_value() if settings.yotpo_secret else None,
            events_method=settings.yotpo_events_method.upper(),
            events_path=settings.yotpo_events_path,
            token_path=settings.yotpo_token_path,
            connect_timeout=settings.yotpo_connect_timeout,
            read_timeout=settings.yotpo_read_timeout,
            rate_limit_per_minute=settings.yotpo_rate_limit_per_minute,
            rate_limit_per_second=settings.yotpo_rate_limit_per_second,
        )

    @property
    def has_credentials(self) -> bool:
        return self.store_id is not None and (self.access_token is not None or self.secret is not None)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.access_token, self.secret) if s)

    def store_path(self, template: str) -> str:
        """A path template with the (escaped) store id filled in."""
        if self.store_id is None:
            return template
        return template.replace("{store_id}", path_segment(self.store_id))


def _access_token(settings: Settings) -> str | None:
    """``YOTPO_ACCESS_TOKEN``, else its deprecated name ``YOTPO_API_KEY`` (a misleading name:
    Yotpo calls the store id its "app_key", and a key put there was sent as the token)."""
    token = settings.yotpo_access_token or settings.yotpo_api_key
    return token.get_secret_value() if token else None


class YotpoDestination:
    """Delivers rendered bodies to Yotpo's "create or update custom customer event"."""

    name: str = NAME
    endpoints: tuple[str, ...] = ENDPOINTS

    def __init__(
        self,
        config: YotpoConfig,
        *,
        dry_run: bool,
        token_max_age: float = DEFAULT_TOKEN_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.dry_run = dry_run
        self.rate_limit_per_minute = config.rate_limit_per_minute
        self.rate_limit_per_second: float | None = config.rate_limit_per_second
        self.account = f"yotpo:{config.base_url}:{config.store_id}"
        self.token_max_age = token_max_age
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        # A pre-issued token never expires by age here; only a 401/403 replaces it (with a secret).
        self._token: str | None = config.access_token
        self._token_obtained_at: float | None = None
        self._old_tokens: list[str] = []  # masked in problem documents too
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> httpx.AsyncClient:
        """The pooled client, created on first use so planning-only uses open no sockets."""
        if self._client is None:
            self._client = json_client(
                self.config.base_url,
                connect_timeout=self.config.connect_timeout,
                read_timeout=self.config.read_timeout,
            )
        return self._client

    def _token_lock(self) -> asyncio.Lock:
        """One lock per event loop, so concurrent sends obtain a token once."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        return self._lock

    def _secrets(self) -> tuple[str, ...]:
        tokens = (self._token,) if self._token else ()
        return self.config.secrets + tokens + tuple(self._old_tokens)

    def prepare(
        self, body: Any, endpoint: str | None, params: dict[str, Any]
    ) -> tuple[OutboundRequest, list[Violation]]:
        """Fill ``timestamp`` and ``id`` when missing, build the request, check every rule."""
        path = self.config.store_path(self.config.events_path)
        method = self.config.events_method
        violations: list[Violation] = []
        if endpoint not in (None, *ENDPOINTS):
            violations.append(Violation("", f"unknown Yotpo endpoint {endpoint!r}"))
        if not isinstance(body, dict):
            violations.append(Violation("", "body must be an object (a Yotpo custom event)"))
            return OutboundRequest(method, path, body), violations
        body = with_defaults(body, params)
        violations.extend(validate_body(body))
        return OutboundRequest(method, path, body), violations

    def stamp(self, request: OutboundRequest, received_at: float) -> OutboundRequest:
        """Nothing to fix at ingest: the event's ``id`` makes a resend an update, not a copy."""
        return request

    async def send(self, request: OutboundRequest) -> Delivered:
        """Send one event; ``Delivered`` on 2xx, else a normalised ``Problem``.

        A 401/403 makes one fresh token call and one re-send (when a secret is configured).
        """
        token = await self._current_token()
        response = await self._call_events(request, token)
        if response.status_code in (401, 403) and self.config.secret:
            token = await self._current_token(stale=token)
            response = await self._call_events(request, token)
        return classify_response(
            response.status_code, response.headers, response.content, secrets=self._secrets()
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _current_token(self, stale: str | None = None) -> str:
        """The cached token, or a new one when there is none, it is ``stale`` or too old."""
        usable = self._usable_token(stale)
        if usable is not None:
            return usable
        async with self._token_lock():
            usable = self._usable_token(stale)  # another send may have refreshed it while we waited
            if usable is not None:
                return usable
            if not self.config.secret:
                raise Problem(
                    "destination_auth_failed",
                    "Yotpo: no usable access token and no YOTPO_SECRET to obtain one",
                    destination=NAME,
                )
            token = await self._fetch_token(self.config.secret)
            if self._token and self._token != token:
                self._old_tokens = [self._token, *self._old_tokens][:4]
            self._token = token
            self._token_obtained_at = self._clock()
            return token

    def _usable_token(self, stale: str | None) -> str | None:
        """The cached token unless there is none, it is ``stale`` or too old."""
        if self._token is None or self._token == stale:
            return None
        if self._token_obtained_at is None:  # pre-issued: no known age
            return self._token
        fresh = self._clock() - self._token_obtained_at < self.token_max_age
        return self._token if fresh else None

    async def _fetch_token(self, secret: str) -> str:
        """``POST {token_path}`` with the secret; ``Problem`` when no token comes back."""
        request = OutboundRequest("POST", self.config.store_path(self.config.token_path), {"secret": "***"})  # nosec B105 - the mask logged in place of the secret
        response = await exchange(
            self._http(),
            request,
            destination=NAME,
            label="Yotpo (access token)",
            request_id_header="x-request-id",
            content=orjson.dumps({"secret": secret}),
        )
        request_id = response.headers.get("x-request-id")
        body = decode_body(response.content)
        token = body.get("access_token") if isinstance(body, dict) else None
        if 200 <= response.status_code < 300 and isinstance(token, str) and token:
            log.info("yotpo_token_obtained", destination=NAME, store_id=self.config.store_id)
            return token
        status = response.status_code
        # Throttling and outages are transient: classify them like an events call (retryable).
        # Anything else means the secret or store id is wrong.
        code = code_for_status(status) if status == 429 or status >= 500 else "destination_auth_failed"
        secrets = self.config.secrets + ((token,) if isinstance(token, str) and token else ())
        message = error_message(body) or (
            f"HTTP {status}" if status >= 300 else "token response has no access_token"
        )
        rate_limit, rate_remaining = _rate_headers(response.headers)
        raise Problem(
            code,
            f"Yotpo: could not obtain an access token: {_masked(message, secrets)}",
            retry_after=_retry_after(code, response.headers),
            rate_limit=rate_limit,
            rate_remaining=rate_remaining,
            destination=NAME,
            upstream={
                "status": status,
                "request_id": request_id,
                "body": trim_body(body, secrets),
            },
        )

    async def _call_events(self, request: OutboundRequest, token: str) -> httpx.Response:
        return await exchange(
            self._http(),
            request,
            destination=NAME,
            label="Yotpo",
            request_id_header="x-request-id",
            content=orjson.dumps(request.body),
            headers={"X-Yotpo-Token": token},
        )


def now_timestamp() -> str:
    """Now as ISO-8601 UTC with milliseconds and a ``Z`` suffix."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def default_event_id(mapping: str, event_id: str) -> str:
    """The default Yotpo ``id``: a UUIDv5 of the mapping's name and the event id.

    Yotpo overrides an event whose ``id`` it already has, so two mappings rendering the same
    Adobe event (``order_completed`` and ``order_paid``) need two ids; the same pair always
    gives the same id, so a retry or a re-sent event updates its own event at Yotpo. The name
    is the UUIDv5 of the compact JSON array ``["<mapping>","<event id>"]``, unambiguous
    whatever either holds.
    """
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, orjson.dumps([mapping, event_id]).decode()))


def with_defaults(body: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``body`` with ``timestamp`` (now) and ``id`` when missing.

    ``id`` defaults to :func:`default_event_id` of ``params["mapping"]`` and
    ``params["event_id"]`` (none without an event id). Given values are never changed.
    ``prepare`` runs at ingest and the prepared body is stored, so a retry or a replay sends
    the same timestamp and id.
    """
    body = dict(body)
    if body.get("timestamp") is None:
        body["timestamp"] = now_timestamp()
    event_id, mapping = params.get("event_id"), params.get("mapping")
    if body.get("id") is None and isinstance(event_id, str | int) and not isinstance(event_id, bool):
        body["id"] = default_event_id(mapping if isinstance(mapping, str) else "", str(event_id))
    return body


def classify_response(
    status: int,
    headers: httpx.Headers | dict[str, str],
    raw: bytes,
    *,
    secrets: tuple[str, ...] = (),
) -> Delivered:
    """Turn a Yotpo answer into ``Delivered`` or raise the matching ``Problem``."""
    headers = httpx.Headers(headers)
    body = decode_body(raw)
    request_id = headers.get("x-request-id")
    rate_limit, rate_remaining = _rate_headers(headers)  # on any answer that carries them
    if 200 <= status < 300:
        event_id = _response_id(body)
        return Delivered(
            status=status,
            request_id=request_id,
            response={"id": event_id} if event_id else {},
            rate_limit=rate_limit,
            rate_remaining=rate_remaining,
        )
    code = code_for_status(status)
    raise Problem(
        code,
        f"Yotpo: {_masked(error_message(body), secrets) or f'HTTP {status}'}",
        retry_after=_retry_after(code, headers),
        rate_limit=rate_limit,
        rate_remaining=rate_remaining,
        destination=NAME,
        upstream={
            "status": status,
            "request_id": request_id,
            "body": trim_body(body, secrets),
        },
    )


def _rate_headers(headers: httpx.Headers) -> tuple[int | None, int | None]:
    """``RateLimit-Limit`` and ``RateLimit-Remaining`` per minute, None when absent.

    Yotpo's limits are per second; the limiter counts per minute."""
    limit = int_header(headers, "ratelimit-limit")
    remaining = int_header(headers, "ratelimit-remaining")
    return (
        limit * 60 if limit is not None else None,
        remaining * 60 if remaining is not None else None,
    )


def _masked(message: str | None, secrets: tuple[str, ...]) -> str | None:
    """The message with every secret replaced by ``***`` (an upstream may echo a token)."""
    masked = trim_body(message, secrets) if message else None
    return masked if isinstance(masked, str) else None


def _retry_after(code: str, headers: httpx.Headers) -> float | None:
    retry_after = parse_retry_after(headers.get("retry-after"))
    if code != "rate_limited":
        return retry_after if code == "destination_unavailable" else None
    if retry_after is None:
        retry_after = parse_retry_after(headers.get("ratelimit-reset"))
    return DEFAULT_RETRY_AFTER if retry_after is None else retry_after


def _response_id(body: Any) -> str | None:
    """The event id in a success body: top-level ``id`` or one level down (shape unknown)."""
    if not isinstance(body, dict):
        return None
    candidates = [body, *(v for v in body.values() if isinstance(v, dict))]
    for candidate in candidates:
        value = candidate.get("id")
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            return str(value)
    return None


def error_message(body: Any) -> str | None:
    """The human message in any of Yotpo's error shapes (reference section 2.5)."""
    if isinstance(body, str):
        return " ".join(body.split())[:300] or None
    if not isinstance(body, dict):
        return None
    status = body.get("status")
    if isinstance(status, dict):
        message = _text(status.get("message"))
        error_type = _text(status.get("error_type"))
        if message or error_type:
            return ": ".join(p for p in (error_type, message) if p)
    errors = body.get("errors")
    if isinstance(errors, list):
        messages = [m for m in (_error_entry(e) for e in errors) if m]
        if messages:
            return "; ".join(messages)
    elif isinstance(errors, dict):
        entry = _error_entry(errors)
        if entry:
            return entry
    error = body.get("error")
    if isinstance(error, str) and error:
        description = _text(body.get("error_description")) or _text(body.get("message"))
        return f"{error}: {description}" if description else error
    if isinstance(error, dict):
        entry = _error_entry(error)
        if entry:
            return entry
    return _text(body.get("message"))


def _error_entry(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry or None
    if not isinstance(entry, dict):
        return None
    message = _text(entry.get("message")) or _text(entry.get("title")) or _text(entry.get("code"))
    field_name = _text(entry.get("field"))
    if message and field_name:
        return f"{field_name}: {message}"
    return message or field_name


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str | int):
        return str(value) or None
    return None


def validate_body(body: dict[str, Any]) -> list[Violation]:
    """Yotpo's documented rules for a custom customer event, with field paths."""
    violations: list[Violation] = []
    _check_name(body, "type", violations, required=True)
    _check_name(body, "source", violations, required=False)
    if not is_rfc3339(body.get("timestamp")):
        violations.append(Violation("timestamp", f"{RFC3339_RULE} (iso8601(...) in the mapping makes one)"))
    event_id = body.get("id")
    if not isinstance(event_id, str) or not event_id.strip():
        violations.append(
            Violation(
                "id",
                "required, a non-empty string (a UUID is recommended; by default one is made "
                "from the mapping's name and `event_id`, and the same id updates the event)",
            )
        )
    _check_customer(body.get("customer"), "customer" in body, violations)
    if "properties" in body:
        _check_properties(body["properties"], "properties", violations)
    extra = sorted(set(body) - set(TOP_LEVEL_KEYS))
    violations.extend(Violation(key, "unknown top-level key") for key in extra)
    return violations


def _check_name(body: dict[str, Any], key: str, out: list[Violation], *, required: bool) -> None:
    if key not in body and not required:
        return
    value = body.get(key)
    if not isinstance(value, str) or not value:
        hint = "required" if required else "when present"
        out.append(Violation(key, f"{hint}, a non-empty string (snake_case is recommended)"))
    elif len(value) > NAME_MAX:
        out.append(Violation(key, f"at most {NAME_MAX} characters (has {len(value)})"))
    elif not SNAKE_CASE.fullmatch(value):
        # Yotpo's page says the name "should" be snake_case: a recommendation, so sent anyway
        out.append(
            Violation(
                key,
                f"should be snake_case like `order_shipped` (snake_case(...) makes one): {value!r}",
                warning=True,
            )
        )


def _check_customer(customer: Any, present: bool, out: list[Violation]) -> None:
    if not isinstance(customer, dict):
        out.append(
            Violation(
                "customer", "required, an object" if not present or customer is None else "must be an object"
            )
        )
        return
    for key in ("external_id", "email"):
        if key in customer and (not isinstance(customer[key], str) or not customer[key].strip()):
            out.append(Violation(f"customer.{key}", "when present, a non-empty string"))
    phone = customer.get("phone_number")
    if "phone_number" in customer and (not isinstance(phone, str) or not E164.fullmatch(phone)):
        out.append(
            Violation(
                "customer.phone_number",
                "must be E.164 like `+14155550123` (normalise it with e164(...) in the mapping)",
            )
        )
    has_external_id = _given(customer.get("external_id"))
    has_email, has_phone = _given(customer.get("email")), _given(phone)
    if not has_external_id:
        if has_email and has_phone:
            out.append(
                Violation(
                    "customer",
                    "without `external_id`, send exactly one of `email` or `phone_number`, not both",
                )
            )
        elif not has_email and not has_phone:
            out.append(
                Violation(
                    "customer",
                    "identify the customer by `external_id`, or else by exactly one of "
                    "`email` / `phone_number`",
                )
            )
    if "properties" in customer:
        _check_properties(customer["properties"], "customer.properties", out, customer=True)


def _given(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _check_properties(properties: Any, path: str, out: list[Violation], *, customer: bool = False) -> None:
    """Primitive values only; for ``customer.properties`` also no null and no spaces in keys.

    Yotpo's page states the null and key rules for customer properties; of event properties it
    says only that they follow "the same primitive rules", so those two are not applied there.
    """
    if not isinstance(properties, dict):
        out.append(Violation(path, "must be an object of primitive values"))
        return
    for key, value in properties.items():
        key_path = f"{path}.{key}"
        if customer and (not isinstance(key, str) or not key or any(c.isspace() for c in key)):
            out.append(
                Violation(
                    key_path,
                    "keys must not contain spaces; use `_` (underscore_keys(...) in the mapping does it)",
                )
            )
        if value is None:
            if customer:
                message = "null is not supported; omit the key (drop_nulls(...) in the mapping)"
                out.append(Violation(key_path, message))
        elif isinstance(value, dict | list):
            kind = "an object" if isinstance(value, dict) else "a list"
            out.append(Violation(key_path, f"must be a string, boolean or number, not {kind}"))
        elif isinstance(value, float) and not math.isfinite(value):
            out.append(Violation(key_path, "must be a finite number"))
        elif not isinstance(value, str | bool | int | float):
            out.append(Violation(key_path, "must be a string, boolean or number"))


KIND = Kind(
    name=NAME,
    configure=YotpoConfig.from_settings,
    create=YotpoDestination,
    credentials="set YOTPO_STORE_ID and YOTPO_SECRET (or a pre-issued YOTPO_ACCESS_TOKEN)",
)
