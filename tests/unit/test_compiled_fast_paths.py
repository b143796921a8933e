"""The compiled evaluator's shortcuts give the reference interpreter's answers and errors:
direct function calls (signatures checked once) and field/index chains walked in one loop."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import jmespath
import pytest
from jmespath import exceptions, functions
from jmespath.visitor import Options

from app import mapping
from app.mapping.functions import jmespath_options

DOCS: list[Any] = [
    {"a": {"b": [{"c": 1}, {"c": 2}]}},
    {"a": OrderedDict(b=[OrderedDict(c=1)])},  # a dict subclass: looked up with its own get
    {"a": {"b": [{"c": 1}]}},
    {"a": {"b": []}},
    {"a": {"b": "text"}},
    {"a": {"b": None}},
    {"a": {"b": {"0": "key"}}},
    {"a": None},
    {"a": "text"},
    {"a": [1, 2]},
    {},
    [],
    None,
    "text",
    7,
]
PATHS = ["a.b", "a.b[0].c", "a.b[1].c", "a.b[-1].c", "a.b[-2].c", "a.b[-3].c", "a.b[5]", "a[0]", "a[-1].b"]


@pytest.mark.parametrize("path", PATHS)
def test_path_chains_answer_as_the_reference_on_every_shape(path: str) -> None:
    compiled = mapping.compile(path)
    for doc in DOCS:
        assert compiled.search(doc) == jmespath.search(path, doc), (path, doc)


@pytest.mark.parametrize(
    "expression",
    [
        "lower(`1`)",
        "abs('x')",
        "length(`null`)",
        "primary_identity(@, `1`)",
        "iso8601(`[]`)",
        "lower('a', 'b')",
    ],
)
def test_a_wrong_argument_raises_the_reference_error(expression: str) -> None:
    options = jmespath_options()
    with pytest.raises(exceptions.JMESPathError) as ours:
        mapping.compile(expression).search({}, options)
    with pytest.raises(exceptions.JMESPathError) as theirs:
        jmespath.search(expression, {}, options=options)
    assert type(ours.value) is type(theirs.value)
    assert str(ours.value) == str(theirs.value)


def test_a_function_table_that_checks_calls_its_own_way_is_still_asked() -> None:
    class Counting(functions.Functions):
        calls = 0

        def call_function(self, function_name: str, resolved_args: list[Any]) -> Any:
            Counting.calls += 1
            return super().call_function(function_name, resolved_args)

    options = Options(custom_functions=Counting())
    assert mapping.compile("length(a)").search({"a": [1, 2]}, options) == 2
    assert Counting.calls == 1
