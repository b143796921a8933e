"""Zendesk Events API (Sunshine profiles): URL and auth, pre-send rules, response classes.

Facts behind each rule and error shape: ``shared/reference/zendesk.md``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
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
from app.destinations.zendesk_read import ReadScope, masked_identifier, now_rfc3339, read_scope
from app.problems import Problem
from app.settings import Settings
from app.urls import check_base_url, check_subdomain, path_segment

log = structlog.get_logger("app.destinations.zendesk")

NAME_MAX = 40
MAX_IDENTIFIERS = 20
RESERVED_SOURCE = "zendesk"
CREATED_AT_RULE = f"{RFC3339_RULE} (iso8601(...) in the mapping gives one)"
# Zendesk user ids are integers: its 400 for another says "id must be an integer" (reference 1.6)
USER_ID_RULE = "must be a Zendesk user id, digits only (Zendesk answers 400: id must be an integer)"
DUPLICATE_IDENTIFIER = (
    "repeats an earlier identifier; Adobe's Zendesk extension asks for unique ones "
    "(Zendesk's own pages do not)"
)
UNKNOWN_KEY = "not a field of the Events API body (`event`, `profile`); sent as it is"
DEFAULT_RETRY_AFTER = 10.0  # what Zendesk's own Ruby client assumes when the header is absent

ENDPOINTS = ("events", "profile_events", "user_events")
ENDPOINT_PATHS = {
    "events": "/api/v2/user_profiles/events",
    "profile_events": "/api/v2/user_profiles/{profile_id}/events",
    "user_events": "/api/v2/users/{user_id}/events",
}
# the ids each endpoint's path needs, in the order they are looked up
ENDPOINT_IDS = {
    endpoint: tuple(name for name in ("profile_id", "user_id") if f"{{{name}}}" in path)
    for endpoint, path in ENDPOINT_PATHS.items()
}
TOP_LEVEL_KEYS = frozenset({"event", "profile"})


@dataclass(frozen=True)
class ZendeskConfig:
    """Where and how to reach one Zendesk account."""

    base_url: str | None
    authorization: str | None
    auth_form: str | None  # "oauth" | "api_token" | "password"
    secrets: tuple[str, ...]
    connect_timeout: float
    read_timeout: float
    rate_limit_per_minute: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ZendeskConfig:
        base_url = settings.zendesk_base_url
        if not base_url and settings.zendesk_subdomain:
            subdomain = check_subdomain(settings.zendesk_subdomain, "ZENDESK_SUBDOMAIN")
            base_url = f"https://{subdomain}.zendesk.com"
        if base_url:
            base_url = check_base_url(base_url.rstrip("/"), "ZENDESK_BASE_URL")
        email = settings.zendesk_email
        authorization, form = None, None
        if settings.zendesk_oauth_token:
            authorization = f"Bearer {settings.zendesk_oauth_token.get_secret_value()}"
            form = "oauth"
        elif settings.zendesk_api_token and email:
            authorization = _basic(f"{email}/token:{settings.zendesk_api_token.get_secret_value()}")
            form = "api_token"
        elif settings.zendesk_password and email:
            authorization = _basic(f"{email}:{settings.zendesk_password.get_secret_value()}")
            form = "password"
        secrets = tuple(
            s.get_secret_value()
            for s in (
                settings.zendesk_oauth_token,
                settings.zendesk_api_token,
                settings.zendesk_password,
            )
            if s is not None
        )
        return cls(
            base_url=base_url,
            authorization=authorization,
            auth_form=form,
            secrets=secrets + ((authorization,) if authorization else ()),
            connect_timeout=settings.zendesk_connect_timeout,
            read_timeout=settings.zendesk_read_timeout,
            rate_limit_per_minute=settings.zendesk_rate_limit_per_minute,
        )

    @property
    def has_credentials(self) -> bool:
        return self.base_url is not None and self.authorization is not None


def _basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode("ascii")


class ZendeskDestination:
    """Delivers rendered bodies to the three Events API create endpoints."""

    name: str = "zendesk"
    endpoints: tuple[str, ...] = ENDPOINTS

    def __init__(self, config: ZendeskConfig, *, dry_run: bool) -> None:
        self.config = config
        self.dry_run = dry_run
        self.rate_limit_per_minute = config.rate_limit_per_minute
        self.rate_limit_per_second: float | None = None  # Zendesk limits per minute only
        self.account = f"zendesk:{config.base_url}"
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        """The pooled client, created on first use so planning-only uses open no sockets."""
        if self._client is None:
            auth = {"Authorization": self.config.authorization} if self.config.authorization else {}
            self._client = json_client(
                self.config.base_url or "https://invalid.zendesk.com",
                connect_timeout=self.config.connect_timeout,
                read_timeout=self.config.read_timeout,
                headers=auth,
            )
        return self._client

    def prepare(
        self, body: Any, endpoint: str | None, params: dict[str, Any]
    ) -> tuple[OutboundRequest, list[Violation]]:
        """Choose the endpoint, take its id from params or the body, and check every rule."""
        endpoint = endpoint or ENDPOINTS[0]
        violations: list[Violation] = []
        if not isinstance(body, dict):
            violations.append(Violation("", "body must be an object with `event`"))
            return OutboundRequest("POST", ENDPOINT_PATHS[endpoint], body), violations
        path = ENDPOINT_PATHS[endpoint]
        id_names = ENDPOINT_IDS[endpoint]
        if id_names:
            body = dict(body)  # the id is taken out of the body, not the caller's copy
        for id_name in id_names:
            value, where = _path_id(id_name, params, body)
            if not isinstance(value, str) or not value:
                violations.append(
                    Violation(
                        id_name,
                        f"the {endpoint} endpoint needs a non-empty `{id_name}` "
                        f"(in the body or `endpoint.{id_name}`)",
                    )
                )
                value = f"{{{id_name}}}"
            elif id_name == "user_id" and not (value.isascii() and value.isdigit()):
                violations.append(Violation(where, USER_ID_RULE))
            path = path.replace(f"{{{id_name}}}", path_segment(value))
        violations.extend(validate_body(body, with_profile=endpoint != "profile_events"))
        return OutboundRequest("POST", path, body), violations

    async def send(self, request: OutboundRequest) -> Delivered:
        """POST one event; ``Delivered`` on 2xx, else a normalised ``Problem``."""
        response = await exchange(
            self._http(),
            request,
            destination=self.name,
            label="Zendesk",
            request_id_header="x-zendesk-request-id",
            content=orjson.dumps(request.body),
        )
        return classify_response(
            response.status_code,
            response.headers,
            response.content,
            secrets=self.config.secrets,
        )

    def read_scope(self, request: OutboundRequest) -> ReadScope | None:
        """Where a sent create request's event can be read back (None: it cannot)."""
        return read_scope(request)

    async def read(self, method: str, path: str) -> Delivered:
        """A GET of the read endpoints or a DELETE of a profile (``path`` with its query):
        ``Delivered`` with the decoded body as ``response``, else a ``Problem``."""
        response = await exchange(
            self._http(),
            OutboundRequest(method, path, None),
            destination=self.name,
            label="Zendesk",
            request_id_header="x-zendesk-request-id",
            content=b"",
            logged_path=masked_identifier(path),
        )
        return classify_read(
            response.status_code, response.headers, response.content, secrets=self.config.secrets
        )

    def stamp(self, request: OutboundRequest, received_at: float) -> OutboundRequest:
        """The request with ``event.created_at`` set to the time of ingest when the mapping
        left it out: every attempt then sends the same instant, which a read-back looks for."""
        body = request.body
        event = body.get("event") if isinstance(body, dict) else None
        if not isinstance(event, dict) or event.get("created_at") is not None:
            return request
        stamped = {**body, "event": {**event, "created_at": now_rfc3339(received_at)}}
        return OutboundRequest(request.method, request.path, stamped)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _path_id(id_name: str, params: dict[str, Any], body: dict[str, Any]) -> tuple[Any, str]:
    """An endpoint's path id and where it came from: ``endpoint.<id>``, else the body's top
    level (taken out of the body), else, for ``user_id``, ``profile.user_id``."""
    in_body = body.pop(id_name, None)
    found: list[tuple[Any, str]] = [(params.get(id_name), f"endpoint.{id_name}"), (in_body, id_name)]
    profile = body.get("profile")
    if id_name == "user_id" and isinstance(profile, dict):
        found.append((profile.get("user_id"), "profile.user_id"))
    value, where = next(((v, w) for v, w in found if v is not None), (None, id_name))
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value, where


def classify_response(
    status: int,
    headers: httpx.Headers | dict[str, str],
    raw: bytes,
    *,
    secrets: tuple[str, ...] = (),
) -> Delivered:
    """Turn a Zendesk create answer into ``Delivered`` (with the ids it gave back) or raise the
    matching ``Problem``."""
    return _classify(status, headers, raw, secrets, _created_ids)


def classify_read(
    status: int,
    headers: httpx.Headers | dict[str, str],
    raw: bytes,
    *,
    secrets: tuple[str, ...] = (),
) -> Delivered:
    """A read or delete answer: ``Delivered`` with the decoded body as ``response`` on 2xx
    (``{}`` for a 204), else the matching ``Problem``."""
    return _classify(status, headers, raw, secrets, lambda body: body if isinstance(body, dict) else {})


def _created_ids(body: Any) -> dict[str, Any]:
    return {
        key: str(body[key])
        for key in ("profile_id", "user_id", "status")
        if isinstance(body, dict) and body.get(key) is not None
    }


def _classify(
    status: int,
    headers: httpx.Headers | dict[str, str],
    raw: bytes,
    secrets: tuple[str, ...],
    response_of: Callable[[Any], dict[str, Any]],
) -> Delivered:
    headers = httpx.Headers(headers)
    body = decode_body(raw)
    request_id = headers.get("x-zendesk-request-id")
    # Zendesk sends these on every answer, 429 and 5xx included (reference 1.5)
    rate_limit = int_header(headers, "x-rate-limit")
    rate_remaining = int_header(headers, "x-rate-limit-remaining")
    if 200 <= status < 300:
        return Delivered(
            status=status,
            request_id=request_id,
            response=response_of(body),
            rate_limit=rate_limit,
            rate_remaining=rate_remaining,
        )
    code = code_for_status(status)
    retry_after = parse_retry_after(headers.get("retry-after"))
    if code == "rate_limited" and retry_after is None:
        retry_after = DEFAULT_RETRY_AFTER
    # a 5xx may come after Zendesk stored the event (it creates events synchronously)
    unknown = {"outcome_unknown": True} if status >= 500 else {}
    raise Problem(
        code,
        f"Zendesk: {error_message(body) or f'HTTP {status}'}",
        retry_after=retry_after,
        rate_limit=rate_limit,
        rate_remaining=rate_remaining,
        destination="zendesk",
        upstream={
            "status": status,
            "request_id": request_id,
            "body": trim_body(body, secrets),
        },
        **unknown,
    )


def error_message(body: Any) -> str | None:
    """The human message in any of Zendesk's error shapes (reference section 1.6)."""
    if isinstance(body, str):
        return " ".join(body.split())[:300] or None
    if not isinstance(body, dict):
        return None
    for key in ("errors", "error"):
        value = body.get(key)
        if isinstance(value, list):
            messages = [_entry_message(item) for item in value if isinstance(item, dict)]
            if any(messages):
                return "; ".join(m for m in messages if m)
        elif isinstance(value, dict):
            return _entry_message(value)
        elif isinstance(value, str):
            description = body.get("description")
            details = _details_message(body.get("details"))
            text = f"{value}: {description}" if isinstance(description, str) else value
            return f"{text} ({details})" if details else text
    return _entry_message(body)


def _entry_message(entry: dict[str, Any]) -> str | None:
    parts = [
        str(entry[key])
        for key in ("code", "title", "message", "description", "detail")
        if isinstance(entry.get(key), str | int) and entry.get(key) != ""
    ]
    return ": ".join(dict.fromkeys(parts)) or None


def _details_message(details: Any) -> str | None:
    if not isinstance(details, dict):
        return None
    parts = []
    for field_name, problems in details.items():
        if isinstance(problems, list):
            for problem in problems:
                if isinstance(problem, dict) and problem.get("description"):
                    parts.append(f"{field_name}: {problem['description']}")
    return "; ".join(parts) or None


def validate_body(body: dict[str, Any], *, with_profile: bool) -> list[Violation]:
    """Zendesk's documented rules for an event (and its profile), with field paths."""
    # Every event of a site passes here: checks come first, paths and messages only on failure.
    violations: list[Violation] = []
    event = body.get("event")
    if not isinstance(event, dict):
        violations.append(Violation("event", "required, an object"))
    else:
        _check_name(event, "event", "source", violations, reserved=True)
        _check_name(event, "event", "type", violations)
        if not isinstance(event.get("properties"), dict):
            violations.append(Violation("event.properties", "required, an object"))
        created_at = event.get("created_at")
        if created_at is not None and not is_rfc3339(created_at):
            violations.append(Violation("event.created_at", CREATED_AT_RULE))
        description = event.get("description")
        if description is not None and not isinstance(description, str):
            violations.append(Violation("event.description", "must be a string"))
    profile = body.get("profile")
    if not with_profile:
        if profile is not None:
            violations.append(
                Violation("profile", "not accepted by the profile_events endpoint; send `event` only")
            )
    elif not isinstance(profile, dict):
        violations.append(Violation("profile", "required, an object"))
    else:
        _check_name(profile, "profile", "source", violations, reserved=True)
        _check_name(profile, "profile", "type", violations)
        _check_identifiers(profile.get("identifiers"), violations)
        for key, kind in (("name", str), ("attributes", dict), ("user_id", str)):
            value = profile.get(key)
            if value is not None and not isinstance(value, kind):
                expected = "a string" if kind is str else "an object"
                violations.append(Violation(f"profile.{key}", f"must be {expected}"))
    if not TOP_LEVEL_KEYS.issuperset(body):  # no document says Zendesk refuses one
        violations.extend(
            Violation(key, UNKNOWN_KEY, warning=True) for key in sorted(set(body) - TOP_LEVEL_KEYS)
        )
    return violations


def _check_name(
    obj: dict[str, Any], where: str, key: str, out: list[Violation], *, reserved: bool = False
) -> None:
    value = obj.get(key)
    # the reference protects `zendesk` as written: `Zendesk` is another name
    if (
        type(value) is str
        and 0 < len(value) <= NAME_MAX
        and not value.isspace()
        and not (reserved and value == RESERVED_SOURCE)
    ):
        return
    path = f"{where}.{key}"
    if not isinstance(value, str) or not value or value.isspace():
        out.append(Violation(path, "required, a non-empty string"))
    elif len(value) > NAME_MAX:
        out.append(Violation(path, f"at most {NAME_MAX} characters (has {len(value)})"))
    elif reserved and value == RESERVED_SOURCE:
        out.append(Violation(path, "`zendesk` is reserved for Zendesk's own events"))


def _check_identifiers(identifiers: Any, out: list[Violation]) -> None:
    path = "profile.identifiers"
    if not isinstance(identifiers, list) or not identifiers:
        out.append(Violation(path, "required, an array of 1 to 20 {type, value} objects"))
        return
    if len(identifiers) > MAX_IDENTIFIERS:
        out.append(Violation(path, f"at most {MAX_IDENTIFIERS} identifiers (has {len(identifiers)})"))
    seen: set[tuple[str, str]] = set()
    for index, identifier in enumerate(identifiers):
        if not isinstance(identifier, dict):
            out.append(Violation(f"{path}[{index}]", "must be an object {type, value}"))
            continue
        kind, value = identifier.get("type"), identifier.get("value")
        if not (type(kind) is str and type(value) is str and kind.strip() and value.strip()):
            for key, part in (("type", kind), ("value", value)):
                if not isinstance(part, str) or not part.strip():
                    out.append(Violation(f"{path}[{index}].{key}", "required, a non-empty string"))
        pair = (str(kind), str(value))
        if pair in seen:
            out.append(Violation(f"{path}[{index}]", DUPLICATE_IDENTIFIER, warning=True))
        seen.add(pair)


KIND = Kind(
    name="zendesk",
    configure=ZendeskConfig.from_settings,
    create=ZendeskDestination,
    credentials="set ZENDESK_SUBDOMAIN (or ZENDESK_BASE_URL) and ZENDESK_OAUTH_TOKEN, "
    "ZENDESK_EMAIL + ZENDESK_API_TOKEN, or ZENDESK_EMAIL + ZENDESK_PASSWORD",
)
