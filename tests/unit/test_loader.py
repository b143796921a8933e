"""Mapping files -> compiled mappings (app/mapping/loader.py) and their examples (examples.py)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from app.destinations.base import Destination
from app.mapping.examples import check_example, run_examples
from app.mapping.loader import (
    MappingIssue,
    MappingLoadError,
    MappingSet,
    load_mapping_file,
    load_mappings,
)
from app.relay import build_destinations
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "mappings"
DESTINATIONS = {"zendesk": ("events", "profile_events", "user_events")}

PURCHASE = {
    "xdm": {
        "_id": "evt-1",
        "eventType": "commerce.purchases",
        "timestamp": "2024-05-01T12:00:00Z",
        "identityMap": {"Email": [{"id": "Jane@Example.com", "primary": True}]},
        "commerce": {"order": {"purchaseID": "ORD-1", "priceTotal": 12.5}},
    },
    "data": {"uid": "77", "customer": {"name": "Jane"}},
}
NORMALISED = {"xdm": PURCHASE["xdm"], "data": PURCHASE["data"], "meta": {}}

VALID = """\
# comment line
name: order-completed
destination: zendesk
when: "xdm.eventType == 'commerce.purchases'"
event_id: "xdm._id"
body:
  profile:
    source: shop
    type: customer
    name: "{{ data.customer.name }}"
    identifiers:
      - type: email
        value: "{{ lower(primary_identity(xdm.identityMap, 'email')) }}"
  event:
    source: shop
    type: order_completed
    created_at: "{{ xdm.timestamp }}"
    description: "Order {{ xdm.commerce.order.purchaseID }}"
    properties:
      total: "{{ xdm.commerce.order.priceTotal }}"
      tier: "{{ data.customer.tier }}"
"""

EXPECTED_BODY = {
    "profile": {
        "source": "shop",
        "type": "customer",
        "name": "Jane",
        "identifiers": [{"type": "email", "value": "jane@example.com"}],
    },
    "event": {
        "source": "shop",
        "type": "order_completed",
        "created_at": "2024-05-01T12:00:00Z",
        "description": "Order ORD-1",
        "properties": {"total": 12.5},
    },
}

EXPECT_YAML = """\
examples:
  - input: purchase.json
    expect:
      profile:
        source: shop
        type: customer
        name: Jane
        identifiers:
          - {type: email, value: jane@example.com}
      event:
        source: shop
        type: order_completed
        created_at: "2024-05-01T12:00:00Z"
        description: Order ORD-1
        properties:
          total: 12.5
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_one(tmp_path: Path, text: str, name: str = "mapping.yaml") -> Any:
    return load_mapping_file(write(tmp_path, name, text), DESTINATIONS)


def refusal(tmp_path: Path, text: str, name: str = "mapping.yaml") -> MappingIssue:
    """The single issue raised when loading ``text`` as one mapping file."""
    path = write(tmp_path, name, text)
    with pytest.raises(MappingLoadError) as caught:
        load_mapping_file(path, DESTINATIONS)
    assert len(caught.value.issues) == 1
    issue = caught.value.issues[0]
    assert issue.file == path
    return issue


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle`` (keeps tests honest about lines)."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.fixture
def destinations() -> dict[str, Destination]:
    return build_destinations(Settings(_env_file=None, relay_allow_unauthenticated=True))  # type: ignore[call-arg]


# ------------------------------------------------------------------------ valid files


def test_valid_mapping_loads_and_renders(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, VALID)
    assert mapping.name == "order-completed"
    assert mapping.destination == "zendesk"
    assert mapping.source == tmp_path / "mapping.yaml"
    assert mapping.endpoint is None
    assert mapping.endpoint_params == {}
    assert mapping.examples == ()
    assert mapping.when is not None and mapping.when.source == "xdm.eventType == 'commerce.purchases'"
    assert mapping.event_id is not None and mapping.event_id.search(NORMALISED) == "evt-1"
    assert mapping.applies_to(NORMALISED) is True
    assert mapping.applies_to({"xdm": {"eventType": "web.webpagedetails.pageViews"}}) is False
    assert mapping.render(NORMALISED) == EXPECTED_BODY


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, "destination: zendesk\nbody: {event: {type: x}}\n", "cart-add.yaml")
    assert mapping.name == "cart-add"
    assert mapping.when is None
    assert mapping.event_id is None
    assert mapping.applies_to({"xdm": {}}) is True


def test_name_is_stripped(tmp_path: Path) -> None:
    assert load_one(tmp_path, "name: '  spaced  '\ndestination: zendesk\nbody: {}\n").name == "spaced"


def test_when_accepts_the_token_syntax(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, 'destination: zendesk\nwhen: "{{ data.uid }}"\nbody: {}\n')
    assert mapping.when is not None and mapping.when.source == "data.uid"
    assert mapping.applies_to(NORMALISED) is True
    assert mapping.applies_to({"data": {}}) is False


@pytest.mark.parametrize("value", ["", [], {}, False, None])
def test_when_uses_jmespath_truthiness(tmp_path: Path, value: Any) -> None:
    mapping = load_one(tmp_path, "destination: zendesk\nwhen: 'data.v'\nbody: {}\n")
    assert mapping.applies_to({"data": {"v": value}}) is False
    assert mapping.applies_to({"data": {"v": 0}}) is True


def test_endpoint_shorthand(tmp_path: Path) -> None:
    mapping = load_one(tmp_path, "destination: zendesk\nendpoint: profile_events\nbody: {}\n")
    assert mapping.endpoint == "profile_events"
    assert mapping.endpoint_params == {}


def test_endpoint_object_form_with_templated_params(tmp_path: Path) -> None:
    text = """\
    destination: zendesk
    endpoint: {name: user_events, user_id: "{{ data.uid }}"}
    body: {event: {type: x}}
    """
    mapping = load_one(tmp_path, text)
    assert mapping.endpoint == "user_events"
    assert set(mapping.endpoint_params) == {"user_id"}
    assert mapping.endpoint_params["user_id"](NORMALISED) == "77"


def test_yml_extension_and_file_order(tmp_path: Path) -> None:
    write(tmp_path, "b.yml", "destination: zendesk\nbody: {}\n")
    write(tmp_path, "a.yaml", "destination: zendesk\nbody: {}\n")
    write(tmp_path, "c.yaml", "destination: zendesk\nbody: {}\n")
    write(tmp_path, "notes.txt", "not a mapping")
    mappings = load_mappings(tmp_path, DESTINATIONS)
    assert isinstance(mappings, MappingSet)
    assert [m.name for m in mappings.mappings] == ["a", "b", "c"]
    assert len(mappings) == 3
    assert mappings.get("b") is not None and mappings.get("b").source == tmp_path / "b.yml"
    assert mappings.get("missing") is None


def test_empty_folder_loads_no_mappings(tmp_path: Path) -> None:
    assert len(load_mappings(tmp_path, DESTINATIONS)) == 0


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MappingLoadError) as caught:
        load_mappings(tmp_path / "nope", DESTINATIONS)
    assert [i.reason for i in caught.value.issues] == ["mappings folder not found"]


def test_yaml_values_are_plain_json_values(tmp_path: Path) -> None:
    text = """\
    destination: zendesk
    body:
      int: 3
      float: 2.5
      yes: yes
      bool: true
      date: 2024-05-01
      nothing: null
      list: [1, "two"]
    """
    body = load_one(tmp_path, text).render({})
    assert body == {
        "int": 3,
        "float": 2.5,
        "yes": "yes",
        "bool": True,
        "date": "2024-05-01",
        "list": [1, "two"],
    }
    assert [type(v) for v in body.values()] == [int, float, str, bool, str, list]


def test_unquoted_yaml_timestamp_is_kept_as_written(tmp_path: Path) -> None:
    text = "destination: zendesk\nbody:\n  utc: 2024-05-01T12:00:00Z\n  paris: 2024-05-01T14:00:00+02:00\n"
    assert load_one(tmp_path, text).render({}) == {
        "utc": "2024-05-01T12:00:00Z",
        "paris": "2024-05-01T14:00:00+02:00",
    }


def test_boolean_keys_read_as_json_text(tmp_path: Path) -> None:
    text = "destination: zendesk\nbody:\n  properties:\n    true: 1\n    null: 2\n"
    assert load_one(tmp_path, text).render({}) == {"properties": {"true": 1, "null": 2}}


# ------------------------------------------------------------------ refusals, with lines


def test_issue_str_is_file_line_reason(tmp_path: Path) -> None:
    issue = MappingIssue(tmp_path / "m.yaml", 7, "broken")
    assert str(issue) == f"{tmp_path / 'm.yaml'}:7: broken"
    error = MappingLoadError([issue, MappingIssue(tmp_path / "n.yaml", 1, "also")])
    assert str(error) == f"{tmp_path / 'm.yaml'}:7: broken\n{tmp_path / 'n.yaml'}:1: also"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        pytest.param(
            "destination: zendesk\nbody:\n  a: 1\n  b: c: d\n",
            4,
            "YAML syntax: mapping values are not allowed here",
            id="mapping-values",
        ),
        pytest.param(
            "destination: zendesk\nbody:\n  a: 1\n\tb: 2\n",
            4,
            "YAML syntax: found character '\\t' that cannot start any token",
            id="tab",
        ),
        pytest.param(
            "# one\n# two\ndestination: zendesk\nbody:\n  a: 1\n b: 2\n",
            6,
            "YAML syntax: expected <block end>, but found '<block mapping start>'",
            id="indentation",
        ),
    ],
)
def test_yaml_syntax_error_line(tmp_path: Path, text: str, line: int, reason: str) -> None:
    issue = refusal(tmp_path, text)
    assert (issue.line, issue.reason) == (line, reason)


def test_duplicate_yaml_key_line(tmp_path: Path) -> None:
    text = "destination: zendesk\nbody:\n  event:\n    type: a\n    source: s\n    type: b\n"
    issue = refusal(tmp_path, text)
    assert issue.line == 6
    assert issue.reason.startswith('YAML syntax: found duplicate key "type"')


def test_duplicate_top_level_key_line(tmp_path: Path) -> None:
    issue = refusal(tmp_path, "destination: zendesk\nbody: {}\ndestination: zendesk\n")
    assert issue.line == 3
    assert "duplicate key" in issue.reason


def test_bad_when_line(tmp_path: Path) -> None:
    text = '# c\nname: x\ndestination: zendesk\nwhen: "xdm.eventType =="\nbody: {}\n'
    issue = refusal(tmp_path, text)
    assert issue.line == 4
    assert issue.reason.startswith("`when`: invalid JMESPath `xdm.eventType ==`")


def test_bad_event_id_line(tmp_path: Path) -> None:
    text = "destination: zendesk\nbody: {}\n\nevent_id: 'xdm.'\n"
    issue = refusal(tmp_path, text)
    assert issue.line == 4
    assert issue.reason.startswith("`event_id`: invalid JMESPath `xdm.`")


def test_when_must_be_a_string(tmp_path: Path) -> None:
    issue = refusal(tmp_path, "destination: zendesk\nbody: {}\nwhen: [a]\n")
    assert (issue.line, issue.reason) == (3, "`when` must be a JMESPath string")


def test_bad_token_deep_in_body_reports_the_field_line(tmp_path: Path) -> None:
    text = VALID.replace('total: "{{ xdm.commerce.order.priceTotal }}"', 'total: "{{ xdm.commerce. }}"')
    issue = refusal(tmp_path, text)
    assert issue.line == line_of(text, "total:") == 20
    assert issue.reason.startswith("body.event.properties.total: invalid JMESPath `xdm.commerce.`")


def test_bad_token_in_a_list_item_reports_the_field_line(tmp_path: Path) -> None:
    text = VALID.replace(
        "value: \"{{ lower(primary_identity(xdm.identityMap, 'email')) }}\"", 'value: "{{ }}"'
    )
    issue = refusal(tmp_path, text)
    assert issue.line == line_of(text, 'value: "{{ }}"') == 13
    assert issue.reason == "body.profile.identifiers[0].value: empty `{{ }}` token"


def test_unclosed_token_in_a_folded_scalar_reports_the_key_line(tmp_path: Path) -> None:
    text = "destination: zendesk\nbody:\n  event:\n    description: >-\n      Order\n      {{ xdm._id\n"
    issue = refusal(tmp_path, text)
    assert issue.line == 4
    assert issue.reason.startswith("body.event.description: unclosed `{{`")


def test_whole_body_token_error_reports_the_body_line(tmp_path: Path) -> None:
    issue = refusal(tmp_path, "destination: zendesk\n\nbody: '{{ }}'\n")
    assert (issue.line, issue.reason) == (3, "empty `{{ }}` token")


def test_bad_token_under_a_dotted_key_reports_the_field_line(tmp_path: Path) -> None:
    text = "destination: zendesk\nbody:\n  event:\n    properties:\n      page.url: '{{ a. }}'\n"
    issue = refusal(tmp_path, text)
    assert issue.line == 5


def test_unknown_destination_line(tmp_path: Path) -> None:
    text = "name: x\n\ndestination: hubspot\nbody: {}\n"
    issue = refusal(tmp_path, text)
    assert (issue.line, issue.reason) == (3, "unknown destination 'hubspot' (known: zendesk)")


def test_missing_destination(tmp_path: Path) -> None:
    issue = refusal(tmp_path, "name: x\nbody: {}\n")
    assert (issue.line, issue.reason) == (1, "unknown destination None (known: zendesk)")


@pytest.mark.parametrize("value", ["[zendesk]", "{name: zendesk}"])
def test_unhashable_destination_is_a_mapping_issue(tmp_path: Path, value: str) -> None:
    issue = refusal(tmp_path, f"name: x\ndestination: {value}\nbody: {{}}\n")
    assert issue.line == 2
    assert issue.reason.startswith("unknown destination")


def test_unknown_endpoint_line(tmp_path: Path) -> None:
    text = "destination: zendesk\nbody: {}\nendpoint: tickets\n"
    issue = refusal(tmp_path, text)
    assert (issue.line, issue.reason) == (
        3,
        "unknown endpoint 'tickets' (this destination has: events, profile_events, user_events)",
    )


def test_unknown_endpoint_in_object_form_line(tmp_path: Path) -> None:
    text = "destination: zendesk\nbody: {}\nendpoint:\n  name: users\n  user_id: '{{ data.uid }}'\n"
    issue = refusal(tmp_path, text)
    assert issue.line == 3
    assert issue.reason.startswith("unknown endpoint 'users'")


def test_endpoint_object_without_name(tmp_path: Path) -> None:
    issue = refusal(tmp_path, "destination: zendesk\nbody: {}\nendpoint:\n  user_id: '{{ data.uid }}'\n")
    assert issue.line == 3
    assert issue.reason.startswith("unknown endpoint None")


def test_bad_endpoint_param_token_line(tmp_path: Path) -> None:
    text = "destination: zendesk\nbody: {}\nendpoint:\n  name: user_events\n  user_id: '{{ data. }}'\n"
    issue = refusal(tmp_path, text)
    assert issue.line == 5
    assert issue.reason.startswith("endpoint.user_id: invalid JMESPath `data.`")


def test_unknown_top_level_key_line(tmp_path: Path) -> None:
    text = "destination: zendesk\nbody: {}\n# note\nfilter: x\n"
    issue = refusal(tmp_path, text)
    assert (issue.line, issue.reason) == (4, "unknown key `filter`")


def test_missing_body(tmp_path: Path) -> None:
    issue = refusal(tmp_path, "name: x\ndestination: zendesk\n")
    assert (issue.line, issue.reason) == (1, "`body` is required (the request body to render)")


def test_null_body_is_refused(tmp_path: Path) -> None:
    issue = refusal(tmp_path, "name: x\ndestination: zendesk\nbody:\n")
    assert issue.line == 3


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- b\n", "just text\n"])
def test_file_that_is_not_an_object(tmp_path: Path, text: str) -> None:
    issue = refusal(tmp_path, text)
    assert (issue.line, issue.reason) == (
        1,
        "a mapping file must be a YAML object with `destination` and `body`",
    )


@pytest.mark.parametrize("value", ["''", "'  '", "5", "[a]"])
def test_name_must_be_a_non_empty_string(tmp_path: Path, value: str) -> None:
    issue = refusal(tmp_path, f"destination: zendesk\nname: {value}\nbody: {{}}\n")
    assert (issue.line, issue.reason) == (2, "`name` must be a non-empty string")


def test_invalid_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(b'destination: zendesk\nbody: {a: "\xff"}\n')
    with pytest.raises(MappingLoadError) as caught:
        load_mapping_file(path, DESTINATIONS)
    [issue] = caught.value.issues
    assert issue.line == 1
    assert issue.reason.startswith("cannot read: ")


def test_example_input_file_missing_line(tmp_path: Path) -> None:
    text = "destination: zendesk\nbody: {}\nexamples:\n  - expect: {}\n    input: nope.json\n"
    issue = refusal(tmp_path, text)
    assert (issue.line, issue.reason) == (5, "example input 'nope.json' not found")


def test_example_input_not_json_line(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{oops")
    text = "destination: zendesk\nbody: {}\nexamples:\n  - input: bad.json\n    expect: {}\n"
    issue = refusal(tmp_path, text)
    assert issue.line == 4
    assert issue.reason.startswith("example input 'bad.json': Body is not valid UTF-8 JSON")


def test_example_without_expect_line(tmp_path: Path) -> None:
    text = "destination: zendesk\nbody: {}\nexamples:\n"
    text += "  - input: {xdm: {}}\n    expect: {}\n  - input: {xdm: {}}\n"
    issue = refusal(tmp_path, text)
    assert (issue.line, issue.reason) == (6, "example needs `expect` (or `ignored: true`)")


def test_example_without_input_line(tmp_path: Path) -> None:
    text = "destination: zendesk\nbody: {}\nexamples:\n  - expect: {}\n"
    issue = refusal(tmp_path, text)
    assert (issue.line, issue.reason) == (4, "each example needs `input` and `expect` (or `ignored: true`)")


def test_unknown_example_key_line(tmp_path: Path) -> None:
    text = "destination: zendesk\nbody: {}\nexamples:\n  - input: {xdm: {}}\n    expect: {}\n    note: x\n"
    issue = refusal(tmp_path, text)
    assert (issue.line, issue.reason) == (6, "unknown example key `note`")


def test_examples_must_be_a_list(tmp_path: Path) -> None:
    issue = refusal(tmp_path, "destination: zendesk\nbody: {}\nexamples: {input: x}\n")
    assert (issue.line, issue.reason) == (3, "`examples` must be a list")


def test_inline_example_input(tmp_path: Path) -> None:
    text = "destination: zendesk\nbody: {}\nexamples:\n  - input: {xdm: {_id: a}}\n    expect: {}\n"
    [example] = load_one(tmp_path, text).examples
    assert example.input == {"xdm": {"_id": "a"}}
    assert example.expect == {}
    assert example.ignored is False
    assert example.line == 4


def test_example_input_path_is_relative_to_the_mapping_file(tmp_path: Path) -> None:
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "p.json").write_text(json.dumps(PURCHASE))
    sub = tmp_path / "maps"
    sub.mkdir()
    text = "destination: zendesk\nbody: {}\nexamples:\n  - input: ../inputs/p.json\n    ignored: true\n"
    [example] = load_one(sub, text).examples
    assert example.input == PURCHASE
    assert example.ignored is True
    assert example.expect is None


# ---------------------------------------------------------------- several files at once


def test_duplicate_mapping_name_across_two_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: same\ndestination: zendesk\nbody: {}\n")
    second = write(tmp_path, "b.yaml", "name: same\ndestination: zendesk\nbody: {}\n")
    with pytest.raises(MappingLoadError) as caught:
        load_mappings(tmp_path, DESTINATIONS)
    assert caught.value.issues == [
        MappingIssue(second, 1, f"duplicate mapping name 'same' (also in {tmp_path / 'a.yaml'})")
    ]


def test_duplicate_name_against_a_file_stem(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "destination: zendesk\nbody: {}\n")
    second = write(tmp_path, "b.yaml", "name: a\ndestination: zendesk\nbody: {}\n")
    with pytest.raises(MappingLoadError) as caught:
        load_mappings(tmp_path, DESTINATIONS)
    [issue] = caught.value.issues
    assert issue.file == second
    assert issue.reason.startswith("duplicate mapping name 'a'")


def test_duplicate_mapping_name_reports_the_name_line(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: same\ndestination: zendesk\nbody: {}\n")
    write(tmp_path, "b.yaml", "# second\ndestination: zendesk\nname: same\nbody: {}\n")
    with pytest.raises(MappingLoadError) as caught:
        load_mappings(tmp_path, DESTINATIONS)
    assert [i.line for i in caught.value.issues] == [3]


def test_several_broken_files_are_all_reported(tmp_path: Path) -> None:
    write(tmp_path, "1-ok.yaml", "destination: zendesk\nbody: {}\n")
    bad_yaml = write(tmp_path, "2-yaml.yaml", "destination: zendesk\nbody:\n  a: 1\n  b: c: d\n")
    bad_when = write(tmp_path, "3-when.yaml", "destination: zendesk\nbody: {}\nwhen: 'a =='\n")
    bad_dest = write(tmp_path, "4-dest.yml", "destination: nowhere\nbody: {}\n")
    bad_token = write(tmp_path, "5-token.yaml", "destination: zendesk\nbody:\n  e:\n    t: '{{ x'\n")
    with pytest.raises(MappingLoadError) as caught:
        load_mappings(tmp_path, DESTINATIONS)
    assert [(i.file, i.line) for i in caught.value.issues] == [
        (bad_yaml, 4),
        (bad_when, 3),
        (bad_dest, 1),
        (bad_token, 4),
    ]
    message = str(caught.value)
    assert message.count("\n") == 3
    assert f"{bad_dest}:1: unknown destination 'nowhere'" in message


# ---------------------------------------------------------------------------- examples


def write_example_mapping(tmp_path: Path, examples_yaml: str, body: str | None = None) -> Path:
    (tmp_path / "purchase.json").write_text(json.dumps(PURCHASE))
    (tmp_path / "pageview.json").write_text(
        json.dumps({"xdm": {"eventType": "web.webpagedetails.pageViews", "_id": "p"}})
    )
    text = (body or VALID) + examples_yaml
    return write(tmp_path, "mapping.yaml", text)


def test_passing_example(tmp_path: Path, destinations: dict[str, Destination]) -> None:
    write_example_mapping(tmp_path, EXPECT_YAML)
    mappings = load_mappings(tmp_path, DESTINATIONS)
    [example] = mappings.mappings[0].examples
    assert example.expect == EXPECTED_BODY
    [result] = run_examples(mappings, destinations)
    assert result.passed
    assert result.reason is None
    assert result.line == line_of(VALID + EXPECT_YAML, "- input: purchase.json")


def test_failing_expect_shows_a_diff(tmp_path: Path, destinations: dict[str, Destination]) -> None:
    path = write_example_mapping(tmp_path, EXPECT_YAML.replace("total: 12.5", "total: 13"))
    mappings = load_mappings(tmp_path, DESTINATIONS)
    [result] = run_examples(mappings, destinations)
    assert not result.passed
    assert result.reason is not None
    assert result.reason.startswith("rendered body differs from `expect`:\n--- expect\n+++ rendered\n")
    assert '-      "total": 13\n+      "total": 12.5' in result.reason
    issue = result.issue()
    assert issue.file == path
    assert issue.line == 23
    assert issue.reason == f"example fails: {result.reason}"


def test_failing_expect_on_a_missing_field(tmp_path: Path, destinations: dict[str, Destination]) -> None:
    write_example_mapping(tmp_path, EXPECT_YAML + "          tier: gold\n")
    [result] = run_examples(load_mappings(tmp_path, DESTINATIONS), destinations)
    assert result.reason is not None
    assert '-      "tier": "gold",' in result.reason or '-      "tier": "gold"' in result.reason


def test_ignored_example_passes_when_when_does_not_match(
    tmp_path: Path, destinations: dict[str, Destination]
) -> None:
    write_example_mapping(tmp_path, "examples:\n  - input: pageview.json\n    ignored: true\n")
    [result] = run_examples(load_mappings(tmp_path, DESTINATIONS), destinations)
    assert result.passed


def test_ignored_example_fails_when_when_matches(
    tmp_path: Path, destinations: dict[str, Destination]
) -> None:
    write_example_mapping(tmp_path, "examples:\n  - input: purchase.json\n    ignored: true\n")
    [result] = run_examples(load_mappings(tmp_path, DESTINATIONS), destinations)
    assert result.reason == "expected `ignored` but `when` matches"


def test_expected_example_fails_when_when_does_not_match(
    tmp_path: Path, destinations: dict[str, Destination]
) -> None:
    write_example_mapping(tmp_path, "examples:\n  - input: pageview.json\n    expect: {}\n")
    [result] = run_examples(load_mappings(tmp_path, DESTINATIONS), destinations)
    assert result.reason == "`when` does not match the input"


def test_example_breaking_zendesk_rules_fails_with_the_field_path(
    tmp_path: Path, destinations: dict[str, Destination]
) -> None:
    body = VALID.replace("  event:\n    source: shop", "  event:\n    source: zendesk")
    expect = EXPECT_YAML.replace(
        "      event:\n        source: shop", "      event:\n        source: zendesk"
    )
    write_example_mapping(tmp_path, expect, body=body)
    [result] = run_examples(load_mappings(tmp_path, DESTINATIONS), destinations)
    assert result.reason == "event.source: `zendesk` is reserved for Zendesk's own events"


def test_example_breaking_several_zendesk_rules(tmp_path: Path, destinations: dict[str, Destination]) -> None:
    text = "destination: zendesk\nbody:\n  event: {type: x}\nexamples:\n  - input: {xdm: {}}\n"
    text += "    expect: {event: {type: x}}\n"
    write(tmp_path, "m.yaml", text)
    [result] = run_examples(load_mappings(tmp_path, DESTINATIONS), destinations)
    assert result.reason == (
        "event.source: required, a non-empty string; "
        "event.properties: required, an object; "
        "profile: required, an object"
    )


def test_an_example_passes_with_warnings_only(tmp_path: Path, destinations: dict[str, Destination]) -> None:
    """A warning (a vendor's recommendation not followed) is sent: it fails no example, so it
    keeps no mapping, and no relay, from starting."""
    body = (
        "{note: hi, event: {source: s, type: t, properties: {a: 1}},"
        " profile: {source: s, type: t, identifiers: [{type: email, value: a@b.c}, {type: email, value: a@b.c}]}}"
    )
    text = f"destination: zendesk\nbody: {body}\nexamples:\n  - input: {{xdm: {{}}}}\n    expect: {body}\n"
    write(tmp_path, "m.yaml", text)
    [result] = run_examples(load_mappings(tmp_path, DESTINATIONS), destinations)
    assert result.passed, result.reason


def test_example_render_error_fails_with_the_field(
    tmp_path: Path, destinations: dict[str, Destination]
) -> None:
    text = "destination: zendesk\nbody:\n  event: {total: '{{ abs(xdm.s) }}'}\n"
    text += "examples:\n  - input: {xdm: {s: text}}\n    expect: {}\n"
    write(tmp_path, "m.yaml", text)
    [result] = run_examples(load_mappings(tmp_path, DESTINATIONS), destinations)
    assert result.reason is not None
    assert result.reason.startswith("event.total: `abs(xdm.s)` failed:")


def test_example_input_that_is_not_an_adobe_payload(
    tmp_path: Path, destinations: dict[str, Destination]
) -> None:
    text = "destination: zendesk\nbody: {}\nexamples:\n  - input: {foo: 1}\n    expect: {}\n"
    write(tmp_path, "m.yaml", text)
    [result] = run_examples(load_mappings(tmp_path, DESTINATIONS), destinations)
    assert result.reason is not None
    assert result.reason.startswith("input is not an Adobe payload: ")


def test_example_input_with_no_event(tmp_path: Path, destinations: dict[str, Destination]) -> None:
    text = "destination: zendesk\nbody: {}\nexamples:\n  - input: {events: []}\n    expect: {}\n"
    write(tmp_path, "m.yaml", text)
    [result] = run_examples(load_mappings(tmp_path, DESTINATIONS), destinations)
    assert result.reason == "input holds no event"


def test_example_user_events_endpoint_needs_user_id(
    tmp_path: Path, destinations: dict[str, Destination]
) -> None:
    body = VALID.replace("body:\n", "endpoint: {name: user_events, user_id: '{{ data.nouid }}'}\nbody:\n")
    write_example_mapping(tmp_path, EXPECT_YAML, body=body)
    [result] = run_examples(load_mappings(tmp_path, DESTINATIONS), destinations)
    assert result.reason == (
        "user_id: the user_events endpoint needs a non-empty `user_id` (in the body or `endpoint.user_id`)"
    )


def test_example_user_events_endpoint_with_user_id_passes(
    tmp_path: Path, destinations: dict[str, Destination]
) -> None:
    body = VALID.replace("body:\n", "endpoint: {name: user_events, user_id: '{{ data.uid }}'}\nbody:\n")
    write_example_mapping(tmp_path, EXPECT_YAML, body=body)
    [result] = run_examples(load_mappings(tmp_path, DESTINATIONS), destinations)
    assert result.passed


def test_check_example_uses_the_first_event_of_a_batch(
    tmp_path: Path, destinations: dict[str, Destination]
) -> None:
    text = "destination: zendesk\nbody: {event: {type: '{{ xdm._id }}'}}\nexamples:\n"
    text += "  - input: {events: [{xdm: {_id: first}}, {xdm: {_id: second}}]}\n"
    text += "    expect: {event: {type: first}}\n"
    mapping = load_one(tmp_path, text)
    result = check_example(mapping, 0, destinations)
    assert result.line == 4
    assert result.reason is not None
    assert result.reason.startswith("event.source: ")  # the body matched; only Zendesk rules fail


def test_run_examples_covers_every_example_of_every_mapping(
    tmp_path: Path, destinations: dict[str, Destination]
) -> None:
    write_example_mapping(
        tmp_path,
        EXPECT_YAML
        + "  - input: pageview.json\n    ignored: true\n  - input: purchase.json\n    ignored: true\n",
    )
    write(tmp_path, "z.yaml", "destination: zendesk\nbody: {}\n")
    results = run_examples(load_mappings(tmp_path, DESTINATIONS), destinations)
    assert [(r.mapping.name, r.passed) for r in results] == [
        ("order-completed", True),
        ("order-completed", True),
        ("order-completed", False),
    ]


# -------------------------------------------------------------------- shipped mappings


def test_shipped_mappings_load_and_all_examples_pass(destinations: dict[str, Destination]) -> None:
    endpoints = {name: d.endpoints for name, d in destinations.items()}
    mappings = load_mappings(SHIPPED, endpoints)
    assert sorted(m.name for m in mappings.mappings) == [
        "identified-page-view",
        "order-completed",
        "product-added-to-cart",
        "yotpo-order-completed",
        "yotpo-product-added-to-cart",
    ]
    results = run_examples(mappings, destinations)
    assert len(results) == sum(len(m.examples) for m in mappings.mappings) >= 3
    assert [str(r.issue()) for r in results if not r.passed] == []


def test_a_mapping_nested_too_deeply_is_an_issue_not_a_crash(tmp_path: Path) -> None:
    depth = 3000
    body = "{a: " * depth + "1" + "}" * depth
    (tmp_path / "deep.yaml").write_text(f"destination: zendesk\nbody: {body}\n")
    with pytest.raises(MappingLoadError) as caught:
        load_mappings(tmp_path, {"zendesk": ("events",)})
    assert "deep.yaml:1: nested too deeply" in str(caught.value)


def test_an_example_with_only_a_warning_holds(tmp_path: Path, destinations: dict[str, Destination]) -> None:
    body = "{type: OrderPlaced, timestamp: '2024-05-01T12:00:00Z', id: e-1, customer: {external_id: c}}"
    text = f"destination: yotpo\nbody: {body}\nexamples:\n  - input: {{xdm: {{}}}}\n    expect: {body}\n"
    write(tmp_path, "m.yaml", text)
    [result] = run_examples(
        load_mappings(tmp_path, {**DESTINATIONS, "yotpo": ("custom_events",)}), destinations
    )
    assert result.passed, result.reason
