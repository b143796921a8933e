"""Hypothesis on the payload parser and the template renderer: arbitrary JSON in, a result or
a problem out, never another exception. `make fuzz` runs the same with many more examples."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.mapping.expressions import ExpressionError
from app.mapping.templates import RenderError, compile_template
from app.payloads import ParsedPayload, PayloadLimits, check_limits, parse_payload
from app.pipeline import plan
from app.problems import Problem
from app.relay import build_destinations, load_checked_mappings
from tests.conftest import MAPPINGS, make_settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Keys the shipped mappings read, so generated events reach deep into their expressions.
KEYS = st.sampled_from(
    [
        "xdm", "data", "meta", "event", "events", "_id", "eventType", "timestamp", "identityMap",
        "Email", "email", "ECID", "CRMID", "crmid", "Phone", "id", "primary", "authenticatedState",
        "commerce", "order", "purchaseID", "priceTotal", "currencyCode", "purchases", "value",
        "productListAdds", "cart", "cartID", "productListItems", "SKU", "name", "quantity",
        "web", "webPageDetails", "URL", "customer", "tier", "profile_id", "user_id", "zendeskUserId",
    ]
) | st.text(max_size=8)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["commerce.purchases", "commerce.productListAdds", "web.webpagedetails.pageViews",
                      "jane@example.com", "+14155550100", "2024-05-01T12:00:00Z", "true", ""])
)  # fmt: skip
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=40,
)
EVENTS = st.fixed_dictionaries(
    {
        "xdm": st.dictionaries(KEYS, JSON, max_size=8),
        "data": st.dictionaries(KEYS, JSON, max_size=4),
        "meta": st.just({}),
    }
)
LIMITS = PayloadLimits(max_events=5, max_depth=6, max_string_length=20)


@FUZZ
@given(JSON)
def test_any_json_is_a_payload_or_a_problem(value: Any) -> None:
    body = json.dumps(value).encode()
    for limits in (None, LIMITS):
        try:
            parsed = parse_payload(body, limits)
        except Problem as problem:
            assert problem.to_dict()["code"] == problem.code
            continue
        assert isinstance(parsed, ParsedPayload)
        assert all(set(event) == {"xdm", "data", "meta"} for event in parsed.events)
        assert all(isinstance(event["xdm"], dict) for event in parsed.events)


@FUZZ
@given(st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()[:-1]))
def test_any_bytes_are_a_payload_or_a_problem(body: bytes) -> None:
    try:
        parse_payload(body, LIMITS)
    except Problem as problem:
        assert problem.status == 400 or problem.code == "too_many_events"


@pytest.fixture(scope="module")
def shipped() -> tuple[Any, Any]:
    settings_ = make_settings(relay_mappings_dir=MAPPINGS)
    destinations = build_destinations(settings_)
    return load_checked_mappings(settings_, destinations), destinations


@settings(FUZZ, max_examples=max(1, EXAMPLES // 3))  # each example renders every mapping
@given(st.lists(EVENTS, min_size=1, max_size=3))
def test_every_shipped_mapping_renders_any_event_or_says_why(
    shipped: tuple[Any, Any], events: list[Any]
) -> None:
    mappings, destinations = shipped
    for mapping in mappings.mappings:  # `only` skips `when`: every mapping renders every event
        for outcome in plan(events, mappings, destinations, only=mapping):
            assert outcome.status in ("planned", "rejected")
            if outcome.problem is not None:
                assert outcome.problem.code in ("mapping_error", "validation_failed")
    plan(events, mappings, destinations)  # and the normal matching path


TEMPLATES = [
    "{{ lower(xdm.identityMap.Email[0].id) }}",
    "{{ hashed_email(primary_identity(xdm.identityMap, 'email')) }}",
    "{{ e164(data.customer.phone, 'US') }}",
    "{{ iso8601(xdm.timestamp) }}",
    "{{ snake_case(xdm.eventType) }}",
    '{{ coalesce(data.name, xdm._id, `"none"`) }}',
    "{{ identities(xdm.identityMap, 'ECID')[].id }}",
    "{{ underscore_keys(data) }}",
    "{{ drop_nulls(data.customer) }}",
    "{{ sum(xdm.productListItems[].quantity || `[]`) }}",
    "Order {{ xdm.commerce.order.purchaseID }} of {{ xdm.timestamp }}",
    "{{ xdm.productListItems[].{sku: SKU, qty: quantity} }}",
    "{{ join(',', xdm.productListItems[].SKU || `[]`) }}",
    "{{ sha256(trim(upper(data.name))) }}",
]
RENDERERS = [compile_template({"value": template, "list": [template]}) for template in TEMPLATES]


@FUZZ
@given(JSON)
def test_the_template_renderer_gives_a_value_or_a_render_error(event: Any) -> None:
    for render in RENDERERS:
        with contextlib.suppress(RenderError, ExpressionError):
            json.dumps(render(event))


def _depth_and_longest(value: Any) -> tuple[int, int]:
    """Containers nested, and the longest string or key, by plain recursion."""
    if isinstance(value, str):
        return 0, len(value)
    if isinstance(value, dict):
        parts = [_depth_and_longest(v) for v in value.values()] + [(0, len(k)) for k in value]
    elif isinstance(value, list):
        parts = [_depth_and_longest(v) for v in value]
    else:
        return 0, 0
    return 1 + max((d for d, _ in parts), default=0), max((n for _, n in parts), default=0)


# Strings full of what could fool a reading of the bytes: brackets, quotes, backslashes.
BRACKETY = st.text(alphabet='[]{}"\\aé ', max_size=25)
BRACKETY_JSON = st.recursive(
    st.integers() | BRACKETY,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(BRACKETY, children, max_size=4),
    max_leaves=30,
)


@FUZZ
@given(JSON | BRACKETY_JSON, st.booleans())
def test_the_limits_agree_with_plain_recursion(value: Any, ascii_only: bool) -> None:
    """``check_limits`` reads most bodies' limits from their bytes, not by a walk."""
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    depth, longest = _depth_and_longest(value)
    expected = set()
    if depth > LIMITS.max_depth:
        expected.add("json_too_deep")
    if longest > LIMITS.max_string_length:
        expected.add("string_too_long")
    try:
        check_limits(json.loads(body), body, LIMITS)
    except Problem as problem:
        assert problem.code in expected
    else:
        assert not expected
