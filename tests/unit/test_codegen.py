"""Generated render functions (app/mapping/codegen.py) answer as the closures they replace.

The JMESPath compliance suite and the hypothesis differential test already run every
expression through the generated code (``mapping.compile`` uses it); these tests cover the
template level, what falls back to the closures, and that template text stays data.
"""

from __future__ import annotations

import json
from typing import Any

import jmespath
import pytest
from ruamel.yaml import YAML

from app import mapping
from app.mapping.codegen import generate_expression
from app.mapping.compiled import default_functions
from app.mapping.functions import jmespath_options
from app.mapping.loader import to_plain
from app.mapping.templates import RenderError, _compile_node, compile_template, generate_template
from app.payloads import normalise
from tests.conftest import ADOBE_SAMPLES, EXAMPLES, MAPPINGS, ROOT

FIXTURES = ROOT / "tests" / "fixtures"


def _events() -> list[tuple[str, Any]]:
    files = [*EXAMPLES.glob("*.json"), *FIXTURES.glob("*.json")]
    if ADOBE_SAMPLES.is_dir():
        files += sorted(ADOBE_SAMPLES.glob("*.json"))
    events = []
    for path in sorted(files):
        for index, event in enumerate(normalise(json.loads(path.read_text())).events):
            events.append((f"{path.name}[{index}]", event))
    return events


def _bodies() -> list[tuple[str, Any]]:
    yaml = YAML(typ="rt")
    return [
        (path.name, to_plain(yaml.load(path.read_text())["body"])) for path in sorted(MAPPINGS.glob("*.yaml"))
    ]


@pytest.mark.parametrize(("name", "body"), _bodies())
def test_every_shipped_mapping_renders_as_the_closures_do(name: str, body: Any) -> None:
    generated = generate_template(body, (), _compile_node(body))
    assert generated is not None, name
    closures = _compile_node(body)
    for event_name, event in _events():
        try:
            expected: Any = closures(event)
        except RenderError as exc:
            expected = exc
        if isinstance(expected, RenderError):
            with pytest.raises(RenderError) as raised:
                generated(event)
            assert (raised.value.path, raised.value.reason) == (expected.path, expected.reason), event_name
        else:
            assert generated(event) == expected, (name, event_name)


def test_a_failing_token_is_reported_in_its_field_by_the_closures() -> None:
    template = {"event": {"ok": "{{ a }}", "bad": "{{ length(a) }}"}}
    with pytest.raises(RenderError) as raised:
        compile_template(template)({"a": 5})
    assert raised.value.path == "event.bad"


@pytest.mark.parametrize(
    "text",
    [
        "'); import os; os._exit(3); ('",
        '"""\nraise SystemExit\n"""',
        "\\",
        "{}",
        "__import__('os')",
    ],
)
def test_keys_and_literal_text_are_data_not_code(text: str) -> None:
    template = {text: text, "nested": {text: ["{{ a }}", text]}, "mixed": f"{text} {{{{ a }}}} {text}"}
    assert compile_template(template)({"a": "x"}) == {
        text: text,
        "nested": {text: ["x", text]},
        "mixed": f"{text} x {text}",
    }


def test_string_literals_in_expressions_are_data_not_code() -> None:
    expression = "a == '\\'); raise SystemExit(\\''"
    assert mapping.compile(expression).search({"a": "'); raise SystemExit('"}) is True


def test_an_expression_too_deep_to_generate_is_left_to_the_closures() -> None:
    expression = "a" + "[*].a" * 30
    parsed = mapping.compile(expression).parsed
    assert generate_expression(parsed, default_functions(), expression) is None
    document = {"a": _nested(30)}
    expected = jmespath.search(expression, document, options=jmespath_options())
    assert mapping.compile(expression).search(document) == expected
    assert expected is not None


def test_a_deeply_nested_template_is_generated() -> None:
    template: Any = "{{ a }}"
    for _ in range(80):
        template = {"k": template}
    assert generate_template(template, (), _compile_node(template)) is not None
    rendered = compile_template(template)({"a": 1})
    for _ in range(80):
        rendered = rendered["k"]
    assert rendered == 1


def test_a_token_too_deep_to_write_out_calls_its_own_function() -> None:
    deep = "a" + "[*].a" * 30
    template = {"deep": f"{{{{ {deep} }}}}", "flat": "{{ b }}"}
    render = generate_template(template, (), _compile_node(template))
    assert render is not None
    document = {"a": _nested(30), "b": 2}
    rendered = render(document)
    assert rendered == _compile_node(template)(document)
    assert rendered["flat"] == 2
    assert rendered["deep"] == jmespath.search(deep, document) is not None


def _nested(depth: int) -> Any:
    """What ``a[*].a[*].a ...`` (``depth`` projections) walks down to ``"leaf"``."""
    return "leaf" if depth == 0 else [{"a": _nested(depth - 1)}]


def test_generated_code_is_named_after_its_template_for_tracebacks() -> None:
    render = compile_template({"x": "{{ a }}"}, ("body",))
    assert render.__code__.co_filename == "<template body>"
