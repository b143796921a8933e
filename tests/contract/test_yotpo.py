"""The Yotpo destination against the fake Yotpo over loopback: tokens, the request, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from structlog.testing import capture_logs

from app.destinations.base import Delivered, OutboundRequest
from app.destinations.yotpo import YotpoConfig, YotpoDestination, default_event_id, validate_body
from app.problems import Problem
from tests.conftest import make_settings
from tests.fakes.yotpo import ERROR_BODIES, CannedResponse, FakeYotpo, event_problems

T = TypeVar("T")

SECRET = "test-yotpo-secret"
BODY: dict[str, Any] = {
    "type": "order_shipped",
    "source": "adobe_relay",
    "timestamp": "2024-05-01T12:00:00Z",
    "id": "evt-1",
    "customer": {"external_id": "c-1", "properties": {"tier": "gold"}},
    "properties": {"order_total": 12.5, "gift": False},
}


def destination(fake: FakeYotpo, **overrides: Any) -> YotpoDestination:
    values: dict[str, Any] = {
        "yotpo_store_id": "store-123",
        "yotpo_secret": SECRET,
        "yotpo_base_url": fake.base_url,
    }
    values.update(overrides)
    extra = {k: values.pop(k) for k in ("token_max_age", "clock") if k in values}
    return YotpoDestination(YotpoConfig.from_settings(make_settings(**values)), dry_run=False, **extra)


def prepared(dest: YotpoDestination, body: Any = None, **params: Any) -> OutboundRequest:
    request, violations = dest.prepare(BODY if body is None else body, None, params)
    assert violations == []
    return request


def run(dest: YotpoDestination, work: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await work()
        finally:
            await dest.aclose()

    return asyncio.run(main())


def send(dest: YotpoDestination, body: Any = None) -> Delivered:
    request = prepared(dest, body)
    return run(dest, lambda: dest.send(request))


def send_expecting_problem(dest: YotpoDestination, body: Any = None) -> Problem:
    with pytest.raises(Problem) as caught:
        send(dest, body)
    return caught.value


def event_calls(fake: FakeYotpo) -> list[Any]:
    return [r for r in fake.received if r.path == fake.events_path]


# Tokens


def test_a_token_is_obtained_once_and_reused(fake_yotpo: FakeYotpo) -> None:
    dest = destination(fake_yotpo)

    async def three() -> list[Delivered]:
        return [await dest.send(prepared(dest, {**BODY, "id": f"evt-{i}"})) for i in range(3)]

    delivered = run(dest, three)
    assert [d.status for d in delivered] == [200, 200, 200]
    assert fake_yotpo.token_requests == 1
    assert len(fake_yotpo.accepted) == 3
    assert len({r.headers["x-yotpo-token"] for r in fake_yotpo.accepted}) == 1


def test_concurrent_sends_fetch_one_token(fake_yotpo: FakeYotpo) -> None:
    dest = destination(fake_yotpo)

    async def many() -> list[Delivered]:
        # 5 at once: Yotpo's limit per second per store, which the fake keeps
        return await asyncio.gather(*(dest.send(prepared(dest, {**BODY, "id": f"e{i}"})) for i in range(5)))

    assert len(run(dest, many)) == 5
    assert fake_yotpo.token_requests == 1


def test_the_token_survives_aclose(fake_yotpo: FakeYotpo) -> None:
    dest = destination(fake_yotpo)
    send(dest)
    send(dest)
    assert fake_yotpo.token_requests == 1


def test_an_expired_token_is_refreshed_once_on_401(fake_yotpo: FakeYotpo) -> None:
    dest = destination(fake_yotpo)
    send(dest)
    fake_yotpo.expire_tokens()
    delivered = send(dest, {**BODY, "id": "evt-2"})
    assert delivered.status == 200
    assert fake_yotpo.token_requests == 2
    assert [r.status for r in event_calls(fake_yotpo)] == [200, 401, 200]


def test_a_token_older_than_max_age_is_refreshed_before_sending(fake_yotpo: FakeYotpo) -> None:
    now = [1000.0]
    dest = destination(fake_yotpo, token_max_age=60.0, clock=lambda: now[0])
    send(dest)
    now[0] += 59
    send(dest)
    assert fake_yotpo.token_requests == 1
    now[0] += 2
    send(dest)
    assert fake_yotpo.token_requests == 2
    assert [r.status for r in event_calls(fake_yotpo)] == [200, 200, 200]  # no 401 needed


def test_a_bad_secret_is_destination_auth_failed(fake_yotpo: FakeYotpo) -> None:
    problem = send_expecting_problem(destination(fake_yotpo, yotpo_secret="wrong-secret"))
    doc = problem.to_dict()
    assert (doc["code"], doc["status"], doc["retryable"]) == ("destination_auth_failed", 502, False)
    assert "Exceptions::AccessDenied" in doc["detail"]
    assert doc["upstream"]["status"] == 401
    assert fake_yotpo.token_requests == 1
    assert event_calls(fake_yotpo) == []
    assert "wrong-secret" not in str(doc)


def test_a_wrong_store_id_fails_the_token_call(fake_yotpo: FakeYotpo) -> None:
    problem = send_expecting_problem(destination(fake_yotpo, yotpo_store_id="other-store"))
    assert problem.code == "destination_auth_failed"
    assert "Couldn't find Account" in (problem.detail or "")


def test_invalid_client_from_the_token_call(fake_yotpo: FakeYotpo) -> None:
    fake_yotpo.enqueue_token(ERROR_BODIES["invalid_client_401"])
    problem = send_expecting_problem(destination(fake_yotpo))
    assert problem.code == "destination_auth_failed"
    assert problem.detail == "Yotpo: could not obtain an access token: invalid_client"


@pytest.mark.parametrize(
    ("canned", "code", "retry_after"),
    [
        (CannedResponse(500, {"errors": [{"message": "boom"}]}), "destination_unavailable", None),
        (
            CannedResponse(503, "down", {"Retry-After": "4"}, content_type="text/plain"),
            "destination_unavailable",
            4.0,
        ),
        (
            CannedResponse(429, {"errors": [{"message": "slow"}]}, {"RateLimit-Reset": "2"}),
            "rate_limited",
            2.0,
        ),
        (CannedResponse(200, {"token": "wrong-field"}), "destination_auth_failed", None),
    ],
    ids=["500", "503", "429", "no-access-token"],
)
def test_transient_token_call_failures_stay_retryable(
    fake_yotpo: FakeYotpo, canned: CannedResponse, code: str, retry_after: float | None
) -> None:
    fake_yotpo.enqueue_token(canned)
    problem = send_expecting_problem(destination(fake_yotpo))
    assert (problem.code, problem.retry_after) == (code, retry_after)
    assert event_calls(fake_yotpo) == []


@pytest.mark.parametrize("setting", ["yotpo_access_token", "yotpo_api_key"])  # the new name, the old
def test_a_pre_issued_access_token_is_used_without_a_token_call(fake_yotpo: FakeYotpo, setting: str) -> None:
    token = fake_yotpo.issue_token()
    dest = destination(fake_yotpo, yotpo_secret=None, **{setting: token})
    assert send(dest).status == 200
    assert fake_yotpo.token_requests == 0
    [received] = fake_yotpo.received
    assert received.headers["x-yotpo-token"] == token


def test_the_new_name_wins_over_the_deprecated_one(fake_yotpo: FakeYotpo) -> None:
    token = fake_yotpo.issue_token()
    dest = destination(fake_yotpo, yotpo_secret=None, yotpo_access_token=token, yotpo_api_key="old")
    assert send(dest).status == 200
    assert fake_yotpo.received[0].headers["x-yotpo-token"] == token


def test_a_rejected_access_token_without_a_secret_is_not_retried(fake_yotpo: FakeYotpo) -> None:
    problem = send_expecting_problem(
        destination(fake_yotpo, yotpo_secret=None, yotpo_access_token="stale-token")
    )
    assert problem.code == "destination_auth_failed"
    assert fake_yotpo.token_requests == 0
    assert len(event_calls(fake_yotpo)) == 1
    assert "stale-token" not in str(problem.to_dict())


def test_a_rejected_access_token_is_replaced_when_a_secret_is_set(fake_yotpo: FakeYotpo) -> None:
    dest = destination(fake_yotpo, yotpo_access_token="stale-token")
    assert send(dest).status == 200
    assert fake_yotpo.token_requests == 1
    assert [r.status for r in event_calls(fake_yotpo)] == [401, 200]


def test_no_key_and_no_secret_is_destination_auth_failed(fake_yotpo: FakeYotpo) -> None:
    problem = send_expecting_problem(destination(fake_yotpo, yotpo_secret=None))
    assert problem.code == "destination_auth_failed"
    assert fake_yotpo.received == []


# The request on the wire


def test_the_exact_request_sent(fake_yotpo: FakeYotpo) -> None:
    """Snapshot of the token call and the event call for a body whose defaults are filled."""
    body = {k: v for k, v in BODY.items() if k not in ("id", "timestamp")}
    dest = destination(fake_yotpo)
    request, violations = dest.prepare(body, None, {"event_id": "adobe-evt-7", "mapping": "orders"})
    assert violations == []
    delivered = run(dest, lambda: dest.send(request))
    event_id = default_event_id("orders", "adobe-evt-7")
    assert delivered.response == {"id": event_id}

    token_call, event_call = fake_yotpo.received
    assert (token_call.method, token_call.path) == ("POST", "/core/v3/stores/store-123/access_tokens")
    assert token_call.headers["content-type"] == "application/json"
    assert "x-yotpo-token" not in token_call.headers
    assert token_call.body == {"secret": SECRET}

    assert (event_call.method, event_call.path) == ("POST", "/core/v3/stores/store-123/custom_events")
    assert event_call.query == ""
    assert event_call.headers["content-type"] == "application/json"
    assert event_call.headers["accept"] == "application/json"
    assert event_call.headers["x-yotpo-token"] in fake_yotpo.tokens
    assert "authorization" not in event_call.headers
    stamped = event_call.body.pop("timestamp")
    assert stamped == request.body["timestamp"] and stamped.endswith("Z")
    assert event_call.body == {**body, "id": event_id}


def test_a_retry_resends_the_same_body_and_updates_the_event(fake_yotpo: FakeYotpo) -> None:
    dest = destination(fake_yotpo)
    request, _ = dest.prepare({k: v for k, v in BODY.items() if k != "timestamp"}, None, {})
    fake_yotpo.enqueue(ERROR_BODIES["server_error_500"])

    async def twice() -> Delivered:
        with pytest.raises(Problem):
            await dest.send(request)
        await dest.send(request)
        return await dest.send(request)

    run(dest, twice)
    bodies = [r.body for r in event_calls(fake_yotpo)]
    assert bodies[0] == bodies[1] == bodies[2]  # same timestamp and id on every attempt
    assert fake_yotpo.updates == 1


def test_success_reports_the_rate_limit_per_minute(fake_yotpo: FakeYotpo) -> None:
    delivered = send(destination(fake_yotpo))
    assert delivered.status == 200
    assert delivered.response == {"id": "evt-1"}
    assert delivered.rate_limit == 1000 * 60
    assert delivered.rate_remaining == 999 * 60


# Errors

# Each catalogued error body -> (code, caller status, retryable, retry_after, text in detail)
ERROR_CASES: dict[str, tuple[str, int, bool, float | None, str]] = {
    "access_denied_401": (
        "destination_auth_failed",
        502,
        False,
        None,
        "Exceptions::AccessDenied: You are not authorized",
    ),
    "record_not_found_404": ("destination_not_found", 502, False, None, "Couldn't find Account"),
    "invalid_client_401": ("destination_auth_failed", 502, False, None, "invalid_client"),
    "validation_422": (
        "destination_rejected",
        422,
        False,
        None,
        "customer.phone_number: must be an E.164 phone number",
    ),
    "too_many_requests_429": ("rate_limited", 429, True, 2.0, "HTTP 429"),  # no body: the status
    "server_error_500": ("destination_unavailable", 502, True, None, "HTTP 500"),
    "errors_array_400": ("destination_rejected", 422, False, None, "custom event rejected"),
}


def test_every_catalogued_error_body_has_a_case() -> None:
    assert set(ERROR_CASES) == set(ERROR_BODIES)


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_each_yotpo_error_body_is_normalised(fake_yotpo: FakeYotpo, name: str) -> None:
    code, status, retryable, retry_after, text = ERROR_CASES[name]
    canned = ERROR_BODIES[name]
    auth_error = canned.status in (401, 403)
    # A 401/403 triggers one token refresh and one re-send: script both answers.
    fake_yotpo.enqueue(*([canned] * (2 if auth_error else 1)))
    problem = send_expecting_problem(destination(fake_yotpo))
    doc = problem.to_dict()
    assert (doc["code"], doc["status"], doc["retryable"]) == (code, status, retryable)
    assert problem.retry_after == retry_after
    assert doc["destination"] == "yotpo"
    assert doc["detail"].startswith("Yotpo: ")
    assert text in doc["detail"]
    assert doc["upstream"]["status"] == canned.status
    assert doc["upstream"]["body"] == canned.body
    assert fake_yotpo.token_requests == (2 if auth_error else 1)
    assert len(event_calls(fake_yotpo)) == (2 if auth_error else 1)


def test_one_401_is_recovered_by_the_refresh(fake_yotpo: FakeYotpo) -> None:
    fake_yotpo.enqueue(ERROR_BODIES["access_denied_401"])
    assert send(destination(fake_yotpo)).status == 200
    assert [r.status for r in event_calls(fake_yotpo)] == [401, 200]


def test_the_request_id_header_is_kept(fake_yotpo: FakeYotpo) -> None:
    fake_yotpo.enqueue(CannedResponse(400, {"errors": [{"message": "x"}]}, {"X-Request-Id": "req-77"}))
    problem = send_expecting_problem(destination(fake_yotpo))
    assert problem.to_dict()["upstream"]["request_id"] == "req-77"


def test_429_retry_after_comes_from_ratelimit_reset() -> None:
    with FakeYotpo(rate_limit=1, rate_window=60.0) as fake:
        dest = destination(fake)

        async def two() -> Problem:
            await dest.send(prepared(dest))
            with pytest.raises(Problem) as caught:
                await dest.send(prepared(dest, {**BODY, "id": "evt-2"}))
            return caught.value

        problem = run(dest, two)
        assert problem.code == "rate_limited"
        assert problem.retry_after is not None and 1.0 <= problem.retry_after <= 60.0
        assert fake.throttled == 1


def test_429_without_headers_waits_one_second(fake_yotpo: FakeYotpo) -> None:
    fake_yotpo.enqueue(CannedResponse(429, {"errors": [{"message": "slow down"}]}))
    problem = send_expecting_problem(destination(fake_yotpo))
    assert (problem.code, problem.retry_after) == ("rate_limited", 1.0)


def test_the_token_never_appears_in_a_problem(fake_yotpo: FakeYotpo) -> None:
    dest = destination(fake_yotpo)
    send(dest)
    [token] = fake_yotpo.tokens
    fake_yotpo.enqueue(CannedResponse(400, {"error": f"token {token} rejected, secret {SECRET}"}))
    problem = send_expecting_problem(dest)
    text = str(problem.to_dict())
    assert token not in text
    assert SECRET not in text
    assert "***" in text


def test_tokens_and_secrets_are_never_logged(fake_yotpo: FakeYotpo) -> None:
    dest = destination(fake_yotpo)
    with capture_logs() as logs:
        send(dest)
        fake_yotpo.expire_tokens()
        send(dest)
    events = [entry["event"] for entry in logs]
    assert events.count("yotpo_token_obtained") == 2
    assert events.count("upstream_call") == 5  # token, event, 401, token, event
    text = str(logs)
    assert SECRET not in text
    for received in fake_yotpo.received:
        token = received.headers.get("x-yotpo-token")
        assert token is None or token not in text


def test_slow_answer_is_a_timeout(fake_yotpo: FakeYotpo) -> None:
    fake_yotpo.enqueue(CannedResponse(200, {"event": {"id": "evt-1"}}, delay=8.0))  # far beyond a late timer
    problem = send_expecting_problem(destination(fake_yotpo, yotpo_read_timeout=0.3))
    assert (problem.code, problem.status, problem.retryable) == ("timeout", 504, True)


def test_unreachable_yotpo_is_unavailable(fake_yotpo: FakeYotpo) -> None:
    dest = destination(fake_yotpo)
    fake_yotpo.stop()
    problem = send_expecting_problem(dest)
    assert (problem.code, problem.retryable) == ("destination_unavailable", True)


# The relay's check and the fake's are written apart (app/destinations/timestamps.py and
# tests/fakes/yotpo.py): each must refuse exactly what the other refuses.
TIMESTAMPS = [
    "2024-05-01T12:00:00Z",
    "2024-05-01t12:00:00z",
    "2024-05-01T12:00:00.5+02:00",
    "2024-05-01T07:00:00-05:00",
    "2024-02-29T00:00:00Z",
    "2016-12-31T23:59:60Z",
    "2024-05-01",
    "2024-W18-3",
    "2024-05-01T12:00:00",
    "20240501T120000Z",
    "2024-05-01T12:00Z",
    "2024-05-01 12:00:00Z",
    "2024-05-01T12:00:00+0200",
    "2023-02-29T12:00:00Z",
    "2024-04-31T12:00:00Z",
    "2024-05-01T25:00:00Z",
    "2024-05-01T12:60:00Z",
    "2024-05-01T12:00:00+24:00",
    "",
]


@pytest.mark.parametrize("timestamp", TIMESTAMPS)
def test_the_relay_refuses_exactly_the_timestamps_the_fake_refuses(timestamp: str) -> None:
    body = {**BODY, "timestamp": timestamp}
    relay_refuses = "timestamp" in [v.path for v in validate_body(body) if not v.warning]
    fake_refuses = "timestamp" in [p["field"] for p in event_problems(body)]
    assert relay_refuses == fake_refuses
