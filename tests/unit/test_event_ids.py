"""Event ids (app/mapping/event_ids.py): the mapping's ``event_id``, or one derived from the
event's content that is stable across re-sends and tells events apart."""

from __future__ import annotations

import copy
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from app.mapping.event_ids import DERIVED, MAPPING, derived_event_id, identify
from app.mapping.loader import MappingSet, load_mappings
from app.payloads import parse_payload
from app.pipeline import plan
from app.relay import build_destinations
from tests.conftest import make_settings

ALLOY = Path(__file__).resolve().parents[1] / "data" / "alloy"  # bodies Adobe's Web SDK sent


def alloy_event(name: str) -> dict[str, Any]:
    [event] = parse_payload((ALLOY / name).read_bytes()).events
    return event


def mapping_with(tmp_path: Path, event_id: str | None) -> Any:
    line = f"event_id: {json.dumps(event_id)}\n" if event_id is not None else ""
    (tmp_path / "m.yaml").write_text(f"destination: zendesk\n{line}body:\n  event: {{source: s, type: t}}\n")
    [mapping] = load_mappings(tmp_path, build_destinations(make_settings())).mappings
    return mapping


def test_a_derived_id_is_an_rfc_9562_uuid_of_the_sha_256_of_the_content() -> None:
    made = derived_event_id({"xdm": {"eventType": "x"}, "data": {}, "meta": {}})
    parsed = uuid.UUID(made)
    assert str(parsed) == made
    assert parsed.version == 8 and parsed.variant == uuid.RFC_4122
    # the SHA-256 of {"data":{},"xdm":{"eventType":"x"}} begins d5879a8414a89b555b46c5742ad9cc36
    assert made == "d5879a84-14a8-8b55-9b46-c5742ad9cc36"


def test_a_derived_id_does_not_depend_on_key_order_or_meta() -> None:
    event = alloy_event("03-purchase.json")
    reordered = json.loads(json.dumps(event, sort_keys=True))
    reordered["xdm"] = dict(reversed(list(reordered["xdm"].items())))
    # what the Web SDK changes from one send of a request to the next
    other_meta = {"state": {"domain": "shop.example", "cookiesEnabled": True}, "queueTimeMillis": 912}
    assert (
        derived_event_id(event)
        == derived_event_id(reordered)
        == derived_event_id({**event, "meta": other_meta})
    )


@pytest.mark.parametrize(
    "change",
    [
        lambda e: e["xdm"].update(timestamp="2026-12-07T06:11:37.838Z"),  # a millisecond later
        lambda e: e["data"]["customer"].update(tier="silver"),
        lambda e: e["xdm"]["productListItems"][0].update(quantity=2),
        lambda e: e["xdm"]["identityMap"].pop("CRMID"),
    ],
    ids=["timestamp", "data", "item", "identity"],
)
def test_different_events_get_different_ids(change: Any) -> None:
    event = alloy_event("03-purchase.json")
    changed = copy.deepcopy(event)
    change(changed)
    assert derived_event_id(changed) != derived_event_id(event)


def test_every_captured_web_sdk_event_gets_its_own_id() -> None:
    ids = {derived_event_id(alloy_event(path.name)) for path in ALLOY.glob("*.json")}
    assert len(ids) == len(list(ALLOY.glob("*.json"))) == 5


def test_an_event_nested_deeper_than_orjson_writes_still_gets_a_stable_id() -> None:
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(400):  # RELAY_MAX_JSON_DEPTH may be up to 512; orjson writes 254 levels
        inner["a"] = {}
        inner = inner["a"]
    event = {"xdm": {"eventType": "x", "deep": deep}, "data": {}, "meta": {}}
    before = derived_event_id(event)
    assert derived_event_id(copy.deepcopy(event)) == before
    inner["b"] = 1
    assert derived_event_id(event) != before


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("xdm._id", ("order-1", MAPPING)),
        ("data.number", ("42", MAPPING)),  # text, as before
        ("xdm.missing", (None, DERIVED)),
        ("data.empty", (None, DERIVED)),
        (None, (None, DERIVED)),  # a mapping without `event_id`
    ],
)
def test_the_mapping_names_the_id_and_else_it_is_derived(
    tmp_path: Path, expression: str | None, expected: tuple[str | None, str]
) -> None:
    event = {"xdm": {"_id": "order-1"}, "data": {"number": 42, "empty": ""}, "meta": {}}
    value, source = identify(mapping_with(tmp_path, expression), event)
    assert source == expected[1]
    assert value == (expected[0] or derived_event_id(event))


def test_an_outcome_says_where_its_id_came_from(tmp_path: Path) -> None:
    mapping = mapping_with(tmp_path, "xdm._id")
    destinations = build_destinations(make_settings())
    events = [{"xdm": {"_id": "order-1"}, "data": {}, "meta": {}}, alloy_event("03-purchase.json")]
    named, derived = (o.to_dict() for o in plan(events, MappingSet((mapping,)), destinations))
    assert (named["event_id"], named["event_id_source"]) == ("order-1", "mapping")
    assert derived["event_id_source"] == "derived"
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", derived["event_id"]
    )
