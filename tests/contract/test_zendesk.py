"""The Zendesk destination against the fake Zendesk over loopback: auth, endpoints, errors."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.destinations.base import Delivered, OutboundRequest
from app.destinations.timestamps import is_rfc3339
from app.destinations.zendesk import ZendeskConfig, ZendeskDestination
from app.problems import Problem
from tests.conftest import make_settings
from tests.fakes.zendesk import ERROR_BODIES, CannedResponse, FakeZendesk, is_rfc3339_date_time

BODY = {
    "profile": {
        "source": "shop",
        "type": "customer",
        "identifiers": [{"type": "email", "value": "a@example.com"}],
    },
    "event": {"source": "shop", "type": "order_completed", "properties": {"total": 1}},
}


def destination(fake: FakeZendesk, **overrides: Any) -> ZendeskDestination:
    values: dict[str, Any] = {"zendesk_base_url": fake.base_url, "zendesk_email": "agent@example.com"}
    values.update(overrides)
    return ZendeskDestination(ZendeskConfig.from_settings(make_settings(**values)), dry_run=False)


def send(dest: ZendeskDestination, body: Any = None, endpoint: str | None = None, **params: Any) -> Delivered:
    request, violations = dest.prepare(body or BODY, endpoint, params)
    assert violations == []

    async def run() -> Delivered:
        try:
            return await dest.send(request)
        finally:
            await dest.aclose()

    return asyncio.run(run())


def send_expecting_problem(dest: ZendeskDestination) -> Problem:
    with pytest.raises(Problem) as caught:
        send(dest)
    return caught.value


@pytest.mark.parametrize(
    ("settings", "form", "header"),
    [
        (
            {"zendesk_api_token": "test-api-token"},
            "api_token",
            "Basic " + base64.b64encode(b"agent@example.com/token:test-api-token").decode(),
        ),
        ({"zendesk_oauth_token": "test-oauth-token"}, "oauth", "Bearer test-oauth-token"),
        (
            {"zendesk_password": "test-password"},
            "password",
            "Basic " + base64.b64encode(b"agent@example.com:test-password").decode(),
        ),
    ],
    ids=["api-token", "oauth", "password"],
)
def test_each_auth_form_reaches_zendesk_with_its_header(
    fake_zendesk: FakeZendesk, settings: dict[str, str], form: str, header: str
) -> None:
    delivered = send(destination(fake_zendesk, **settings))
    assert delivered.status == 202
    assert delivered.response["status"] == "received"
    [received] = fake_zendesk.received
    assert received.auth == form
    assert received.headers["authorization"] == header


def test_success_captures_profile_and_user_ids(fake_zendesk: FakeZendesk) -> None:
    delivered = send(destination(fake_zendesk, zendesk_api_token="test-api-token"))
    assert len(delivered.response["profile_id"]) == 26
    assert delivered.response["user_id"].isdigit()
    assert delivered.request_id


def test_profile_id_endpoint_takes_the_id_from_the_body(fake_zendesk: FakeZendesk) -> None:
    dest = destination(fake_zendesk, zendesk_api_token="test-api-token")
    profile_id = fake_zendesk.add_profile(BODY["profile"])
    body = {"profile_id": profile_id, "event": BODY["event"]}
    delivered = send(dest, body, "profile_events")
    assert delivered.response["profile_id"] == profile_id
    [received] = fake_zendesk.accepted
    assert received.path == f"/api/v2/user_profiles/{profile_id}/events"
    assert received.body == {"event": BODY["event"]}


def test_user_id_endpoint_takes_the_id_from_a_parameter(fake_zendesk: FakeZendesk) -> None:
    dest = destination(fake_zendesk, zendesk_oauth_token="test-oauth-token")
    delivered = send(dest, BODY, "user_events", user_id=123456)
    assert delivered.response["user_id"] == "123456"
    assert fake_zendesk.accepted[0].path == "/api/v2/users/123456/events"


def test_ids_are_escaped_into_the_path() -> None:
    dest = ZendeskDestination(ZendeskConfig.from_settings(make_settings()), dry_run=True)
    request, violations = dest.prepare(
        {"event": BODY["event"]}, "profile_events", {"profile_id": "../../admin?x=1"}
    )
    assert violations == []
    assert request.path == "/api/v2/user_profiles/..%2F..%2Fadmin%3Fx%3D1/events"


# Each documented error body (reference section 1.6) -> (code, caller status, retryable, text in detail)
ERROR_CASES = {
    "errors_array_400": ("destination_rejected", 422, False),
    "client_error_403": ("destination_auth_failed", 502, False),
    "too_many_resources_429": ("rate_limited", 429, True),
    "error_object_400": ("destination_rejected", 422, False),
    "no_help_desk_404": ("destination_not_found", 502, False),
    "record_not_found_404": ("destination_not_found", 502, False),
    "record_invalid_422": ("destination_rejected", 422, False),
    "couldnt_authenticate_401": ("destination_auth_failed", 502, False),
    "invalid_token_401": ("destination_auth_failed", 502, False),
    "route_not_found_401": ("destination_auth_failed", 502, False),
    "adobe_error_array_401": ("destination_auth_failed", 502, False),
    "invalid_profile_type_length_400": ("destination_rejected", 422, False),
    "permission_denied_403": ("destination_auth_failed", 502, False),
    "too_many_requests_429": ("rate_limited", 429, True),
    "plain_text_429": ("rate_limited", 429, True),
    "plain_text_400": ("destination_rejected", 422, False),
    "plain_text_500": ("destination_unavailable", 502, True),
    "plain_text_503": ("destination_unavailable", 502, True),
}


def test_every_catalogued_error_body_has_a_case() -> None:
    assert set(ERROR_CASES) == set(ERROR_BODIES)


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_each_zendesk_error_body_is_normalised(fake_zendesk: FakeZendesk, name: str) -> None:
    code, status, retryable = ERROR_CASES[name]
    canned = ERROR_BODIES[name]
    fake_zendesk.enqueue(canned)
    problem = send_expecting_problem(destination(fake_zendesk, zendesk_api_token="test-api-token"))
    doc = problem.to_dict()
    assert (doc["code"], doc["status"], doc["retryable"]) == (code, status, retryable)
    assert doc["destination"] == "zendesk"
    assert doc["upstream"]["status"] == canned.status
    assert doc["upstream"]["request_id"]  # X-Zendesk-Request-Id is kept
    assert doc["detail"].startswith("Zendesk: ")
    assert doc["upstream"]["body"] is not None
    if "retry-after" in {k.lower() for k in canned.headers}:
        assert problem.retry_after == float(
            next(v for k, v in canned.headers.items() if k.lower() == "retry-after")
        )


def test_messages_come_from_each_body_shape(fake_zendesk: FakeZendesk) -> None:
    expectations = {
        "errors_array_400": "StartTimestampNotValid",
        "error_object_400": "Invalid attribute",
        "record_not_found_404": "RecordNotFound: Not found",
        "couldnt_authenticate_401": "Couldn't authenticate you",
        "route_not_found_401": "RouteNotFound",
        "adobe_error_array_401": "MissingOrInvalidAuthentication",
        "plain_text_429": "Number of allowed API requests per minute exceeded",
    }
    for name, text in expectations.items():
        fake_zendesk.enqueue(ERROR_BODIES[name])
        problem = send_expecting_problem(destination(fake_zendesk, zendesk_api_token="test-api-token"))
        assert text in (problem.detail or ""), name


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [(409, "destination_conflict", False), (502, "destination_unavailable", True)],
)
def test_an_answer_in_no_documented_shape_is_kept_as_text(
    fake_zendesk: FakeZendesk, status: int, code: str, retryable: bool
) -> None:
    """Not in the fake's catalogue (no document shows them): a 409, and a proxy's HTML page."""
    page = "<html><head><title>Bad Gateway</title></head><body>cloudflare</body></html>"
    fake_zendesk.enqueue(CannedResponse(status, page, content_type="text/html"))
    problem = send_expecting_problem(destination(fake_zendesk, zendesk_api_token="test-api-token"))
    assert (problem.code, problem.retryable) == (code, retryable)
    assert problem.to_dict()["upstream"]["body"] == page


def test_429_without_retry_after_assumes_ten_seconds(fake_zendesk: FakeZendesk) -> None:
    fake_zendesk.enqueue(CannedResponse(429, {"error": "slow down"}))
    problem = send_expecting_problem(destination(fake_zendesk, zendesk_api_token="test-api-token"))
    assert problem.code == "rate_limited"
    assert problem.retry_after == 10.0
    assert problem.headers() == {"Retry-After": "10"}


def test_http_date_retry_after(fake_zendesk: FakeZendesk) -> None:
    import time
    from email.utils import formatdate

    fake_zendesk.enqueue(
        CannedResponse(
            503, "down", {"Retry-After": formatdate(time.time() + 30, usegmt=True)}, content_type="text/plain"
        )
    )
    problem = send_expecting_problem(destination(fake_zendesk, zendesk_api_token="test-api-token"))
    assert problem.retry_after is not None and 25 <= problem.retry_after <= 31


@pytest.mark.parametrize("wait", ["86400", "1e400", "inf", "HTTP-DATE"])
def test_a_retry_after_beyond_an_hour_is_capped_at_an_hour(fake_zendesk: FakeZendesk, wait: str) -> None:
    import time
    from email.utils import formatdate

    if wait == "HTTP-DATE":
        wait = formatdate(time.time() + 7 * 86_400, usegmt=True)
    for status in (429, 503):
        fake_zendesk.enqueue(CannedResponse(status, {"error": "later"}, {"Retry-After": wait}))
        problem = send_expecting_problem(destination(fake_zendesk, zendesk_api_token="test-api-token"))
        assert problem.retry_after == 3600.0


def test_slow_answer_is_a_timeout(fake_zendesk: FakeZendesk) -> None:
    fake_zendesk.enqueue(CannedResponse(202, {"status": "received"}, delay=8.0))  # far beyond a late timer
    dest = destination(fake_zendesk, zendesk_api_token="test-api-token", zendesk_read_timeout=0.3)
    problem = send_expecting_problem(dest)
    assert (problem.code, problem.status, problem.retryable) == ("timeout", 504, True)


def test_unreachable_zendesk_is_unavailable(fake_zendesk: FakeZendesk) -> None:
    url = fake_zendesk.base_url
    fake_zendesk.stop()
    dest = ZendeskDestination(
        ZendeskConfig.from_settings(
            make_settings(zendesk_base_url=url, zendesk_oauth_token="test-oauth-token")
        ),
        dry_run=False,
    )
    problem = send_expecting_problem(dest)
    assert (problem.code, problem.retryable) == ("destination_unavailable", True)


def test_upstream_body_never_echoes_credentials(fake_zendesk: FakeZendesk) -> None:
    fake_zendesk.enqueue(CannedResponse(400, {"error": "bad", "echo": "token test-api-token was wrong"}))
    problem = send_expecting_problem(destination(fake_zendesk, zendesk_api_token="test-api-token"))
    assert "test-api-token" not in str(problem.to_dict())


def test_large_upstream_bodies_are_trimmed(fake_zendesk: FakeZendesk) -> None:
    fake_zendesk.enqueue(CannedResponse(500, "x" * 100_000, content_type="text/plain"))
    problem = send_expecting_problem(destination(fake_zendesk, zendesk_api_token="test-api-token"))
    assert len(problem.to_dict()["upstream"]["body"]) <= 2000


def test_the_exact_request_sent(fake_zendesk: FakeZendesk) -> None:
    """Snapshot of what goes on the wire for the default endpoint."""
    send(destination(fake_zendesk, zendesk_oauth_token="test-oauth-token"))
    [received] = fake_zendesk.received
    assert received.method == "POST"
    assert received.path == "/api/v2/user_profiles/events"
    assert received.headers["content-type"] == "application/json"
    assert received.headers["accept"] == "application/json"
    assert received.body == BODY


def test_plain_http_is_refused_for_non_loopback_hosts() -> None:
    from app.settings import ConfigError

    with pytest.raises(ConfigError, match="https"):
        ZendeskConfig.from_settings(make_settings(zendesk_base_url="http://10.0.0.5:8080"))
    config = ZendeskConfig.from_settings(make_settings(zendesk_subdomain="acme"))
    assert config.base_url == "https://acme.zendesk.com"


def test_outbound_request_describes_itself() -> None:
    assert OutboundRequest("POST", "/x", {}).describe() == "POST /x"


@pytest.mark.parametrize("status", [400, 429, 503])
def test_a_failed_answer_keeps_its_rate_limit_headers(fake_zendesk: FakeZendesk, status: int) -> None:
    """The fake sends X-Rate-Limit on every answer, as Zendesk does (reference 1.5)."""
    fake_zendesk.enqueue(CannedResponse(status, "no", {"X-Rate-Limit": "250"}, content_type="text/plain"))
    problem = send_expecting_problem(destination(fake_zendesk, zendesk_api_token="test-api-token"))
    assert (problem.rate_limit, problem.rate_remaining) == (250, 700)
    assert "rate_limit" not in problem.to_dict()


@st.composite
def near_date_times(draw: st.DrawFn) -> str:
    """Date-times with each part drawn a little beyond its range (year 0000 left out: RFC 3339
    allows it, datetime cannot hold it, and no event carries it)."""
    two = st.integers(0, 99).map(lambda n: f"{n:02d}")
    year = draw(st.integers(1, 9999))
    month, day = draw(st.integers(0, 13)), draw(st.integers(0, 32))
    hour, minute, second = draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(st.integers(0, 61))
    fraction = draw(st.sampled_from(["", ".5", ".123456789", "."]))
    offset = draw(st.sampled_from(["Z", "z", "", "+", "-"]))
    if offset in "+-":
        offset += f"{draw(two)}:{draw(two)}"
    separator = draw(st.sampled_from(["T", "t", " "]))
    return (
        f"{year:04d}-{month:02d}-{day:02d}{separator}{hour:02d}:{minute:02d}:{second:02d}{fraction}{offset}"
    )


@settings(max_examples=1000)  # cheap; the parts beyond their ranges are a small share
@given(near_date_times())
def test_the_relay_refuses_exactly_the_created_at_the_fake_refuses(value: str) -> None:
    """Two readings of RFC 3339 written apart (the relay's, the fake's) agree."""
    assert is_rfc3339(value) == is_rfc3339_date_time(value)
