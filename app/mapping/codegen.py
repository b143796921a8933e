"""Python source generated from JMESPath syntax trees: one function per expression or template.

The closure compiler (``compiled.Compiler``) calls one Python function per syntax node; a
mapping body of a dozen tokens made about a hundred calls per event, a quarter of the
relay's work per ingested event. Here the same nodes become straight-line statements of one
generated function, with the closure compiler's semantics node for node (see
``compiled.Compiler``, which stays the reference for anything generated):

* paths, indexes, literals, ``@``, pipes, comparisons, ``||``, ``&&``, ``!``, projections,
  filters, flattening, multi-selects and function calls are written out inline;
* slices, value projections (``*``) and expression references (``&x``) call the closure
  compiler's function for that node.

Generated code names values only through its namespace (keys and literals are passed as
values, never written into the source), so a mapping cannot inject code. A tree too deep
for Python's compiler is left to the closures (``generate_expression`` returns None).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jmespath import functions as jp_functions

from app.mapping import compiled

Fn = Callable[[Any], Any]
MAX_LOOPS = 12  # nested for-loops (Python allows 20 nested blocks)
MAX_INDENT = 60  # Python refuses code nested 100 levels deep


class TooDeep(Exception):
    """The tree needs more nesting than generated code can have: use the closures."""


def _field(value: Any, name: str) -> Any:
    """A field of anything but a dict or None (a dict subclass, say), as the closures do."""
    try:
        return value.get(name)
    except AttributeError:
        return None


def _ordered(compare: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    if not (compiled._is_comparable(a) and compiled._is_comparable(b)):
        return None
    return compare(a, b)


def _negate(value: Any) -> bool:
    if compiled._is_actual_number(value) and value == 0:
        return False
    return not value


HELPERS: dict[str, Any] = {
    "_field": _field,
    "_equals": compiled._equals,
    "_ordered": _ordered,
    "_negate": _negate,
    "_list": list,
    "_dict": dict,
}


class Emitter:
    """Writes the statements of one generated function; values live in its namespace."""

    def __init__(self, functions: jp_functions.Functions) -> None:
        self.functions = functions
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = dict(HELPERS)
        self._count = 0
        self._loops = 0

    def temp(self, prefix: str = "v") -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def const(self, value: Any) -> str:
        name = self.temp("_c")
        self.namespace[name] = value
        return name

    def line(self, indent: int, text: str) -> None:
        if indent > MAX_INDENT:
            raise TooDeep
        self.lines.append("    " * indent + text)

    def is_false(self, var: str) -> str:
        """JMESPath falsiness of a variable, as ``compiled._is_false`` tests it."""
        return f"({var} == '' or {var} == [] or {var} == {{}} or {var} is None or {var} is False)"

    # -- expressions ---------------------------------------------------------------------

    def emit(self, node: dict[str, Any], src: str, indent: int) -> str:
        """Statements that evaluate ``node`` against variable ``src``; returns the result's name."""
        kind = node["type"]
        method = getattr(self, f"_{kind}", None)
        if method is None or kind in ("slice", "value_projection", "expref"):
            return self._closure(node, src, indent)
        result: str = method(node, src, indent)
        return result

    def emit_or_call(self, node: dict[str, Any], function: Fn, src: str, indent: int) -> str:
        """``emit``, or a call of ``function`` (the node's compiled function) when the node is
        too deep to write out here."""
        mark, loops = len(self.lines), self._loops
        try:
            return self.emit(node, src, indent)
        except TooDeep:
            del self.lines[mark:]
            self._loops = loops
        out = self.temp()
        self.line(indent, f"{out} = {self.const(function)}({src})")
        return out

    def _closure(self, node: dict[str, Any], src: str, indent: int) -> str:
        function = self.const(compiled.Compiler(self.functions).compile(node))
        out = self.temp()
        self.line(indent, f"{out} = {function}({src})")
        return out

    def _field(self, node: dict[str, Any], src: str, indent: int) -> str:
        key, out = self.const(node["value"]), self.temp()
        self.line(
            indent,
            f"{out} = {src}.get({key}) if type({src}) is _dict else "
            f"(None if {src} is None else _field({src}, {key}))",
        )
        return out

    def _subexpression(self, node: dict[str, Any], src: str, indent: int) -> str:
        for child in node["children"]:
            src = self.emit(child, src, indent)
        return src

    _index_expression = _subexpression
    _pipe = _subexpression

    def _index(self, node: dict[str, Any], src: str, indent: int) -> str:
        index, out = node["value"], self.temp()
        if type(index) is not int:
            return self._closure(node, src, indent)
        bound = -index - 1 if index < 0 else index
        self.line(
            indent,
            f"{out} = ({src}[{index}] if {bound} < len({src}) else None) "
            f"if isinstance({src}, _list) else None",
        )
        return out

    def _current(self, _node: dict[str, Any], src: str, _indent: int) -> str:
        return src

    def _literal(self, node: dict[str, Any], _src: str, _indent: int) -> str:
        return self.const(node["value"])

    def _key_val_pair(self, node: dict[str, Any], src: str, indent: int) -> str:
        return self.emit(node["children"][0], src, indent)

    def _comparator(self, node: dict[str, Any], src: str, indent: int) -> str:
        left_node, right_node = node["children"]
        left = self.emit(left_node, src, indent)
        right = self.emit(right_node, src, indent)
        op, out = node["value"], self.temp()
        if op in ("eq", "ne"):
            # against a string literal, JMESPath equality is Python's (no 0/1 vs bool case)
            plain = any(n["type"] == "literal" and type(n["value"]) is str for n in (left_node, right_node))
            test = f"{left} == {right}" if plain else f"_equals({left}, {right})"
            self.line(indent, f"{out} = {'not ' if op == 'ne' else ''}{test}")
            return out
        compare = self.const(compiled._ORDERING[op])
        self.line(indent, f"{out} = _ordered({compare}, {left}, {right})")
        return out

    def _or_expression(self, node: dict[str, Any], src: str, indent: int) -> str:
        left = self.emit(node["children"][0], src, indent)
        out = self.temp()
        self.line(indent, f"{out} = {left}")
        self.line(indent, f"if {self.is_false(out)}:")
        right = self.emit(node["children"][1], src, indent + 1)
        self.line(indent + 1, f"{out} = {right}")
        return out

    def _and_expression(self, node: dict[str, Any], src: str, indent: int) -> str:
        left = self.emit(node["children"][0], src, indent)
        out = self.temp()
        self.line(indent, f"{out} = {left}")
        self.line(indent, f"if not {self.is_false(out)}:")
        right = self.emit(node["children"][1], src, indent + 1)
        self.line(indent + 1, f"{out} = {right}")
        return out

    def _not_expression(self, node: dict[str, Any], src: str, indent: int) -> str:
        inner, out = self.emit(node["children"][0], src, indent), self.temp()
        self.line(indent, f"{out} = _negate({inner})")
        return out

    def _projection(self, node: dict[str, Any], src: str, indent: int) -> str:
        return self._loop(node, src, indent, condition=None)

    def _filter_projection(self, node: dict[str, Any], src: str, indent: int) -> str:
        return self._loop(node, src, indent, condition=node["children"][2])

    def _loop(self, node: dict[str, Any], src: str, indent: int, condition: dict[str, Any] | None) -> str:
        if self._loops >= MAX_LOOPS:
            raise TooDeep
        base = self.emit(node["children"][0], src, indent)
        out, element = self.temp(), self.temp("e")
        self.line(indent, f"if isinstance({base}, _list):")
        self.line(indent + 1, f"{out} = []")
        self.line(indent + 1, f"for {element} in {base}:")
        self._loops += 1
        body = indent + 2
        if condition is not None:
            test = self.emit(condition, element, body)
            self.line(body, f"if not {self.is_false(test)}:")
            body += 1
        each = self.emit(node["children"][1], element, body)
        self.line(body, f"if {each} is not None:")
        self.line(body + 1, f"{out}.append({each})")
        self._loops -= 1
        self.line(indent, "else:")
        self.line(indent + 1, f"{out} = None")
        return out

    def _flatten(self, node: dict[str, Any], src: str, indent: int) -> str:
        if self._loops >= MAX_LOOPS:
            raise TooDeep
        base = self.emit(node["children"][0], src, indent)
        out, element = self.temp(), self.temp("e")
        self.line(indent, f"if isinstance({base}, _list):")
        self.line(indent + 1, f"{out} = []")
        self.line(indent + 1, f"for {element} in {base}:")
        self.line(indent + 2, f"if isinstance({element}, _list):")
        self.line(indent + 3, f"{out}.extend({element})")
        self.line(indent + 2, "else:")
        self.line(indent + 3, f"{out}.append({element})")
        self.line(indent, "else:")
        self.line(indent + 1, f"{out} = None")
        return out

    def _multi_select_dict(self, node: dict[str, Any], src: str, indent: int) -> str:
        out = self.temp()
        self.line(indent, f"if {src} is None:")
        self.line(indent + 1, f"{out} = None")
        self.line(indent, "else:")
        items = []
        for child in node["children"]:
            value = self.emit(child, src, indent + 1)
            items.append(f"{self.const(child['value'])}: {value}")
        self.line(indent + 1, f"{out} = {{{', '.join(items)}}}")
        return out

    def _multi_select_list(self, node: dict[str, Any], src: str, indent: int) -> str:
        out = self.temp()
        self.line(indent, f"if {src} is None:")
        self.line(indent + 1, f"{out} = None")
        self.line(indent, "else:")
        values = [self.emit(child, src, indent + 1) for child in node["children"]]
        self.line(indent + 1, f"{out} = [{', '.join(values)}]")
        return out

    def _function_expression(self, node: dict[str, Any], src: str, indent: int) -> str:
        name = node["value"]
        args = [self.emit(child, src, indent) for child in node["children"]]
        out, call = self.temp(), self.const(self.functions.call_function)
        name_const = self.const(name)
        generic = f"{call}({name_const}, [{', '.join(args)}])"
        direct = compiled._direct_call(self.functions, name, len(args))
        if direct is None:
            self.line(indent, f"{out} = {generic}")
            return out
        function, checks = direct
        direct_call = f"{self.const(function)}({', '.join(args)})"
        if not checks:
            self.line(indent, f"{out} = {direct_call}")
            return out
        wrong = " or ".join(f"type({args[index]}) not in {self.const(allowed)}" for index, allowed in checks)
        # a value of another type goes to the library, which raises its own error (or accepts it)
        self.line(indent, f"{out} = {generic} if {wrong} else {direct_call}")
        return out

    # -- the function --------------------------------------------------------------------

    def build(self, name: str, result: str, filename: str) -> Fn:
        """Compile the statements written so far into ``def name(value): ...; return result``."""
        source = "\n".join([f"def {name}(value):", *self.lines, f"    return {result}"])
        code = compile(source, filename, "exec")
        exec(code, self.namespace)  # nosec B102 - generated from a syntax tree; values are namespace constants
        function: Fn = self.namespace[name]
        return function


def generate_expression(
    parsed: dict[str, Any], functions: jp_functions.Functions, source: str = ""
) -> Fn | None:
    """One generated function for a parsed expression, or None when it is too deep to generate."""
    emitter = Emitter(functions)
    try:
        result = emitter.emit(parsed, "value", 1)
        return emitter.build("expression", result, f"<jmespath {source[:60]!r}>")
    except (TooDeep, RecursionError, SyntaxError, MemoryError):
        return None
