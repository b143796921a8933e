"""Hostile input on the ingest and log side against a real ``aep-relay serve``: no single
request may hold the event loop (a ``/healthz`` probe every 50 ms, tests/e2e/loop_probe.py)
or grow the process by much, whatever it holds within the documented limits.

The bounds are generous (0.5 s of loop, 100 MiB): the machine is shared, and each attack
cost seconds or hundreds of MiB before it was fixed."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import EXAMPLES
from tests.e2e.loop_probe import LoopProbe
from tests.e2e.relay_process import RelayProcess

# Timed: among the slow tests, which run at normal priority (tests/conftest.py lowers the rest).
pytestmark = [pytest.mark.e2e, pytest.mark.slow(seconds=2)]

TOKEN = "hostile-token"
MAX_STALL = 0.5  # seconds
MAX_GROWTH = 100  # MiB
ONE_MIB = 1_048_576  # RELAY_MAX_BODY_BYTES's default


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """One relay for the module (dry run: no destination credentials), warmed by one event."""
    folder = tmp_path_factory.mktemp("hostile")
    process = RelayProcess({"RELAY_INGEST_TOKENS": TOKEN}, folder / "relay.log")
    process.start()
    try:
        status, _ = call(process, "POST", "/v1/events", (EXAMPLES / "purchase.json").read_bytes())
        assert status == 200  # dry run: final at once
        yield process
    finally:
        process.stop()


def call(relay: RelayProcess, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=120)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw.startswith(b"{") else raw
    finally:
        conn.close()


def probed(relay: RelayProcess) -> LoopProbe:
    assert relay.process is not None
    return LoopProbe(relay.port, relay.process.pid)


def assert_loop_and_memory_held(probe: LoopProbe) -> None:
    assert probe.answered >= 2 and probe.failures == 0, (probe.answered, probe.failures)
    assert probe.worst < MAX_STALL, f"/healthz waited {probe.worst:.2f} s"
    assert probe.growth_mib < MAX_GROWTH, f"the relay grew by {probe.growth_mib:.0f} MiB"


def batch(request_map: dict[str, Any], events: list[dict[str, Any]], **extra: Any) -> bytes:
    body = orjson.dumps({"xdm": {"identityMap": request_map}, "events": events, **extra})
    assert len(body) <= ONE_MIB
    return body


def identities(sized: dict[str, int], namespaces: int, each: int) -> dict[str, Any]:
    """An identity map: the ``sized`` namespaces, then ``namespaces`` more of ``each`` ids."""
    found = {name: [{"id": f"{name}-{n}@example.com"} for n in range(count)] for name, count in sized.items()}
    return found | {f"ns{k}": [{"id": f"{k}-{n}"} for n in range(each)] for k in range(namespaces)}


def page_views(count: int, prefix: str, **xdm: Any) -> list[dict[str, Any]]:
    """Page views: the shipped `identified-page-view` mapping looks up the `crmid` and
    `email` identities of every one to decide whether it applies."""
    return [
        {"xdm": {"eventType": "web.webpagedetails.pageViews", "_id": f"{prefix}-{n}", **xdm}}
        for n in range(count)
    ]


def purchase_with_total(literal: str) -> str:
    """The example purchase with ``literal`` as its order's total, as JSON text."""
    purchase = json.loads((EXAMPLES / "purchase.json").read_text())
    purchase["xdm"]["_id"] = f"total-{literal[:40]}"  # not a duplicate of the warm-up's
    purchase["xdm"]["commerce"]["order"]["priceTotal"] = "TOTAL"
    return json.dumps(purchase).replace('"TOTAL"', literal)


def test_a_path_of_address_characters_does_not_hold_the_loop(relay: RelayProcess) -> None:
    """`GET /` + 60 KB of address characters ending in `@` (httptools refuses a 64 KiB URL):
    the request's log line was redacted by a pattern that backtracked over the path (2.9 s
    each at 64 KB, no credentials needed)."""
    with probed(relay) as probe:
        for _ in range(3):
            status, _ = call(relay, "GET", "/" + "a" * 60_000 + "@")
            assert status == 404
    assert_loop_and_memory_held(probe)
    assert f'"path": "/{"a" * 1023}...(' in relay.logs()  # cut to 1024 characters


def test_a_huge_request_level_identity_map_is_refused_at_once(relay: RelayProcess) -> None:
    """1000 events and a request-level identityMap with all the entries that fit in 1 MiB:
    it was copied into every event and scanned per event and mapping (1.5 s, 890 MB)."""
    events = [{"xdm": {"eventType": "commerce.purchases"}} for _ in range(1000)]
    body = batch({"Email": [{"id": f"{n}"} for n in range(60_000)]}, events)
    with probed(relay) as probe:
        status, answer = call(relay, "POST", "/v1/events", body)
    assert (status, answer["code"]) == (413, "too_many_identities"), answer
    assert_loop_and_memory_held(probe)


def test_the_largest_identity_maps_within_the_caps_cost_little(relay: RelayProcess) -> None:
    """At the caps (50 namespaces, 1000 identities, 100 in one namespace none of them
    primary, so that every lookup scans them all) for 1000 events: shared, and with each
    event bringing a map of its own to merge with it."""
    shared = identities({"Email": 100}, 49, 18)  # 982 in all
    own = {"email": [{"id": "u1@example.com"}], "CRMID": [{"id": "c-1"}]}  # `email`: the same namespace
    merged = identities({"Email": 98}, 47, 18)  # 944 + 2 in all, 99 e-mails, 50 namespaces
    with probed(relay) as probe:
        for body in (
            batch(shared, page_views(1000, "a")),
            batch(merged, page_views(1000, "b", identityMap=own)),
        ):
            status, answer = call(relay, "POST", "/v1/events", body)
            assert status == 200, answer
            assert [result["status"] for result in answer["results"]] == ["dry_run"] * 1000
    assert_loop_and_memory_held(probe)


def test_timestamps_of_thousands_of_digits_do_not_hold_the_loop(relay: RelayProcess) -> None:
    """Every shipped mapping reads `iso8601(xdm.timestamp)`; a 60 KB run of digits took
    0.2-0.4 s to turn into an int before it was found out of range."""
    events = [
        {"xdm": {"eventType": "commerce.purchases", "_id": f"ts-{n}", "timestamp": "1" * 60_000}}
        for n in range(16)
    ]
    with probed(relay) as probe:
        status, answer = call(relay, "POST", "/v1/events", orjson.dumps({"events": events}))
    assert status in (200, 207, 422), answer  # rendered without a time: Zendesk's rules refuse it
    assert len(answer.get("results", [])) == 16, answer
    assert_loop_and_memory_held(probe)


def test_a_large_request_level_meta_is_refused_and_a_small_one_shared(relay: RelayProcess) -> None:
    """A request-level `meta` is copied under each event with a `meta` of its own."""
    events = [{"xdm": {"eventType": "x.y"}, "meta": {"own": n}} for n in range(1000)]
    huge = orjson.dumps({"meta": {f"k{n}": 0 for n in range(60_000)}, "events": events})
    small = orjson.dumps({"meta": {f"k{n}": 0 for n in range(64)}, "events": events})
    with probed(relay) as probe:
        status, answer = call(relay, "POST", "/v1/events", huge)
        assert (status, answer["code"]) == (400, "unsupported_payload"), answer
        status, answer = call(relay, "POST", "/v1/events", small)
        assert status == 200, answer
    assert_loop_and_memory_held(probe)


@pytest.mark.parametrize("literal", ["18446744073709551616", "-9223372036854775809", "9" * 300])
def test_an_integer_beyond_64_bits_is_refused_not_turned_into_a_float(
    relay: RelayProcess, literal: str
) -> None:
    text = purchase_with_total(literal)
    with probed(relay) as probe:
        status, answer = call(relay, "POST", "/v1/events?wait=5", text.encode())
    assert (status, answer["code"]) == (400, "invalid_json"), answer
    assert "send it as a string" in answer["detail"]
    assert_loop_and_memory_held(probe)


def test_an_integer_orjson_keeps_exactly_is_kept(relay: RelayProcess) -> None:
    text = purchase_with_total("18446744073709551615")
    status, answer = call(relay, "POST", "/v1/events?wait=5", text.encode())
    assert status == 200, answer
    [result] = answer["results"]
    assert result["body"]["event"]["properties"]["total"] == 18446744073709551615


def test_the_relay_log_stays_clean(relay: RelayProcess) -> None:
    """Last in the module: nothing above leaked an address into the log."""
    logs = relay.logs()
    assert "u1@example.com" not in logs and "jane.smith@example.com" not in logs.lower()
    assert Path(relay.log_path).stat().st_size < 10 * ONE_MIB
