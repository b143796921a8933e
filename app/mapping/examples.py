"""Running the ``examples`` of mappings: render each input and compare with ``expect``."""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass

import orjson

from app.destinations.base import Destination
from app.mapping.expressions import ExpressionError
from app.mapping.loader import Mapping, MappingIssue, MappingSet
from app.mapping.templates import RenderError
from app.payloads import normalise
from app.problems import Problem


@dataclass(frozen=True)
class ExampleResult:
    """Whether one example holds; ``reason`` says why not."""

    mapping: Mapping
    line: int
    reason: str | None = None

    @property
    def passed(self) -> bool:
        return self.reason is None

    def issue(self) -> MappingIssue:
        return MappingIssue(self.mapping.source, self.line, f"example fails: {self.reason}")


def run_examples(mappings: MappingSet, destinations: AbcMapping[str, Destination]) -> list[ExampleResult]:
    """Check every example of every mapping against its first input event."""
    return [
        check_example(mapping, index, destinations)
        for mapping in mappings.mappings
        for index in range(len(mapping.examples))
    ]


def check_example(mapping: Mapping, index: int, destinations: AbcMapping[str, Destination]) -> ExampleResult:
    """Render one example; it holds when the body equals ``expect`` and breaks no rule."""
    example = mapping.examples[index]

    def fail(reason: str) -> ExampleResult:
        return ExampleResult(mapping, example.line, reason)

    try:
        events = normalise(example.input).events
    except Problem as problem:
        return fail(f"input is not an Adobe payload: {problem}")
    if not events:
        return fail("input holds no event")
    event = events[0]
    try:
        applies = mapping.applies_to(event)
        if example.ignored:
            return fail("expected `ignored` but `when` matches") if applies else _ok(mapping, example.line)
        if not applies:
            return fail("`when` does not match the input")
        body = mapping.render(event)
        params = {key: render(event) for key, render in mapping.endpoint_params.items()}
        if mapping.event_id is not None:
            params.setdefault("event_id", mapping.event_id.search(event))
    except (ExpressionError, RenderError) as exc:
        return fail(str(exc))
    if body != example.expect:
        return fail(f"rendered body differs from `expect`:\n{_diff(example.expect, body)}")
    _, found = destinations[mapping.destination].prepare(body, mapping.endpoint, params)
    violations = [v for v in found if not v.warning]  # a warning is sent all the same
    if violations:
        return fail("; ".join(f"{v.path}: {v.message}" for v in violations))
    return _ok(mapping, example.line)


def _ok(mapping: Mapping, line: int) -> ExampleResult:
    return ExampleResult(mapping, line)


def _diff(expected: object, actual: object) -> str:
    import difflib

    def lines(value: object) -> list[str]:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode().splitlines()

    return "\n".join(difflib.unified_diff(lines(expected), lines(actual), "expect", "rendered", lineterm=""))
