"""``{{ expr }}`` body templates compiled once into one function from event to body.

A string that is exactly one token keeps the token's JSON type; tokens inside longer text are
rendered as text. Object keys and array items that render to null are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from jmespath.exceptions import JMESPathError

from app.mapping.expressions import Expression, ExpressionError

Render = Callable[[Any], Any]
Keys = tuple[str | int, ...]
OPEN, CLOSE = "{{", "}}"


def format_path(keys: Keys) -> str:
    """``("event", "items", 2, "sku")`` -> ``event.items[2].sku``."""
    text = ""
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text


class TemplateError(ValueError):
    """A template that does not compile; ``keys`` and ``path`` say where in the body."""

    def __init__(self, keys: Keys, reason: str) -> None:
        self.keys = keys
        self.path = format_path(keys)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class RenderError(ValueError):
    """A template that failed on one event; ``path`` says which field."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


def compile_template(node: Any, keys: Keys = ()) -> Render:
    """Compile a YAML value (dict, list, string, literal) into a render function.

    ``TemplateError`` says where a template does not compile; ``RenderError`` says in which
    field a render failed.
    """
    return _compile_node(node, keys)


def _compile_node(node: Any, keys: Keys = ()) -> Render:
    if isinstance(node, dict):
        return _compile_object(node, keys)
    if isinstance(node, list):
        return _compile_array(node, keys)
    if isinstance(node, str):
        return _compile_string(node, keys)
    return _Literal(node)


class _Literal:
    """A value without tokens; objects copy it instead of calling it."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self, _event: Any) -> Any:
        return self.value


def _compile_object(node: dict[Any, Any], keys: Keys) -> Render:
    checked: list[tuple[str, Render]] = []
    leading: dict[str, Any] = {}  # literal fields before the first token: copied in one step
    fast: list[tuple[str, Render]] = []
    for key, value in node.items():
        render = _compile_node(value, (*keys, str(key)))
        checked.append((str(key), render))
        if isinstance(render, _Literal) and render.value is None:
            continue  # a literal null is dropped once, here
        if isinstance(render, _Literal) and not fast:
            leading[str(key)] = render.value
        else:
            # a whole-value token is called bare; errors are traced to their field below
            fast.append((str(key), getattr(render, "bare", render)))

    def render_object(event: Any) -> dict[str, Any]:
        out = leading.copy()
        try:
            for key, render in fast:
                value = render(event)
                if value is not None:
                    out[key] = value
        except (JMESPathError, TypeError, ValueError):
            for _key, render in checked:  # again with field paths, to say which one failed
                render(event)
            raise
        return out

    return render_object


def _compile_array(node: list[Any], keys: Keys) -> Render:
    items = [_compile_node(value, (*keys, index)) for index, value in enumerate(node)]

    def render_array(event: Any) -> list[Any]:
        out = []
        for render in items:
            value = render(event)
            if value is not None:
                out.append(value)
        return out

    return render_array


def _compile_string(text: str, keys: Keys) -> Render:
    if OPEN not in text:
        return _Literal(text)
    parts = split_tokens(text, keys)
    path = format_path(keys)
    if len(parts) == 1 and isinstance(parts[0], Expression):
        return _evaluate(parts[0], path)
    pieces: list[Render] = [
        _as_text(_evaluate(part, path)) if isinstance(part, Expression) else _literal(part) for part in parts
    ]

    def render_text(event: Any) -> str:
        return "".join(piece(event) for piece in pieces)

    return render_text


def split_tokens(text: str, keys: Keys = ()) -> list[str | Expression]:
    """Split text into literal pieces and compiled tokens.

    A token ends at the first ``}}`` after which its inside compiles, so expressions that
    contain ``}}`` themselves (``{a: {b: c}}``) still work. That ``}}`` is found by one scan
    over brackets and quoted parts, and the inside compiled once: text of n characters costs
    O(n), not a compile at every ``}}``.
    """
    stripped = text.strip()
    if stripped.startswith(OPEN) and stripped.endswith(CLOSE):
        try:
            return [Expression(stripped[2:-2])]
        except ExpressionError:
            pass  # several tokens, or a broken one: the scan below finds which
    parts: list[str | Expression] = []
    position = 0
    while (start := text.find(OPEN, position)) != -1:
        if start > position:
            parts.append(text[position:start])
        expression, position = _scan_token(text, start, keys)
        parts.append(expression)
    if position < len(text):
        parts.append(text[position:])
    return parts


# What can open, close or hide a bracket in JMESPath: a whole quoted part (a raw string,
# a quoted identifier or a JSON literal, each with backslash escapes, as jmespath's lexer
# reads them), a quote left open, or a bracket. A quote left open is tried once, in linear time.
_SIGNIFICANT = re.compile(
    r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`|['"`]|[\[{(]|[\]})]""", re.S
)


def _scan_token(text: str, start: int, keys: Keys) -> tuple[Expression, int]:
    """The token opened at ``start`` and the position after its ``}}``.

    The only ``}}`` an expression can end at is the first one outside quotes and brackets:
    a longer inside would hold a closing bracket that nothing opened, and a shorter one an
    open bracket or quote, and neither compiles.
    """
    end = _token_end(text, start + 2)
    if end == -1:  # no such `}}`: compile up to the first one for the parser's own reason
        end = text.find(CLOSE, start + 2)
        if end == -1:
            raise TemplateError(keys, f"unclosed `{{{{` in {text!r}")
    inner = text[start + 2 : end]
    if not inner.strip():
        raise TemplateError(keys, "empty `{{ }}` token")
    try:
        return Expression(inner), end + 2
    except ExpressionError as exc:
        raise TemplateError(keys, str(exc)) from None


def _token_end(text: str, position: int) -> int:
    """Where the first ``}}`` outside quotes and brackets starts; -1 when there is none."""
    depth = 0
    for match in _SIGNIFICANT.finditer(text, position):
        char = match.group()
        if len(char) > 1:  # a quoted part
            continue
        if char in "'\"`":  # a quote never closed
            return -1
        if char in "[{(":
            depth += 1
        elif depth:
            depth -= 1
        elif char == "}" and text.startswith("}", match.end()):
            return match.start()
        else:  # a closing bracket that nothing opened
            return -1
    return -1


def _evaluate(expression: Expression, path: str) -> Render:
    function = expression.function  # called directly: no wrapper layers per token

    def evaluate(event: Any) -> Any:
        try:
            return function(event)
        except (JMESPathError, TypeError, ValueError) as exc:
            raise RenderError(path, f"`{expression.source}` failed: {' '.join(str(exc).split())}") from None

    evaluate.bare = function  # type: ignore[attr-defined]  # for objects' fast loop
    return evaluate


def _as_text(render: Render) -> Callable[[Any], str]:
    return lambda event: to_text(render(event))


def _literal(text: str) -> Callable[[Any], str]:
    return lambda _event: text


def to_text(value: Any) -> str:
    """How a value reads inside text: strings as they are, null as nothing, the rest as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return orjson.dumps(value).decode()
