"""Adobe payload shapes -> normalised events (app/payloads.py)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.payloads import (
    ParsedPayload,
    PayloadLimits,
    merge_identity_maps,
    normalise,
    parse_json,
    parse_payload,
)
from app.problems import Problem
from tests.conftest import ADOBE_SAMPLES

XDM = {
    "_id": "evt-1",
    "eventType": "commerce.purchases",
    "timestamp": "2024-05-01T12:00:00Z",
    "identityMap": {"Email": [{"id": "jane@example.com", "primary": True}]},
}


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


# ------------------------------------------------------------------------------- shapes


def test_single_shape() -> None:
    body = {"xdm": XDM, "data": {"customer": {"tier": "gold"}}, "meta": {"state": 1}}
    assert parse_payload(dumps(body)) == ParsedPayload(
        "single", [{"xdm": XDM, "data": {"customer": {"tier": "gold"}}, "meta": {"state": 1}}]
    )


def test_single_shape_defaults_data_and_meta_to_empty_objects() -> None:
    parsed = parse_payload(dumps({"xdm": XDM}))
    assert parsed.shape == "single"
    assert parsed.events == [{"xdm": XDM, "data": {}, "meta": {}}]


def test_single_shape_null_data_and_meta_become_empty_objects() -> None:
    parsed = parse_payload(b'{"xdm": {"eventType": "x"}, "data": null, "meta": null}')
    assert parsed.events == [{"xdm": {"eventType": "x"}, "data": {}, "meta": {}}]


def test_wrapped_shape() -> None:
    body = {"event": {"xdm": XDM, "data": {"a": 1}}, "query": {"personalization": {}}}
    parsed = parse_payload(dumps(body))
    assert parsed.shape == "wrapped"
    assert parsed.events == [{"xdm": XDM, "data": {"a": 1}, "meta": {}}]


def test_wrapped_shape_keeps_the_events_own_meta() -> None:
    parsed = parse_payload(dumps({"event": {"xdm": XDM, "meta": {"m": True}}}))
    assert parsed.events == [{"xdm": XDM, "data": {}, "meta": {"m": True}}]


def test_bare_xdm_shape() -> None:
    parsed = parse_payload(dumps(XDM))
    assert parsed.shape == "bare"
    assert parsed.events == [{"xdm": XDM, "data": {}, "meta": {}}]


@pytest.mark.parametrize(
    "bare",
    [
        {"eventType": "web.webpagedetails.pageViews"},
        {"timestamp": "2024-05-01T12:00:00Z"},
        {"identityMap": {"ECID": [{"id": "1"}]}},
        {"_myorg": {"loyalty": "gold"}},
    ],
)
def test_bare_xdm_is_recognised_by_any_xdm_field(bare: dict[str, Any]) -> None:
    assert normalise(bare) == ParsedPayload("bare", [{"xdm": bare, "data": {}, "meta": {}}])


def test_batch_shape() -> None:
    body = {"events": [{"xdm": {"_id": "a"}}, {"xdm": {"_id": "b"}, "data": {"d": 2}}]}
    parsed = parse_payload(dumps(body))
    assert parsed.shape == "batch"
    assert parsed.events == [
        {"xdm": {"_id": "a"}, "data": {}, "meta": {}},
        {"xdm": {"_id": "b"}, "data": {"d": 2}, "meta": {}},
    ]


def test_empty_batch_gives_zero_events() -> None:
    assert parse_payload(b'{"events": []}') == ParsedPayload("batch", [])


def test_empty_batch_with_request_level_xdm_and_meta_gives_zero_events() -> None:
    body = {"events": [], "xdm": {"identityMap": {"ECID": [{"id": "1"}]}}, "meta": {"a": 1}}
    assert parse_payload(dumps(body)) == ParsedPayload("batch", [])


def test_bare_xdm_item_inside_a_batch() -> None:
    body = {"events": [{"eventType": "web.webpagedetails.pageViews", "_id": "p1"}, {"xdm": {"_id": "x"}}]}
    parsed = parse_payload(dumps(body))
    assert parsed.shape == "batch"
    assert parsed.events == [
        {"xdm": {"eventType": "web.webpagedetails.pageViews", "_id": "p1"}, "data": {}, "meta": {}},
        {"xdm": {"_id": "x"}, "data": {}, "meta": {}},
    ]


def test_bare_xdm_inside_wrapped_event() -> None:
    parsed = parse_payload(b'{"event": {"eventType": "a"}}')
    assert parsed == ParsedPayload("wrapped", [{"xdm": {"eventType": "a"}, "data": {}, "meta": {}}])


# ------------------------------------------------------------ batch: identityMap and meta


def test_batch_request_identity_map_is_merged_into_every_event() -> None:
    ecid = [{"id": "ECID-1", "primary": True}]
    body = {
        "xdm": {"identityMap": {"ECID": ecid}},
        "events": [
            {"xdm": {"_id": "a"}},
            {"xdm": {"_id": "b", "identityMap": {"Email": [{"id": "j@example.com"}]}}},
        ],
    }
    parsed = parse_payload(dumps(body))
    assert [event["xdm"] for event in parsed.events] == [
        {"_id": "a", "identityMap": {"ECID": [{"id": "ECID-1", "primary": True}]}},
        {
            "_id": "b",
            "identityMap": {
                "Email": [{"id": "j@example.com"}],
                "ECID": [{"id": "ECID-1", "primary": True}],
            },
        },
    ]


def test_batch_merge_keeps_the_events_own_entries_first_and_appends_only_new_ids() -> None:
    body = {
        "xdm": {
            "identityMap": {
                "ECID": [
                    {"id": "E-1", "primary": False, "authenticatedState": "ambiguous"},
                    {"id": "E-2", "primary": True},
                ]
            }
        },
        "events": [{"xdm": {"identityMap": {"ECID": [{"id": "E-1", "primary": True}]}}}],
    }
    [event] = parse_payload(dumps(body)).events
    assert event["xdm"]["identityMap"] == {
        "ECID": [{"id": "E-1", "primary": True}, {"id": "E-2", "primary": True}]
    }


def test_batch_merge_into_a_bare_xdm_item() -> None:
    body = {
        "xdm": {"identityMap": {"ECID": [{"id": "E-1"}]}},
        "events": [{"eventType": "x", "identityMap": {"CRMID": [{"id": "C-1"}]}}],
    }
    [event] = parse_payload(dumps(body)).events
    assert event == {
        "xdm": {"eventType": "x", "identityMap": {"CRMID": [{"id": "C-1"}], "ECID": [{"id": "E-1"}]}},
        "data": {},
        "meta": {},
    }


def test_batch_merge_does_not_mutate_the_input() -> None:
    payload = {
        "xdm": {"identityMap": {"ECID": [{"id": "E-2"}], "Email": [{"id": "a@b.c"}]}},
        "meta": {"state": {"domain": "x"}},
        "events": [
            {"xdm": {"identityMap": {"ECID": [{"id": "E-1"}]}}, "meta": {"own": 1}},
            {"eventType": "bare"},
        ],
    }
    before = copy.deepcopy(payload)
    parsed = normalise(payload)
    assert payload == before
    assert parsed.events[0]["xdm"]["identityMap"] == {
        "ECID": [{"id": "E-1"}, {"id": "E-2"}],
        "Email": [{"id": "a@b.c"}],
    }
    assert parsed.events[1]["xdm"] == {
        "eventType": "bare",
        "identityMap": {"ECID": [{"id": "E-2"}], "Email": [{"id": "a@b.c"}]},
    }


def test_batch_events_without_their_own_map_share_the_request_level_one() -> None:
    """Shared, not copied: a large request-level map costs once per request, not per event."""
    payload = {
        "xdm": {"identityMap": {"ECID": [{"id": "E-1"}]}},
        "meta": {"state": 1},
        "events": [{"xdm": {}}, {"xdm": {}}, {"xdm": {"identityMap": {"Email": [{"id": "e"}]}}}],
    }
    first, second, third = normalise(payload).events
    assert first["xdm"]["identityMap"] is second["xdm"]["identityMap"]
    assert first["meta"] is second["meta"]
    # an event with its own map gets a merged one, sharing the request-level lists
    assert third["xdm"]["identityMap"] == {"Email": [{"id": "e"}], "ECID": [{"id": "E-1"}]}
    assert third["xdm"]["identityMap"]["ECID"] is first["xdm"]["identityMap"]["ECID"]
    assert payload["xdm"]["identityMap"] == {"ECID": [{"id": "E-1"}]}


def test_batch_request_level_meta_is_a_default_for_each_event() -> None:
    body = {
        "meta": {"state": {"domain": "shop.example.com"}, "konductorConfig": {"a": 1}},
        "events": [{"xdm": {"_id": "a"}}, {"xdm": {"_id": "b"}, "meta": {"konductorConfig": {"b": 2}}}],
    }
    parsed = parse_payload(dumps(body))
    assert [event["meta"] for event in parsed.events] == [
        {"state": {"domain": "shop.example.com"}, "konductorConfig": {"a": 1}},
        {"state": {"domain": "shop.example.com"}, "konductorConfig": {"b": 2}},
    ]


def test_batch_request_level_xdm_without_identity_map_changes_nothing() -> None:
    body = {"xdm": {"device": {"type": "mobile"}}, "events": [{"xdm": {"_id": "a"}}]}
    assert parse_payload(dumps(body)).events == [{"xdm": {"_id": "a"}, "data": {}, "meta": {}}]


# ------------------------------------------------------------------ merge_identity_maps


def test_merge_identity_maps_same_namespace_keeps_own_entries_first() -> None:
    own = {"Email": [{"id": "a@x.com", "primary": True}]}
    request = {"Email": [{"id": "a@x.com", "primary": False}, {"id": "b@x.com"}]}
    assert merge_identity_maps(own, request) == {
        "Email": [{"id": "a@x.com", "primary": True}, {"id": "b@x.com"}]
    }


def test_merge_identity_maps_adds_new_namespace() -> None:
    assert merge_identity_maps({"Email": [{"id": "a"}]}, {"ECID": [{"id": "1"}]}) == {
        "Email": [{"id": "a"}],
        "ECID": [{"id": "1"}],
    }


def test_merge_identity_maps_without_own_map() -> None:
    assert merge_identity_maps(None, {"ECID": [{"id": "1"}]}) == {"ECID": [{"id": "1"}]}


def test_merge_identity_maps_does_not_mutate_inputs() -> None:
    own = {"ECID": [{"id": "1"}]}
    request = {"ECID": [{"id": "2"}], "Email": [{"id": "e"}]}
    own_before, request_before = copy.deepcopy(own), copy.deepcopy(request)
    merged = merge_identity_maps(own, request)
    assert merged == {"ECID": [{"id": "1"}, {"id": "2"}], "Email": [{"id": "e"}]}
    assert own == own_before
    assert request == request_before
    assert merged["ECID"] is not own["ECID"]  # a namespace both have: a new list


def test_merge_identity_maps_namespaces_are_case_sensitive() -> None:
    # Namespaces are free-form; `email` and `Email` are distinct keys in the map.
    assert merge_identity_maps({"Email": [{"id": "a"}]}, {"email": [{"id": "a"}]}) == {
        "Email": [{"id": "a"}],
        "email": [{"id": "a"}],
    }


# ------------------------------------------------------------------------ text and bytes


def test_non_ascii_and_emoji_are_preserved() -> None:
    body = '{"xdm": {"placeContext": {"geo": {"city": "Tōkyō"}}, "note": "🎉 ok"}}'.encode()
    [event] = parse_payload(body).events
    assert event["xdm"] == {"placeContext": {"geo": {"city": "Tōkyō"}}, "note": "🎉 ok"}


def test_escaped_non_ascii_is_decoded() -> None:
    [event] = parse_payload(b'{"xdm": {"city": "T\\u014dky\\u014d \\ud83c\\udf89"}}').events
    assert event["xdm"]["city"] == "Tōkyō 🎉"


def test_nul_character_inside_a_string_is_preserved() -> None:
    [event] = parse_payload(b'{"xdm": {"name": "a\\u0000b"}}').events
    assert event["xdm"]["name"] == "a\x00b"
    assert len(event["xdm"]["name"]) == 3


def test_utf8_bom_is_tolerated() -> None:
    body = b"\xef\xbb\xbf" + '{"xdm": {"city": "Tōkyō"}}'.encode()
    assert parse_payload(body) == ParsedPayload(
        "single", [{"xdm": {"city": "Tōkyō"}, "data": {}, "meta": {}}]
    )


def test_parse_json_returns_any_json_value() -> None:
    assert parse_json(b"[1, 2]") == [1, 2]
    assert parse_json(b"null") is None
    assert parse_json(b' {"a": 1.5} \n') == {"a": 1.5}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"xdm": {"a": 1}', id="truncated"),
        pytest.param(b'{"xdm": {"a": "\xff\xfe"}}', id="invalid-utf8"),
        pytest.param(b"", id="empty"),
        pytest.param(b"   \n", id="whitespace-only"),
        pytest.param(b"\xef\xbb\xbf", id="bom-only"),
        pytest.param(b"{'xdm': {}}", id="single-quotes"),
        pytest.param(b'{"xdm": {}} trailing', id="trailing-garbage"),
        pytest.param(b'{"xdm": {"a": "\\ud800"}}', id="lone-surrogate"),
        pytest.param(b"NaN", id="nan"),
    ],
)
def test_invalid_json_is_a_problem(body: bytes) -> None:
    with pytest.raises(Problem) as caught:
        parse_payload(body)
    assert caught.value.code == "invalid_json"
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[]", id="empty-array"),
        pytest.param(b'[{"xdm": {}}]', id="array"),
        pytest.param(b"42", id="number"),
        pytest.param(b'"text"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"true", id="boolean"),
        pytest.param(b"{}", id="empty-object"),
        pytest.param(b'{"foo": 1}', id="unknown-keys"),
        pytest.param(b'{"events": 3}', id="events-number"),
        pytest.param(b'{"events": {"xdm": {}}}', id="events-object"),
        pytest.param(b'{"events": [1]}', id="events-item-number"),
        pytest.param(b'{"events": [{"xdm": {}}, "x"]}', id="events-second-item-string"),
        pytest.param(b'{"events": [{"foo": 1}]}', id="events-item-unknown"),
        pytest.param(b'{"xdm": []}', id="xdm-array"),
        pytest.param(b'{"xdm": null}', id="xdm-null"),
        pytest.param(b'{"xdm": {}, "data": []}', id="data-array"),
        pytest.param(b'{"xdm": {}, "meta": "m"}', id="meta-string"),
        pytest.param(b'{"event": "x"}', id="event-string"),
        pytest.param(b'{"event": {"foo": 1}}', id="event-without-xdm"),
    ],
)
def test_unsupported_payload_is_a_problem(body: bytes) -> None:
    with pytest.raises(Problem) as caught:
        parse_payload(body)
    assert caught.value.code == "unsupported_payload"
    assert caught.value.status == 400


def test_unsupported_payload_detail_names_the_batch_item() -> None:
    with pytest.raises(Problem) as caught:
        parse_payload(b'{"events": [{"xdm": {}}, 7]}')
    assert caught.value.detail == "`events[1]` must be an object, got a number"


# ------------------------------------------------------------------- real Adobe samples

SHAPES = {"single": "single", "arc": "wrapped", "batch": "batch"}
SAMPLES = sorted(ADOBE_SAMPLES.glob("*.json"))


def test_the_adobe_samples_are_carried_with_the_tests() -> None:
    assert len(SAMPLES) == 18
    assert (ADOBE_SAMPLES / "SOURCES.md").is_file()  # their licences and sources


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_adobe_samples_parse_to_their_shape(sample: Path) -> None:
    raw = sample.read_bytes()
    parsed = parse_payload(raw)
    assert parsed.shape == SHAPES[sample.name.split(".")[-2]]
    assert parsed.events
    source = json.loads(raw)
    items = source["events"] if parsed.shape == "batch" else [source.get("event", source)]
    assert len(parsed.events) == len(items)
    for event, item in zip(parsed.events, items, strict=True):
        assert set(event) == {"xdm", "data", "meta"}
        assert event["data"] == (item.get("data") or {})
        expected_xdm = item.get("xdm", item)
        for key, value in expected_xdm.items():
            if key != "identityMap":
                assert event["xdm"][key] == value


# ------------------------------------------------------------------------------- limits

LIMITS = PayloadLimits(max_events=3, max_depth=5, max_string_length=10)


def nested(depth: int) -> bytes:
    """``{"xdm": {"a": [[...]]}}`` with ``depth`` containers in all."""
    return b'{"xdm": {"a": ' + b"[" * (depth - 2) + b"]" * (depth - 2) + b"}}"


def limit_code(body: bytes, limits: PayloadLimits = LIMITS) -> str | None:
    try:
        parse_payload(body, limits)
    except Problem as problem:
        return problem.code
    return None


def test_batches_over_the_event_limit_are_refused() -> None:
    assert limit_code(dumps({"events": [{"xdm": {}}] * 3})) is None
    assert limit_code(dumps({"events": [{"xdm": {}}] * 4})) == "too_many_events"


def test_nesting_is_counted_in_containers() -> None:
    assert limit_code(nested(5)) is None
    assert limit_code(nested(6)) == "json_too_deep"
    assert limit_code(b'{"xdm": {"a": [1, {"b": [{"c": 1}]}]}}') == "json_too_deep"  # 6 deep, inside a list


def test_strings_and_keys_over_the_length_limit_are_refused() -> None:
    assert limit_code(dumps({"xdm": {"a": "x" * 10, "b": ["y" * 10]}})) is None
    assert limit_code(dumps({"xdm": {"a": "x" * 11}})) == "string_too_long"
    assert limit_code(dumps({"xdm": {"a": [1, ["x" * 11]]}})) == "string_too_long"
    assert limit_code(dumps({"xdm": {"k" * 11: 1}})) == "string_too_long"
    assert limit_code(dumps({"eventType": "é" * 11}).replace(b"\\u00e9", "é".encode())) == "string_too_long"


def test_brackets_and_length_inside_strings_do_not_trip_the_limits() -> None:
    generous = PayloadLimits(max_events=3, max_depth=5, max_string_length=1000)
    assert limit_code(dumps({"xdm": {"a": "[[[[[[[[{{{{{{{"}}), generous) is None


def test_the_parsers_own_depth_limit_is_json_too_deep() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    assert limit_code(deep, PayloadLimits(max_depth=10_000)) == "json_too_deep"
    assert limit_code(deep) == "json_too_deep"


def test_a_scalar_body_over_the_limits_is_unsupported_not_a_crash() -> None:
    """Found by hypothesis: the limit walk iterated over a top-level number."""
    assert limit_code(b"1.0000000000000002e+16") == "unsupported_payload"


# ---------------------------------------------------------------------- identity caps

CAPS = PayloadLimits(max_identities_per_namespace=3, max_identity_namespaces=3, max_identities=5)


def ids(count: int, prefix: str = "i") -> list[dict[str, str]]:
    return [{"id": f"{prefix}{n}"} for n in range(count)]


def test_an_identity_map_within_the_caps_is_accepted() -> None:
    single = {"xdm": {"identityMap": {"Email": ids(3), "ECID": ids(2)}}}
    assert limit_code(dumps(single), CAPS) is None
    batch = {
        "xdm": {"identityMap": {"Email": ids(2)}},
        "events": [{"xdm": {"identityMap": {"email": ids(1)}}}],
    }
    assert limit_code(dumps(batch), CAPS) is None


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"xdm": {"identityMap": {"Email": ids(4)}}}, id="one-namespace"),
        pytest.param({"xdm": {"identityMap": {"Email": ids(2), "EMAIL": ids(2)}}}, id="case-variants"),
        pytest.param({"xdm": {"identityMap": {"a": [], "b": [], "c": [], "d": []}}}, id="namespaces"),
        pytest.param({"xdm": {"identityMap": {"a": ids(3), "b": ids(3)}}}, id="in-all"),
        pytest.param({"event": {"xdm": {"identityMap": {"a": ids(4)}}}}, id="wrapped"),
        pytest.param({"eventType": "x", "identityMap": {"a": ids(4)}}, id="bare"),
        pytest.param({"xdm": {"identityMap": {"a": ids(4)}}, "events": []}, id="request-level-alone"),
        pytest.param(
            {
                "xdm": {"identityMap": {"Email": ids(2)}},
                "events": [{"xdm": {"identityMap": {"email": ids(2)}}}],
            },
            id="own-plus-request-level-per-namespace",
        ),
        pytest.param(
            {
                "xdm": {"identityMap": {"a": ids(2), "b": ids(1)}},
                "events": [{"xdm": {"identityMap": {"c": ids(3)}}}],
            },
            id="own-plus-request-level-in-all",
        ),
        pytest.param(
            {
                "xdm": {"identityMap": {"a": [], "b": []}},
                "events": [{"xdm": {"identityMap": {"c": [], "d": []}}}],
            },
            id="own-plus-request-level-namespaces",
        ),
    ],
)
def test_identity_maps_over_the_caps_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(Problem) as caught:
        parse_payload(dumps(body), CAPS)
    assert caught.value.code == "too_many_identities"
    assert caught.value.status == 413
    assert "RELAY_MAX_IDENTIT" in str(caught.value.detail)


def test_the_request_level_map_is_counted_once_not_per_event() -> None:
    body = {"xdm": {"identityMap": {"Email": ids(3)}}, "events": [{"xdm": {}}] * 3}
    assert limit_code(dumps(body), replace(CAPS, max_events=3)) is None


def test_without_limits_nothing_is_capped() -> None:
    assert len(parse_payload(dumps({"xdm": {"identityMap": {"a": ids(500)}}})).events) == 1


def test_merging_ids_that_are_not_strings_is_not_a_crash() -> None:
    own = {"a": [{"id": ["x"]}, {"id": {"k": 1}}]}
    request = {"a": [{"id": ["x"]}, {"id": ["y"]}]}
    assert merge_identity_maps(own, request) == {"a": [{"id": ["x"]}, {"id": {"k": 1}}, {"id": ["y"]}]}


def test_a_large_request_level_meta_is_refused() -> None:
    body = {"meta": {f"k{n}": n for n in range(65)}, "events": [{"xdm": {}}]}
    assert limit_code(dumps(body), PayloadLimits()) == "unsupported_payload"
    body["meta"] = {f"k{n}": n for n in range(64)}
    assert limit_code(dumps(body), PayloadLimits()) is None


# ------------------------------------------------------------------ integers beyond 2^63


@pytest.mark.parametrize(
    "literal", ["-9223372036854775808", "9223372036854775807", "9223372036854775808", "18446744073709551615"]
)
def test_integers_orjson_keeps_exactly_are_kept(literal: str) -> None:
    for body in (f'{{"xdm": {{"n": {literal}}}}}', f'{{"xdm":{{"n":[1,\n {literal}]}}}}'):
        [event] = parse_payload(body.encode()).events
        value = event["xdm"]["n"]
        assert (value if isinstance(value, int) else value[-1]) == int(literal)


@pytest.mark.parametrize(
    "literal", ["18446744073709551616", "-9223372036854775809", "1" * 30, "-" + "9" * 300]
)
def test_integers_beyond_64_bits_are_refused_not_made_floats(literal: str) -> None:
    for body in (
        f'{{"xdm": {{"n": {literal}}}}}',
        f"[{literal}]",
        literal,
        f'{{"xdm":{{"s":"\\\\","n":{literal}}}}}',
    ):
        with pytest.raises(Problem) as caught:
            parse_json(body.encode())
        assert caught.value.code == "invalid_json"
        assert "send it as a string" in str(caught.value.detail)
        assert len(str(caught.value.detail)) < 200


@pytest.mark.parametrize(
    "body",
    [
        b'{"xdm": {"ecid": "123456789012345678901234567890", "s": "a: 123456789012345678901234567"}}',
        b'{"xdm": {"f": 1.12345678901234567890123, "e": 1e-12345678901234567890, "g": 12345678901234567890123e2}}',
    ],
)
def test_long_digit_runs_in_strings_fractions_and_exponents_are_not_integers(body: bytes) -> None:
    assert parse_payload(body).events


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(b'{"xdm": {"a": "\\"[[[[[[\\""}}', None, id="escaped-quotes-around-brackets"),
        pytest.param(
            b'{"xdm": {"a": "\\"xxxxxxxxxx"}}', "string_too_long", id="escaped-quote-in-a-long-string"
        ),
        pytest.param(
            b'{"xdm": {"a": "' + b"\\u00e9" * 10 + b'"}}', None, id="escapes-longer-than-their-text"
        ),
        pytest.param(b'{"xdm": {"a": [[{"b": "]]]]]]"}]]}}', None, id="closing-brackets-in-strings"),
        pytest.param(b'{"xdm": {"a": [[[{"b": "{{{{{{"}]]]}}', "json_too_deep", id="six-deep-after-strings"),
        pytest.param(b'{"xdm": {"a": "\\\\"}, "b": [[[[[]]]]]}', "json_too_deep", id="escaped-backslash"),
    ],
)
def test_the_limits_read_from_the_bytes_agree_with_the_walk(body: bytes, code: str | None) -> None:
    assert limit_code(body) == code
