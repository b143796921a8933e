"""Differential test: the compiled evaluator against the reference ``jmespath`` interpreter.

Expressions come from a small JMESPath grammar (paths, projections, filters, slices,
multi-selects, operators, literals, function calls with plausible arguments) and
documents from a recursive JSON strategy whose object keys are the same few names the
expressions use, so that most lookups hit something. For every pair, the reference
(``jmespath.search`` with the relay's function table) and ``app.mapping`` must agree:
the same value (same Python types, ``True`` is not ``1`` and ``1`` is not ``1.0``), or
both raising (the same ``jmespath.exceptions`` class when the reference raises one).

Deterministic (``derandomize=True``) so that CI is reproducible; for a longer, random
hunt run with ``DIFFERENTIAL_EXAMPLES=20000 pytest --timeout=0 ...``.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import jmespath
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from jmespath.exceptions import JMESPathError

from app import mapping
from app.mapping.functions import jmespath_options

# A longer hunt (``DIFFERENTIAL_EXAMPLES=20000``) also draws new random examples each run.
LONG_RUN = "DIFFERENTIAL_EXAMPLES" in os.environ
MAX_EXAMPLES = int(os.environ.get("DIFFERENTIAL_EXAMPLES", "300"))
SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=not LONG_RUN,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
# Only a mutated (deliberately broken) expression can hold a backtick literal that is not JSON.
NON_JSON_LITERAL = "ignore:deprecated string literal syntax:PendingDeprecationWarning"

# --------------------------------------------------------------------------- documents

NAMES = ("a", "b", "c", "foo", "bar")
# Documents use the expression names most of the time, plus a few the grammar quotes.
KEYS = st.sampled_from((*NAMES, *NAMES, *NAMES, "id", "primary", "é", "with space"))

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from((0, 1, -1, 2, 2**53 + 1, 10**20, -(10**20))),
    st.integers(),
    st.sampled_from((0.0, 1.0, -1.0, 0.5, 2.5, -0.0, 1e300)),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        ("", "a", "foo", "x", "é", "A b", "1", "2.5", " 3 ", "true", "fooBar", "2024-05-01T10:00:00Z")
    ),
    st.text(max_size=5),
)
IDENTITY_ENTRY = st.fixed_dictionaries(
    {"id": st.one_of(st.none(), st.sampled_from(("x@example.com", "y", "")), st.integers(0, 3))},
    optional={"primary": st.sampled_from((True, False, "true", "TRUE", None, 1))},
)


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(KEYS, children, max_size=4),
        st.lists(IDENTITY_ENTRY, min_size=1, max_size=2),
    )


JSON = st.recursive(SCALARS, _extend, max_leaves=14)
DOCUMENTS = st.one_of(st.dictionaries(KEYS, JSON, min_size=1, max_size=5), st.lists(JSON, max_size=5), JSON)

# --------------------------------------------------------------------------- expressions

IDENTIFIERS = st.sampled_from((*NAMES, *NAMES, '"a"', '"foo"', '"é"', '"with space"'))
LITERALS = st.one_of(
    st.sampled_from(
        (
            "`1`",
            "`0`",
            "`-1`",
            "`2`",
            "`2.5`",
            "`1.0`",
            '`"x"`',
            '`"a"`',
            '`""`',
            '`"é"`',
            "`[1, 2]`",
            "`[]`",
            "`{}`",
            '`{"a": 1}`',
            '`["b", "a"]`',
            "`null`",
            "`true`",
            "`false`",
        )
    ),
    st.integers(-3, 3).map(lambda n: f"`{n}`"),
    st.text(st.characters(exclude_characters="`\\"), max_size=3).map(
        lambda s: "`" + json.dumps(s, ensure_ascii=False) + "`"
    ),
)
RAW_STRINGS = st.sampled_from(("'x'", "'a'", "''", "'foo'", "', '", "'é'", "'A b'", "'it\\'s'"))
INDEXES = st.sampled_from(("[0]", "[1]", "[-1]", "[2]", "[-2]"))
BOUND = st.sampled_from(("", "0", "1", "-1", "2", "-2", "10"))
STEP = st.sampled_from(("1", "-1", "2", "-2", "3"))  # never 0: see test_a_zero_step_fails_at_compile_time


@st.composite
def slices(draw: st.DrawFn) -> str:
    start, stop = draw(BOUND), draw(BOUND)
    if draw(st.booleans()):
        return f"[{start}:{stop}:{draw(STEP) if draw(st.booleans()) else ''}]"
    return f"[{start}:{stop}]"


# name -> argument kinds: "any" an expression, "&" an expression reference, or a fixed choice.
FIXED_ARGUMENTS = {
    "glue": st.sampled_from(("','", "', '", '`"-"`', "''")),
    "namespace": st.sampled_from(("'a'", "'A'", "'foo'", "'id'", "`null`", "b")),
    "region": st.sampled_from(("'US'", "'DE'", "`null`")),
    "current": st.just("@"),
}
FUNCTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("length", ("any",)),
    ("keys", ("any",)),
    ("values", ("any",)),
    ("sort", ("any",)),
    ("to_string", ("any",)),
    ("to_number", ("any",)),
    ("type", ("any",)),
    ("not_null", ("any", "any")),
    ("not_null", ("any", "any", "any")),
    ("join", ("glue", "any")),
    ("join", ("glue", "any")),
    ("contains", ("any", "any")),
    ("starts_with", ("any", "any")),
    ("ends_with", ("any", "any")),
    ("abs", ("any",)),
    ("floor", ("any",)),
    ("ceil", ("any",)),
    ("max", ("any",)),
    ("min", ("any",)),
    ("sum", ("any",)),
    ("avg", ("any",)),
    ("reverse", ("any",)),
    ("sort_by", ("any", "&")),
    ("max_by", ("any", "&")),
    ("min_by", ("any", "&")),
    ("map", ("&", "any")),
    ("merge", ("any", "any")),
    ("merge", ("current", "any")),
    ("to_array", ("any",)),
    # relay functions
    ("lower", ("any",)),
    ("upper", ("any",)),
    ("trim", ("any",)),
    ("snake_case", ("any",)),
    ("sha256", ("any",)),
    ("hashed_email", ("any",)),
    ("iso8601", ("any",)),
    ("e164", ("any",)),
    ("e164", ("any", "region")),
    ("coalesce", ("any", "any")),
    ("coalesce", ("any", "any", "any")),
    ("primary_identity", ("current", "namespace")),
    ("primary_identity", ("any", "namespace")),
    ("identities", ("current", "namespace")),
)
NUMERIC_FUNCTIONS = ("abs", "floor", "ceil")


def weighted(*choices: tuple[st.SearchStrategy[str], int]) -> st.SearchStrategy[str]:
    """``one_of`` with weights (plain ``one_of`` lets a recursive branch such as ``!`` take over)."""
    return st.sampled_from([strategy for strategy, weight in choices for _ in range(weight)]).flatmap(
        lambda strategy: strategy
    )


@functools.cache
def expressions(depth: int) -> st.SearchStrategy[str]:
    """Valid JMESPath text, nested at most ``depth`` levels."""
    if depth <= 0:
        return chains(0)
    operand = st.one_of(
        chains(depth - 1), expressions(depth - 1).map(lambda e: f"({e})"), expressions(depth - 1)
    )
    comparator = st.sampled_from(("==", "!=", "<", "<=", ">", ">="))
    binary = st.tuples(operand, st.sampled_from(("==", "!=", "<", ">=", "&&", "||", "|", "||")), operand)
    comparison = st.tuples(chains(depth - 1), comparator, st.one_of(LITERALS, RAW_STRINGS, chains(depth - 1)))
    return weighted(
        (chains(depth), 12),
        (binary.map(" ".join), 4),
        (comparison.map(" ".join), 2),
        (operand.map(lambda e: f"!{e}"), 1),
    )


@functools.cache
def chains(depth: int) -> st.SearchStrategy[str]:
    """A primary expression followed by up to three postfix steps (``.a``, ``[0]``, ``[*]`` ...)."""
    return st.tuples(heads(depth), st.lists(steps(depth), max_size=3)).map(lambda t: t[0] + "".join(t[1]))


@functools.cache
def heads(depth: int) -> st.SearchStrategy[str]:
    simple = weighted(
        (IDENTIFIERS, 10),
        (st.just("@"), 2),
        (LITERALS, 1),
        (RAW_STRINGS, 1),
        (st.sampled_from(("*", "[*]", "[]")), 2),
        (INDEXES, 1),
        (slices(), 1),
    )
    if depth <= 0:
        return simple
    inner = expressions(depth - 1)
    return weighted(
        (simple, 6),
        (calls(depth), 4),
        (filters(depth), 1),
        (st.lists(inner, min_size=1, max_size=3).map(lambda items: f"[{', '.join(items)}]"), 1),
        (hashes(depth), 1),
        (inner.map(lambda e: f"({e})"), 1),
    )


@functools.cache
def steps(depth: int) -> st.SearchStrategy[str]:
    simple = weighted(
        (IDENTIFIERS.map(lambda name: f".{name}"), 6),
        (INDEXES, 1),
        (slices(), 1),
        (st.sampled_from(("[*]", ".*", "[]")), 3),
    )
    if depth <= 0:
        return simple
    inner = expressions(depth - 1)
    return weighted(
        (simple, 8),
        (filters(depth), 2),
        (st.lists(inner, min_size=1, max_size=3).map(lambda items: f".[{', '.join(items)}]"), 1),
        (hashes(depth).map(lambda h: f".{h}"), 1),
        (calls(depth).map(lambda c: f".{c}"), 1),
    )


@functools.cache
def filters(depth: int) -> st.SearchStrategy[str]:
    inner = expressions(depth - 1)
    comparator = st.sampled_from(("==", "!=", "<", "<=", ">", ">="))
    comparison = st.tuples(chains(0), comparator, st.one_of(LITERALS, RAW_STRINGS, chains(0))).map(" ".join)
    condition = st.one_of(
        comparison,
        comparison,
        chains(0),
        chains(0).map(lambda c: f"!{c}"),
        st.tuples(comparison, st.sampled_from(("&&", "||")), st.one_of(comparison, chains(0))).map(" ".join),
        inner,
    )
    return condition.map(lambda c: f"[?{c}]")


@functools.cache
def hashes(depth: int) -> st.SearchStrategy[str]:
    key = st.sampled_from(("x", "y", "a", "foo", '"a b"'))
    pair = st.tuples(key, expressions(depth - 1)).map(lambda kv: f"{kv[0]}: {kv[1]}")
    return st.lists(pair, min_size=1, max_size=3).map(lambda pairs: "{" + ", ".join(pairs) + "}")


@functools.cache
def calls(depth: int, name: str | None = None) -> st.SearchStrategy[str]:
    """A call of one of FUNCTIONS (of ``name`` only if given) with plausible arguments."""
    return _calls(depth, tuple(f for f in FUNCTIONS if name in (None, f[0])))


@st.composite
def _calls(draw: st.DrawFn, depth: int, functions: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    name, kinds = draw(st.sampled_from(functions))
    inner = expressions(depth - 1)
    args = []
    for kind in kinds:
        if kind == "any":
            # Numeric functions get a number now and then, or they only ever raise.
            if name in NUMERIC_FUNCTIONS and draw(st.booleans()):
                args.append(draw(st.sampled_from(("`-1.5`", "`2`", "`0`", "a", "length(@)"))))
            else:
                args.append(draw(inner))
        elif kind == "&":
            args.append("&" + draw(st.one_of(IDENTIFIERS, chains(0), inner)))
        else:
            args.append(draw(FIXED_ARGUMENTS[kind]))
    if draw(st.integers(0, 24)) == 24:  # a wrong number of arguments: ArityError from both
        args = args[:-1] if len(args) > 1 and draw(st.booleans()) else [*args, "@"]
    return f"{name}({', '.join(args)})"


EXPRESSIONS = expressions(2)
CALLS = calls(2)
FUNCTION_NAMES = sorted({name for name, _ in FUNCTIONS})

# Broken variants, for lexer and parser error parity.
NOISE = st.sampled_from(
    (".", "[", "]", "(", ")", "{", "}", ",", ":", "|", "||", "&", "&&", "!", "!=", "<", "==", "=", "?", "*",
     "@", "'", '"', "`", "-", "0", "1", "a", " ", "[?", "[]", ".*", "\\", "é", "#"),
)  # fmt: skip


@st.composite
def noisy_expressions(draw: st.DrawFn) -> str:
    expression = draw(EXPRESSIONS)
    for _ in range(draw(st.integers(1, 2))):
        position = draw(st.integers(0, len(expression)))
        action = draw(st.sampled_from(("insert", "delete", "truncate")))
        if action == "insert":
            expression = expression[:position] + draw(NOISE) + expression[position:]
        elif action == "delete":
            expression = expression[:position] + expression[position + 1 :]
        else:
            expression = expression[:position]
    return expression


# --------------------------------------------------------------------------- comparison


def strict_equal(left: Any, right: Any) -> bool:
    """Equal values of the same Python types, recursively (``1`` is not ``True`` nor ``1.0``)."""
    if type(left) is not type(right):
        # Both are expression references (``&a`` passed through ``coalesce``, say).
        return type(left).__name__ == type(right).__name__ == "_Expression"
    if isinstance(left, list):
        return len(left) == len(right) and all(strict_equal(x, y) for x, y in zip(left, right, strict=True))
    if isinstance(left, dict):
        # Key order too: it is the order a rendered payload has.
        return list(left) == list(right) and all(strict_equal(left[key], right[key]) for key in left)
    if isinstance(left, float):
        if math.isnan(left) or math.isnan(right):
            return math.isnan(left) and math.isnan(right)
        return left == right and math.copysign(1.0, left) == math.copysign(1.0, right)
    return bool(left == right)


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("children", []):
        if isinstance(child, dict):
            yield from _walk(child)


def _has_zero_step(parsed: dict[str, Any]) -> bool:
    return any(node["type"] == "slice" and node["children"][2] == 0 for node in _walk(parsed))


_OPTIONS = jmespath_options()


def reference_search(expression: str, document: Any) -> Any:
    return jmespath.search(expression, copy.deepcopy(document), options=_OPTIONS)


def assert_same_behaviour(expression: str, document: Any) -> Any:
    """Compare compiled with reference on one pair; returns the reference's result (or its exception)."""
    try:
        expected = reference_search(expression, document)
    except Exception as exc:
        try:
            got = mapping.search(expression, copy.deepcopy(document))
        except Exception as compiled_exc:
            if isinstance(exc, JMESPathError):
                assert type(compiled_exc) is type(exc), (
                    f"{expression!r} on {document!r}: reference raised {exc!r}, compiled {compiled_exc!r}"
                )
            event(f"both raise {type(exc).__name__}")
            return exc
        pytest.fail(f"{expression!r} on {document!r}: reference raised {exc!r}, compiled returned {got!r}")
    try:
        compiled = mapping.compile(expression)
        got = compiled.search(copy.deepcopy(document))
        also = mapping.search(expression, copy.deepcopy(document))
        # Another function table instance in options: the recompiling path.
        via_options = compiled.search(copy.deepcopy(document), options=jmespath_options())
    except Exception as exc:
        pytest.fail(
            f"{expression!r} on {document!r}: reference returned {expected!r}, compiled raised {exc!r}"
        )
    assert strict_equal(got, expected), (
        f"{expression!r} on {document!r}: compiled {got!r} != reference {expected!r}"
    )
    assert strict_equal(also, expected), (
        f"{expression!r} on {document!r}: mapping.search {also!r} != {expected!r}"
    )
    assert strict_equal(via_options, expected), (
        f"{expression!r} on {document!r}: search with options {via_options!r} != {expected!r}"
    )
    event("null" if expected is None else f"result {type(expected).__name__}")
    return expected


# --------------------------------------------------------------------------- tests


@SETTINGS
@given(expression=EXPRESSIONS, document=DOCUMENTS)
@example("a == `false`", {"a": 0})
@example("`0` == `false`", {})
@example("`1` == `true`", {})
@example("`1` == `1.0`", {})
@example("a != `true`", {"a": 1})
@example("[?a == `1`]", [{"a": True}, {"a": 1}, {"a": 1.0}, {"a": False}, {"a": 0}])
@example("[?a == `false`].a", [{"a": 0}, {"a": False}, {"a": []}, {"a": None}])
@example(
    "[?b]", [{"b": 0}, {"b": ""}, {"b": []}, {"b": {}}, {"b": False}, {"b": None}, {"b": 0.0}, {"b": "x"}]
)
@example("!`0`", {})
@example("!a", {"a": 0.0})
@example("![]", {})
@example("!a", {"a": {}})
@example("a || b", {"a": [], "b": {}})
@example("a || b", {"a": {}, "b": ""})
@example("a || b", {"a": "", "b": 0})
@example("a && b", {"a": 0, "b": "x"})
@example("a && b", {"a": [], "b": "x"})
@example("[*].a", [{"a": 1}, {"b": 2}, {"a": None}, 3, {"a": False}])
@example("a[*].b[0]", {"a": [{"b": [1]}, {"b": []}, {"b": "xy"}, {"c": 1}]})
@example("*.a", {"x": {"a": 1}, "y": 2, "z": [1], "w": {"a": None}, "v": {"a": [0]}})
@example("*[0]", {"x": [1], "y": "s", "z": []})
@example("a[].b", {"a": [[{"b": 1}], {"b": 2}, [[{"b": 3}]]]})
@example("a[::-1][?@ > `1`]", {"a": [1, 2, 3.5, "x"]})
@example("a[?@ < 'b']", {"a": ["a", "c", 1]})
@example("a < b", {"a": "a", "b": 1})
@example("sort_by(@, &a)", [{"a": 1}, {"a": "x"}])
@example("sort(@)", [1, 2.5, -1])
@example("max_by(@, &a).a", [{"a": 1}, {"a": 3.5}])
@example("sum(@)", [1, 2.0])
@example("avg(@)", [1, 2])
@example("abs(`-1`)", {})
@example("to_number('1.0')", {})
@example("to_number(' 3 ')", {})
@example("to_string(@)", {"a": [1, "é", None, True]})
@example("map(&a, @)", [{"a": 1}, 2, {"a": None}])
@example("merge(@, {a: `null`})", {"a": 1, "b": 2})
@example("{x: a, y: b}", None)
@example("[a, b]", None)
@example("`null`.{x: a}", {})
@example("coalesce(a, b, 'z')", {"a": None, "b": False})
@example("primary_identity(@, 'a')", {"a": [{"id": "x"}, {"id": "y", "primary": "TRUE"}]})
@example("lower(a) == 'é'", {"a": "É"})
@example("length(keys(@)) > `2` || values(@)[0]", {"a": 1, "b": [2]})
@example("join(', ', keys(@))", {"a": 1, "é": 2})
@example("join(',', a)", {"a": ["x", 1]})
@example("contains(a, `1`)", {"a": [True, 1.0]})
@example("min_by(a, &b)", {"a": [{"b": "x"}, {"b": "a"}]})
@example("not_null(a, b, `false`)", {})
@example("type(@)", 1.5)
@example("identities(@, 'A')", {"a": [{"id": 1}, {"id": None}, {"id": "x", "primary": True}]})
@example("e164(a, 'US')", {"a": "(415) 555-2671"})
@example("iso8601(a)", {"a": 1714564800123})
def test_compiled_matches_the_reference(expression: str, document: Any) -> None:
    assert_same_behaviour(expression, document)


@pytest.mark.parametrize("name", FUNCTION_NAMES)
@settings(SETTINGS, max_examples=max(10, MAX_EXAMPLES // 25))
@given(data=st.data())
def test_each_function_matches_the_reference(name: str, data: st.DataObject) -> None:
    expression = data.draw(calls(2, name), label="expression")
    document = data.draw(DOCUMENTS, label="document")
    assert_same_behaviour(expression, document)


@settings(SETTINGS, max_examples=MAX_EXAMPLES * 2 // 3)
@given(expression=noisy_expressions(), document=DOCUMENTS)
@example("a.[", {})
@example("", {})
@example("a[?b", {})
@example("`[1,", {})
@example("foo(", {})
@example("'unterminated", {})
@example('"a', {})
@example("a[::0]", {"a": [1]})
@example("&a", {})
@pytest.mark.filterwarnings(NON_JSON_LITERAL)
def test_broken_expressions_fail_the_same_way(expression: str, document: Any) -> None:
    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        with pytest.raises(JMESPathError) as raised:
            mapping.compile(expression)
        assert type(raised.value) is type(exc), (
            f"{expression!r}: reference {exc!r}, compiled {raised.value!r}"
        )
        event(f"parse error {type(exc).__name__}")
        return
    try:
        mapping.compile(expression)
    except JMESPathError:
        # The one deliberate difference: a zero slice step is rejected at compile time
        # (the reference raises ValueError when it evaluates the slice).
        assert _has_zero_step(jmespath.compile(expression).parsed), expression
        event("zero slice step")
        return
    event("parses")
    assert_same_behaviour(expression, document)


def test_a_zero_step_fails_at_compile_time() -> None:
    with pytest.raises(JMESPathError):
        mapping.compile("a[::0]")
    with pytest.raises(ValueError):
        reference_search("a[::0]", {"a": [1]})


INTERESTING_NODES = {
    "field",
    "subexpression",
    "index_expression",
    "index",
    "slice",
    "projection",
    "value_projection",
    "filter_projection",
    "flatten",
    "comparator",
    "or_expression",
    "and_expression",
    "not_expression",
    "pipe",
    "multi_select_list",
    "multi_select_dict",
    "literal",
    "current",
    "function_expression",
    "expref",
}


def test_the_grammar_reaches_interesting_cases() -> None:
    """Guards the generators: valid text, often non-null results, every kind of AST node and function."""
    seen: Counter[str] = Counter()
    nodes: set[str] = set()
    functions: set[str] = set()

    def record(expression: str, document: Any) -> Any:
        seen["pairs"] += 1
        try:
            parsed = jmespath.compile(expression).parsed
        except JMESPathError:
            seen["invalid"] += 1
            return None
        for node in _walk(parsed):
            nodes.add(node["type"])
            if node["type"] == "function_expression":
                functions.add(node["value"])
        try:
            return reference_search(expression, document)
        except Exception:
            seen["raises"] += 1
            return None

    @settings(SETTINGS, max_examples=150)
    @given(expression=EXPRESSIONS, document=DOCUMENTS)
    def paths(expression: str, document: Any) -> None:
        result = record(expression, document)
        seen["non-null"] += result is not None
        seen["truthy"] += result not in (None, [], {}, "", False)

    @settings(SETTINGS, max_examples=60)
    @given(expression=CALLS, document=DOCUMENTS)
    def function_calls(expression: str, document: Any) -> None:
        record(expression, document)

    paths()
    assert seen["pairs"] >= 120, seen
    assert seen["non-null"] >= 0.25 * seen["pairs"], seen
    assert seen["truthy"] >= 0.15 * seen["pairs"], seen
    assert seen["raises"] <= 0.25 * seen["pairs"], seen
    function_calls()
    assert seen["invalid"] == 0, seen  # the grammar only writes valid JMESPath
    assert nodes >= INTERESTING_NODES, INTERESTING_NODES - nodes
    assert len(functions) >= 20, sorted(functions)


class _RaisingFunctions(jmespath.functions.Functions):
    @jmespath.functions.signature({"types": []})
    def _func_boom(self, value: Any) -> Any:
        return value.missing_attribute  # AttributeError: a bug in a custom function


def test_a_value_projection_does_not_swallow_errors_of_its_base() -> None:
    options = jmespath.Options(custom_functions=_RaisingFunctions())
    with pytest.raises(AttributeError):
        jmespath.search("boom(@).*", {"a": 1}, options=options)
    with pytest.raises(AttributeError):
        mapping.compile("boom(@).*").search({"a": 1}, options=options)
