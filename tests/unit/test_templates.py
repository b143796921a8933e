"""``{{ expr }}`` body templates (app/mapping/templates.py)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from app.mapping.expressions import Expression
from app.mapping.templates import RenderError, TemplateError, compile_template, split_tokens, to_text

EVENT: dict[str, Any] = {
    "xdm": {
        "_id": "evt-1",
        "eventType": "commerce.purchases",
        "timestamp": "2024-05-01T12:00:00Z",
        "identityMap": {
            "Email": [{"id": "Jane.Smith@Example.COM", "primary": "true"}],
            "ECID": [{"id": "123", "primary": True}],
        },
        "commerce": {"order": {"purchaseID": "ORD-1", "priceTotal": 539.97}},
        "productListItems": [
            {"SKU": "A-1", "quantity": 1, "priceTotal": 10.5},
            {"SKU": "B-2", "quantity": 2, "priceTotal": 4},
        ],
    },
    "data": {
        "zero": 0,
        "no": False,
        "yes": True,
        "empty_list": [],
        "empty_object": {},
        "empty_text": "",
        "nothing": None,
        "int": 42,
        "float": 1.5,
        "text": "hi",
        "city": "Tōkyō 🎉",
        "object": {"a": 1, "b": [1, 2]},
        "list": [1, "two", None],
    },
    "meta": {},
}


def render(template: Any, event: Any = EVENT, path: str = "") -> Any:
    return compile_template(template, path)(event)


# ----------------------------------------------------------- whole token keeps its type


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ data.zero }}", 0),
        ("{{ data.no }}", False),
        ("{{ data.yes }}", True),
        ("{{ data.empty_list }}", []),
        ("{{ data.empty_object }}", {}),
        ("{{ data.empty_text }}", ""),
        ("{{ data.int }}", 42),
        ("{{ data.float }}", 1.5),
        ("{{ data.text }}", "hi"),
        ("{{ data.object }}", {"a": 1, "b": [1, 2]}),
        ("{{ data.list }}", [1, "two", None]),
        ("{{ xdm.commerce.order.priceTotal }}", 539.97),
        ("{{data.int}}", 42),
        ("{{ `123` }}", 123),
        ("{{ 'literal' }}", "literal"),
    ],
)
def test_whole_token_keeps_its_json_type(template: str, expected: Any) -> None:
    result = render(template)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize("template", ["  {{ data.int }}  ", "\n{{ data.int }}\n", "\t{{data.int}} "])
def test_whitespace_around_a_single_token_still_typed(template: str) -> None:
    assert render(template) == 42
    assert type(render(template)) is int


def test_whole_token_missing_value_is_none() -> None:
    assert render("{{ data.missing }}") is None


def test_string_without_tokens_is_literal() -> None:
    assert render("plain } text {") == "plain } text {"
    assert render("a }} b") == "a }} b"


@pytest.mark.parametrize("literal", [0, 1.25, True, False, "text"])
def test_non_string_literals_are_kept(literal: Any) -> None:
    assert render(literal) == literal
    assert type(render(literal)) is type(literal)


# -------------------------------------------------------------- embedded token -> text


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("n={{ data.int }}", "n=42"),
        ("n={{ data.float }}", "n=1.5"),
        ("n={{ data.zero }}", "n=0"),
        ("b={{ data.yes }}/{{ data.no }}", "b=true/false"),
        ("x={{ data.nothing }}.", "x=."),
        ("x={{ data.missing }}.", "x=."),
        ("o={{ data.object }}", 'o={"a":1,"b":[1,2]}'),
        ("l={{ data.list }}", 'l=[1,"two",null]'),
        ("e={{ data.empty_list }}{{ data.empty_object }}", "e=[]{}"),
        ("s={{ data.text }}", "s=hi"),
        ("Order {{ xdm.commerce.order.purchaseID }}", "Order ORD-1"),
        ("{{ data.city }}!", "Tōkyō 🎉!"),
        ("{{ data.text }} {{ data.int }}", "hi 42"),
        ("{{data.text}}{{data.int}}", "hi42"),
        ("[{{ data.text }}]-[{{ data.text }}]", "[hi]-[hi]"),
    ],
)
def test_embedded_token_becomes_text(template: str, expected: str) -> None:
    assert render(template) == expected


def test_two_tokens_that_render_to_null_leave_the_literal_text() -> None:
    assert render("{{ data.missing }} and {{ data.nothing }}") == " and "


def test_two_tokens_alone_are_text_not_typed() -> None:
    assert render("{{ data.int }}{{ data.zero }}") == "420"


# ----------------------------------------------------------------- expressions with }}


def test_multiselect_hash_with_nested_braces_whole() -> None:
    assert render("{{ {a: {b: data.text}} }}") == {"a": {"b": "hi"}}


def test_multiselect_hash_with_nested_braces_without_spaces() -> None:
    assert render("{{{a: {b: data.text}}}}") == {"a": {"b": "hi"}}


def test_multiselect_hash_with_nested_braces_embedded() -> None:
    assert render("x {{ {a: {b: data.text}} }} y") == 'x {"a":{"b":"hi"}} y'


def test_projection_to_objects_whole() -> None:
    assert render("{{ xdm.productListItems[].{sku: SKU} }}") == [{"sku": "A-1"}, {"sku": "B-2"}]


def test_projection_to_objects_embedded() -> None:
    assert (
        render("items: {{ xdm.productListItems[].{sku: SKU} }}!") == 'items: [{"sku":"A-1"},{"sku":"B-2"}]!'
    )


def test_token_then_nested_braces_token() -> None:
    assert render("{{ data.text }} {{ {a: {b: data.int}} }}") == 'hi {"a":{"b":42}}'


def test_raw_string_containing_closing_braces() -> None:
    assert render("{{ '}}' }}") == "}}"
    assert render("a {{ '}}' }} b") == "a }} b"


def test_json_literal_containing_closing_braces_embedded() -> None:
    assert render('x{{ `{"a":{"b":1}}` }}') == 'x{"a":{"b":1}}'


def test_closing_braces_after_a_token_are_literal() -> None:
    assert render("{{ data.text }} }}") == "hi }}"
    assert render("}} {{ data.text }}") == "}} hi"


# ------------------------------------------------------------------------ null dropping


def test_keys_rendering_to_null_are_dropped() -> None:
    template = {
        "kept_zero": "{{ data.zero }}",
        "kept_false": "{{ data.no }}",
        "kept_empty": "{{ data.empty_text }}",
        "dropped_missing": "{{ data.missing }}",
        "dropped_null": "{{ data.nothing }}",
        "dropped_literal": None,
    }
    assert render(template) == {"kept_zero": 0, "kept_false": False, "kept_empty": ""}


def test_keys_keep_the_template_order_around_literals_and_tokens() -> None:
    template = {"a": "x", "null": None, "b": "{{ data.zero }}", "c": "y", "d": None, "e": "{{ data.no }}"}
    assert list(render(template).items()) == [("a", "x"), ("b", 0), ("c", "y"), ("e", False)]


def test_a_literal_object_renders_a_new_object_each_time() -> None:
    template = compile_template({"a": "x", "b": 1})
    first = template(EVENT)
    first["c"] = 2
    assert template(EVENT) == {"a": "x", "b": 1}


def test_array_items_rendering_to_null_are_dropped() -> None:
    template = [1, None, "{{ data.missing }}", "{{ data.zero }}", {"a": None}, "{{ data.nothing }}"]
    assert render(template) == [1, 0, {}]


def test_nested_objects_and_lists() -> None:
    template = {
        "profile": {
            "source": "shop",
            "identifiers": [
                {"type": "email", "value": "{{ lower(primary_identity(xdm.identityMap, 'email')) }}"},
                {"type": "crm", "value": "{{ primary_identity(xdm.identityMap, 'crmid') }}"},
            ],
        },
        "event": {
            "type": "order_completed",
            "created_at": "{{ iso8601(xdm.timestamp) }}",
            "description": "Order {{ xdm.commerce.order.purchaseID }}",
            "properties": {
                "total": "{{ xdm.commerce.order.priceTotal }}",
                "items": "{{ xdm.productListItems[].{sku: SKU, qty: quantity} }}",
                "tier": "{{ data.customer.tier }}",
            },
        },
    }
    assert render(template) == {
        "profile": {
            "source": "shop",
            "identifiers": [
                {"type": "email", "value": "jane.smith@example.com"},
                {"type": "crm"},
            ],
        },
        "event": {
            "type": "order_completed",
            "created_at": "2024-05-01T12:00:00Z",
            "description": "Order ORD-1",
            "properties": {
                "total": 539.97,
                "items": [{"sku": "A-1", "qty": 1}, {"sku": "B-2", "qty": 2}],
            },
        },
    }


def test_empty_containers_are_kept() -> None:
    assert render({"a": {}, "b": []}) == {"a": {}, "b": []}


def test_compiled_template_is_reusable_across_events() -> None:
    compiled = compile_template({"v": "{{ data.v }}", "t": "v={{ data.v }}"})
    assert compiled({"data": {"v": 1}}) == {"v": 1, "t": "v=1"}
    assert compiled({"data": {}}) == {"t": "v="}
    assert compiled({"data": {"v": "x"}}) == {"v": "x", "t": "v=x"}


def test_custom_functions_inside_tokens() -> None:
    assert render("{{ primary_identity(xdm.identityMap, 'ecid') }}") == "123"
    assert render("{{ lower('ABC') }}") == "abc"
    assert render("{{ snake_case('Order Completed') }}") == "order_completed"
    assert render("at {{ iso8601(xdm.timestamp) }}") == "at 2024-05-01T12:00:00Z"


# -------------------------------------------------------------------- compile errors


@pytest.mark.parametrize(
    ("text", "reason_start"),
    [
        ("{{ data.text", "unclosed `{{`"),
        ("Hello {{ data.text", "unclosed `{{`"),
        ("{{ data.text }} and {{ data.int", "unclosed `{{`"),
        ("{{ }}", "empty `{{ }}` token"),
        ("{{}}", "empty `{{ }}` token"),
        ("a {{   }} b", "empty `{{ }}` token"),
        ("{{ data. }}", "invalid JMESPath `data.`"),
        ("total: {{ data[ }}", "invalid JMESPath `data[`"),
        ("{{ {{ data.text }} }}", "invalid JMESPath"),
    ],
)
def test_compile_errors_raise_template_error_with_the_path(text: str, reason_start: str) -> None:
    template = {"event": {"properties": {"total": text}}}
    with pytest.raises(TemplateError) as caught:
        compile_template(template)
    assert caught.value.path == "event.properties.total"
    assert caught.value.reason.startswith(reason_start)
    assert str(caught.value).startswith("event.properties.total: ")


def test_template_error_path_inside_a_list() -> None:
    template = {"profile": {"identifiers": [{"type": "email"}, {"type": "crm", "value": "{{ x. }}"}]}}
    with pytest.raises(TemplateError) as caught:
        compile_template(template)
    assert caught.value.path == "profile.identifiers[1].value"


def test_template_error_path_of_a_top_level_list_item() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(["ok", "{{ }}"])
    assert caught.value.path == "[1]"


def test_template_error_path_prefix_is_used() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template({"user_id": "{{ data. }}"}, ("endpoint",))
    assert caught.value.path == "endpoint.user_id"


def test_template_error_without_path_has_only_the_reason() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template("{{ }}")
    assert caught.value.path == ""
    assert str(caught.value) == "empty `{{ }}` token"


def test_unknown_function_is_a_compile_error() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template({"a": "{{ lowr(data.text) }}"})
    assert caught.value.path == "a"


def test_wrong_arity_is_a_compile_error() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template({"a": "{{ lower(data.text, data.int) }}"})
    assert caught.value.path == "a"


# --------------------------------------------------------------------- render errors


@pytest.mark.parametrize(
    "text",
    [
        "{{ abs('x') }}",
        "{{ lower(data.int) }}",
        "value: {{ lower(data.int) }}",
        "{{ sum(data.list) }}",
        "{{ iso8601(data.object) }}",
    ],
)
def test_runtime_type_error_raises_render_error_with_the_path(text: str) -> None:
    compiled = compile_template({"event": {"properties": {"total": text}}})
    with pytest.raises(RenderError) as caught:
        compiled(EVENT)
    assert caught.value.path == "event.properties.total"
    assert "failed" in caught.value.reason
    assert str(caught.value).startswith("event.properties.total: ")


def test_render_error_path_inside_a_list() -> None:
    compiled = compile_template({"event": {"items": [{"v": "ok"}, {"v": "{{ abs(data.text) }}"}]}})
    with pytest.raises(RenderError) as caught:
        compiled(EVENT)
    assert caught.value.path == "event.items[1].v"
    assert caught.value.reason == (
        "`abs(data.text)` failed: In function abs(), invalid type for value: hi, "
        "expected one of: ['number'], received: \"string\""
    )


# -------------------------------------------------------------------- split_tokens


def test_split_tokens_literals_and_expressions() -> None:
    parts = split_tokens("a {{ x }} b {{ y.z }}")
    assert [p.source if isinstance(p, Expression) else p for p in parts] == ["a ", "x", " b ", "y.z"]
    assert [type(p) for p in parts] == [str, Expression, str, Expression]


def test_split_tokens_single_token_with_spaces() -> None:
    parts = split_tokens("  {{ x }}  ")
    assert len(parts) == 1
    assert isinstance(parts[0], Expression)
    assert parts[0].source == "x"


def test_split_tokens_trailing_literal() -> None:
    parts = split_tokens("{{ {a: {b: c}} }} tail")
    assert isinstance(parts[0], Expression)
    assert parts[0].source == "{a: {b: c}}"
    assert parts[1:] == [" tail"]


def test_split_tokens_no_tokens() -> None:
    assert split_tokens("plain") == ["plain"]


def test_split_tokens_error_carries_path() -> None:
    with pytest.raises(TemplateError) as caught:
        split_tokens("x {{ y", ("a", "b"))
    assert caught.value.path == "a.b"


def compiles_during(work: Callable[[], object]) -> int:
    """How many expressions ``work`` compiles, counted by a profiler hook (nothing replaced)."""
    compile_code = Expression.__init__.__code__
    calls = 0

    def count(frame: FrameType, event: str, _arg: object) -> None:
        nonlocal calls
        if event == "call" and frame.f_code is compile_code:
            calls += 1

    sys.setprofile(count)
    try:
        work()
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize(
    "text",
    [
        "{{ [" + " a }}" * 2000,  # many `}}`, none of which closes the bracket
        "x {{ '" + " a }}" * 2000,  # a quote never closed
        "{{ a ) " + " }}" * 2000,  # a closing bracket nothing opened
        "{{ a }}" * 2000 + "{{ b",  # many good tokens, then an unclosed one
    ],
)
def test_a_broken_token_is_compiled_once_however_many_closing_braces_follow(text: str) -> None:
    def split() -> None:
        with pytest.raises(TemplateError):
            split_tokens(text)

    tokens = text.count("{{")
    assert compiles_during(split) <= tokens + 1  # one per token, plus the whole-string attempt


def test_the_token_scan_grows_linearly_with_the_text() -> None:
    def seconds(repeats: int) -> float:
        text = "{{ [" + " a }}" * repeats
        started = time.perf_counter()
        with pytest.raises(TemplateError):
            split_tokens(text)
        return time.perf_counter() - started

    small = min(seconds(1000) for _ in range(3))
    large = min(seconds(8000) for _ in range(3))
    assert large < 30 * small + 0.05  # quadratic would be 64 times; linear is 8


@pytest.mark.parametrize(
    ("text", "source", "rest"),
    [
        ("{{ {a: {b: c}} }}} tail", "{a: {b: c}}", "} tail"),
        ("{{ 'x }} y' }} tail", "'x }} y'", " tail"),
        ('{{ "q}}" }} tail', '"q}}"', " tail"),
        ('{{ `"}}"` }} tail', '`"}}"`', " tail"),
        ("{{ 'it\\'s }}' }} tail", "'it\\'s }}'", " tail"),
        ("{{ a[?b == '}}'] }} tail", "a[?b == '}}']", " tail"),
    ],
)
def test_a_token_ends_at_the_first_closing_braces_outside_quotes_and_brackets(
    text: str, source: str, rest: str
) -> None:
    expression, *after = split_tokens(text)
    assert isinstance(expression, Expression)
    assert (expression.source, after) == (source, [rest])


# ------------------------------------------------------------------------------ to_text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", "text"),
        ("", ""),
        (None, ""),
        (0, "0"),
        (42, "42"),
        (1.5, "1.5"),
        (True, "true"),
        (False, "false"),
        ({"a": 1, "b": None}, '{"a":1,"b":null}'),
        ([1, "x"], '[1,"x"]'),
        ([], "[]"),
        ({}, "{}"),
        ({"city": "Tōkyō"}, '{"city":"Tōkyō"}'),
        ("a\x00b", "a\x00b"),
    ],
)
def test_to_text(value: Any, expected: str) -> None:
    assert to_text(value) == expected
