"""Mapping drafts (app/mapping/drafts.py): YAML that is not plain values is refused at its line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.destinations import yotpo, zendesk
from app.mapping.drafts import compile_draft
from app.mapping.loader import MappingLoadError, load_mapping_file
from tests.conftest import MAPPINGS

DESTINATIONS = {"zendesk": zendesk.ENDPOINTS, "yotpo": yotpo.ENDPOINTS}


def refusal(text: str) -> tuple[int, str]:
    with pytest.raises(MappingLoadError) as caught:
        compile_draft(text, None, DESTINATIONS)
    [issue] = caught.value.issues
    return issue.line, issue.reason


@pytest.mark.parametrize(
    "text",
    [
        "destination: zendesk\nbody:\n  a: &s text\n  b: [*s, *s]\n",  # a string, named twice
        "destination: zendesk\nbody:\n  a: &n 12\n  b: *n\n",
        "destination: zendesk\nbody:\n  a: &m {x: 1}\n  b: *m\n",
        "destination: zendesk\nbody:\n  a: &unused 1\n",
    ],
)
def test_every_anchor_and_alias_is_refused_at_its_line(text: str) -> None:
    assert refusal(text) == (3, "anchors and aliases (&, *) are not allowed")


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!!binary aGVsbG8=", "!!binary"),
        ("!!set {a, b}", "!!set"),
        ("!!omap [a: 1]", "!!omap"),
        ("!!str 12", "!!str"),
        ("!custom x", "!custom"),
        ("!!python/object:os.system x", "!!python/object:os.system"),
    ],
)
def test_yaml_tags_are_refused_at_their_line(value: str, tag: str) -> None:
    line, reason = refusal(f"destination: zendesk\nbody:\n  a: 1\n  b: {value}\n")
    assert line == 4
    assert reason == f"YAML tags such as `{tag}` are not allowed: write plain values"


@pytest.mark.parametrize(
    "number", ["18446744073709551616", "-9223372036854775809", "9" * 5000, "0x1" + "0" * 40]
)
def test_integers_beyond_64_bits_are_refused_at_their_line(number: str) -> None:
    assert refusal(f"destination: zendesk\nbody:\n  n: {number}\n") == (
        3,
        "integers beyond 64 bits are not allowed: quote the number",
    )


def test_integers_within_64_bits_and_quoted_numbers_are_kept() -> None:
    text = 'destination: zendesk\nbody:\n  a: 18446744073709551615\n  b: -9223372036854775808\n  c: "99999999999999999999"\n'
    body = compile_draft(text, None, DESTINATIONS).render({})
    assert body == {"a": 2**64 - 1, "b": -(2**63), "c": "99999999999999999999"}


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_deep_nesting_is_refused_before_the_parser_slows_down(opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    text = "destination: zendesk\nbody: " + opening * 30_000 + closing * 30_000 + "\n"
    started = time.perf_counter()
    assert refusal(text) == (2, "nested too deeply (over 64 levels)")
    assert time.perf_counter() - started < 5  # 3000 levels took 8 s to parse


def test_an_index_too_long_for_a_number_is_a_compile_error() -> None:
    line, reason = refusal('destination: zendesk\nbody:\n  a: "{{ foo[' + "9" * 5000 + '] }}"\n')
    assert line == 3
    assert reason.endswith("a number is too long")


@pytest.mark.parametrize("path", sorted(MAPPINGS.glob("*.yaml")), ids=lambda p: p.name)
def test_each_shipped_mapping_compiles_as_a_draft_as_from_its_file(path: Path) -> None:
    served = load_mapping_file(path, DESTINATIONS)
    draft = compile_draft(path.read_text(), path.name, DESTINATIONS)
    assert (draft.name, draft.destination, draft.endpoint) == (
        served.name,
        served.destination,
        served.endpoint,
    )
    for example in served.examples:
        assert draft.render(example.input) == served.render(example.input)
