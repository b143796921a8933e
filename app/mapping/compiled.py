"""A compiled JMESPath evaluator: the parsed AST becomes nested Python closures, once.

Same language and results as the reference ``jmespath`` interpreter (it follows
``jmespath.visitor.TreeInterpreter`` node for node), without per-node dispatch at search
time, and with a fast path for plain field chains such as ``xdm.commerce.order.priceTotal``.
Drop-in for the ``jmespath`` module's two entry points::

    from app import mapping
    mapping.compile("a.b[0]").search({"a": {"b": [1]}})   # 1
    mapping.search("length(@)", [1, 2])                   # 2

Errors are ``jmespath.exceptions`` classes, as with the reference.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from numbers import Number
from typing import Any

from jmespath import functions as jp_functions
from jmespath.exceptions import JMESPathError
from jmespath.parser import Parser
from jmespath.visitor import Options

from app.mapping.functions import RelayFunctions

Fn = Callable[[Any], Any]

_ORDERING = {"lt": operator.lt, "gt": operator.gt, "lte": operator.le, "gte": operator.ge}


def _is_actual_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, Number)


def _is_comparable(value: Any) -> bool:
    return _is_actual_number(value) or isinstance(value, str)


def _equals(x: Any, y: Any) -> bool:
    """JMESPath equality: 0 and 1 never equal false and true (as in the reference)."""
    if _is_actual_number(x) and x in (0, 1):
        if isinstance(y, bool):
            return False
    elif _is_actual_number(y) and y in (0, 1) and isinstance(x, bool):
        return False
    return bool(x == y)


def _is_false(value: Any) -> bool:
    return value == "" or value == [] or value == {} or value is None or value is False


class _Expression:
    """An expression reference (``&expr``) as functions such as ``sort_by`` expect it.

    The class name matters: jmespath's function type checks map ``_Expression`` to ``expref``.
    """

    __slots__ = ("_fn", "expression")

    def __init__(self, expression: dict[str, Any], fn: Fn) -> None:
        self.expression = expression
        self._fn = fn

    def visit(self, _node: Any, value: Any) -> Any:
        return self._fn(value)


class Compiler:
    """Turns one parsed AST into a closure, calling functions from the given table."""

    def __init__(self, functions: jp_functions.Functions, dict_cls: Callable[[], Any] = dict) -> None:
        self.functions = functions
        self.dict_cls = dict_cls

    def compile(self, node: dict[str, Any]) -> Fn:
        method: Callable[[dict[str, Any]], Fn] | None = getattr(self, f"_{node['type']}", None)
        if method is None:
            raise NotImplementedError(node["type"])
        return method(node)

    # -- paths ---------------------------------------------------------------------------

    def _field(self, node: dict[str, Any]) -> Fn:
        name = node["value"]

        def field(value: Any) -> Any:
            if type(value) is dict:
                return value.get(name)
            try:
                return value.get(name)
            except AttributeError:
                return None

        return field

    def _subexpression(self, node: dict[str, Any]) -> Fn:
        steps = _path_steps(node)
        if steps is not None:
            return _path_chain(steps)
        return _sequence([self.compile(child) for child in node["children"]])

    _index_expression = _subexpression

    def _pipe(self, node: dict[str, Any]) -> Fn:
        return _sequence([self.compile(child) for child in node["children"]])

    def _index(self, node: dict[str, Any]) -> Fn:
        index = node["value"]

        def index_of(value: Any) -> Any:
            if not isinstance(value, list):
                return None
            try:
                return value[index]
            except IndexError:
                return None

        return index_of

    def _slice(self, node: dict[str, Any]) -> Fn:
        bounds = slice(*node["children"])
        if bounds.step == 0:  # the reference fails with ValueError at search time
            raise JMESPathError("invalid-value: slice step cannot be zero")

        def slice_of(value: Any) -> Any:
            if not isinstance(value, list):
                return None
            return value[bounds]

        return slice_of

    def _current(self, _node: dict[str, Any]) -> Fn:
        return _identity

    _identity = _current

    def _literal(self, node: dict[str, Any]) -> Fn:
        literal = node["value"]
        return lambda _value: literal

    def _key_val_pair(self, node: dict[str, Any]) -> Fn:
        return self.compile(node["children"][0])

    # -- operators -----------------------------------------------------------------------

    def _comparator(self, node: dict[str, Any]) -> Fn:
        left, right = (self.compile(child) for child in node["children"])
        op = node["value"]
        if op == "eq":
            return lambda value: _equals(left(value), right(value))
        if op == "ne":
            return lambda value: not _equals(left(value), right(value))
        compare = _ORDERING[op]

        def ordering(value: Any) -> Any:
            a, b = left(value), right(value)
            if not (_is_comparable(a) and _is_comparable(b)):
                return None
            return compare(a, b)

        return ordering

    def _or_expression(self, node: dict[str, Any]) -> Fn:
        left, right = (self.compile(child) for child in node["children"])

        def either(value: Any) -> Any:
            matched = left(value)
            return right(value) if _is_false(matched) else matched

        return either

    def _and_expression(self, node: dict[str, Any]) -> Fn:
        left, right = (self.compile(child) for child in node["children"])

        def both(value: Any) -> Any:
            matched = left(value)
            return matched if _is_false(matched) else right(value)

        return both

    def _not_expression(self, node: dict[str, Any]) -> Fn:
        inner = self.compile(node["children"][0])

        def negate(value: Any) -> Any:
            result = inner(value)
            if _is_actual_number(result) and result == 0:
                return False
            return not result

        return negate

    # -- projections ---------------------------------------------------------------------

    def _projection(self, node: dict[str, Any]) -> Fn:
        base, each = (self.compile(child) for child in node["children"])

        def project(value: Any) -> Any:
            items = base(value)
            if not isinstance(items, list):
                return None
            collected = []
            for element in items:
                current = each(element)
                if current is not None:
                    collected.append(current)
            return collected

        return project

    def _value_projection(self, node: dict[str, Any]) -> Fn:
        base, each = (self.compile(child) for child in node["children"])

        def project_values(value: Any) -> Any:
            found = base(value)  # outside the try, as in the reference: its errors propagate
            try:
                items = found.values()
            except AttributeError:
                return None
            return [r for r in map(each, items) if r is not None]

        return project_values

    def _filter_projection(self, node: dict[str, Any]) -> Fn:
        base, each, condition = (self.compile(child) for child in node["children"])

        def project_matching(value: Any) -> Any:
            items = base(value)
            if not isinstance(items, list):
                return None
            collected = []
            for element in items:
                if not _is_false(condition(element)):
                    current = each(element)
                    if current is not None:
                        collected.append(current)
            return collected

        return project_matching

    def _flatten(self, node: dict[str, Any]) -> Fn:
        base = self.compile(node["children"][0])

        def flatten(value: Any) -> Any:
            items = base(value)
            if not isinstance(items, list):
                return None
            merged: list[Any] = []
            for element in items:
                if isinstance(element, list):
                    merged.extend(element)
                else:
                    merged.append(element)
            return merged

        return flatten

    def _multi_select_dict(self, node: dict[str, Any]) -> Fn:
        pairs = [(child["value"], self.compile(child)) for child in node["children"]]
        dict_cls = self.dict_cls
        plain = [(child["value"], child["children"][0]) for child in node["children"]]
        if dict_cls is dict and all(field["type"] == "field" for _, field in plain):
            names = [(key, field["value"]) for key, field in plain]

            def select_fields(value: Any) -> Any:
                if type(value) is dict:  # `{sku: SKU, qty: quantity}` on an object
                    get = value.get
                    selected = {}
                    for key, name in names:
                        selected[key] = get(name)
                    return selected
                if value is None:
                    return None
                return {key: fn(value) for key, fn in pairs}

            return select_fields

        def select_dict(value: Any) -> Any:
            if value is None:
                return None
            collected = dict_cls()
            for key, fn in pairs:
                collected[key] = fn(value)
            return collected

        return select_dict

    def _multi_select_list(self, node: dict[str, Any]) -> Fn:
        items = [self.compile(child) for child in node["children"]]

        def select_list(value: Any) -> Any:
            if value is None:
                return None
            return [fn(value) for fn in items]

        return select_list

    # -- functions -----------------------------------------------------------------------

    def _function_expression(self, node: dict[str, Any]) -> Fn:
        name = node["value"]
        args = [self.compile(child) for child in node["children"]]
        call = self.functions.call_function
        direct = _direct_call(self.functions, name, len(args))
        if direct is None:

            def call_function(value: Any) -> Any:
                return call(name, [arg(value) for arg in args])

            return call_function
        function, checks = direct
        if len(args) == 1 and len(checks) <= 1:
            (arg,) = args
            allowed = checks[0][1] if checks else None

            def call_unary(value: Any) -> Any:
                resolved = arg(value)
                if allowed is not None and type(resolved) not in allowed:
                    return call(name, [resolved])  # raises the library's own error
                return function(resolved)

            return call_unary

        def call_checked(value: Any) -> Any:
            resolved = [arg(value) for arg in args]
            for index, allowed in checks:
                if type(resolved[index]) not in allowed:
                    return call(name, resolved)  # raises the library's own error
            return function(*resolved)

        return call_checked

    def _expref(self, node: dict[str, Any]) -> Fn:
        expression = node["children"][0]
        reference = _Expression(expression, self.compile(expression))
        return lambda _value: reference


_BUILTIN_TYPES: dict[str, type] = {
    "bool": bool, "list": list, "dict": dict, "NoneType": type(None), "str": str, "float": float, "int": int,
}  # fmt: skip
_CHECKING_METHODS = ("call_function", "_validate_arguments", "_type_check", "_type_check_single")


def _direct_call(
    functions: jp_functions.Functions, name: str, arity: int
) -> tuple[Callable[..., Any], list[tuple[int, frozenset[type]]]] | None:
    """The function bound to its table and the per-argument type checks it needs, decided
    once; ``None`` when the library's own ``call_function`` must run (unknown name, wrong
    arity, typed array elements, or a table that changes how calls are checked).

    The library checks a value's type name against the allowed names; here the value's type
    must be one of the builtin types of those names, which implies the library's check. Any
    other value is handed to ``call_function``, which decides (and raises its own error).
    """
    kind, base = type(functions), jp_functions.Functions
    if any(getattr(kind, method) is not getattr(base, method) for method in _CHECKING_METHODS):
        return None
    spec = functions.FUNCTION_TABLE.get(name)
    if spec is None:
        return None
    signature = spec["signature"]
    variadic = bool(signature) and signature[-1].get("variadic")
    if (arity < len(signature)) if variadic else (arity != len(signature)):
        return None
    checks = []
    for index, argument in enumerate(signature):
        if argument["types"]:
            allowed, subtypes = functions._get_allowed_pytypes(argument["types"])  # type: ignore[attr-defined]
            if subtypes:
                return None
            checks.append((index, frozenset(_BUILTIN_TYPES[n] for n in allowed if n in _BUILTIN_TYPES)))
    return functools.partial(spec["function"], functions), checks


def _identity(value: Any) -> Any:
    return value


def _sequence(steps: list[Fn]) -> Fn:
    if len(steps) == 1:
        return steps[0]

    def run(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value

    return run


Step = tuple[Any, bool]  # (name, False) for a field, (number, True) for an index


def _path_steps(node: dict[str, Any]) -> list[Step] | None:
    """``a.b[0].c`` as plain steps, or None when the path holds anything else."""
    kind = node["type"]
    if kind == "field":
        return [(node["value"], False)]
    if kind == "index":
        return [(node["value"], True)]
    if kind in ("subexpression", "index_expression"):
        steps: list[Step] = []
        for child in node["children"]:
            inner = _path_steps(child)
            if inner is None:
                return None
            steps.extend(inner)
        return steps
    return None


def _path_chain(steps: list[Step]) -> Fn:
    """A field/index path walked in one loop instead of one closure call per step.

    Same rules as ``_field`` and ``_index``: a field of an object is looked up, of anything
    else it is null (or the value's own ``get``); an index applies to arrays only, and past the
    end it is null. Null ends the path, since every further step of null is null."""
    path = tuple(steps)
    if not any(is_index for _key, is_index in path):
        return _field_chain(tuple(key for key, _is_index in path))

    def chain(value: Any) -> Any:
        for key, is_index in path:
            if is_index:
                if not isinstance(value, list):
                    return None
                try:
                    value = value[key]
                except IndexError:
                    return None
            elif type(value) is dict:
                value = value.get(key)
            elif value is None:
                return None
            else:
                try:
                    value = value.get(key)
                except AttributeError:
                    return None
        return value

    return chain


def _field_chain(names: tuple[str, ...]) -> Fn:
    """``_path_chain`` for the most common path, fields only (``xdm.commerce.order.priceTotal``)."""

    def fields(value: Any) -> Any:
        for name in names:
            if type(value) is dict:
                value = value.get(name)
            elif value is None:
                return None
            else:
                try:
                    value = value.get(name)
                except AttributeError:
                    return None
        return value

    return fields


class CompiledExpression:
    """A compiled expression with the ``jmespath.parser.ParsedResult`` interface."""

    __slots__ = ("_fn", "_functions", "expression", "parsed")

    def __init__(self, expression: str, parsed: dict[str, Any], functions: jp_functions.Functions) -> None:
        self.expression = expression
        self.parsed = parsed
        self._functions = functions
        self._fn = Compiler(functions).compile(parsed)

    @property
    def function(self) -> Fn:
        """The compiled function (closures) for the expression's function table."""
        return self._fn

    @property
    def functions(self) -> jp_functions.Functions:
        """The function table ``function`` calls."""
        return self._functions

    def search(self, value: Any, options: Options | None = None) -> Any:
        """Evaluate against ``value``; ``options`` may bring other functions or a dict class."""
        if options is None or (
            (options.custom_functions is None or options.custom_functions is self._functions)
            and options.dict_cls is None
        ):
            return self._fn(value)
        functions = options.custom_functions or self._functions
        return Compiler(functions, options.dict_cls or dict).compile(self.parsed)(value)


@functools.cache
def default_functions() -> jp_functions.Functions:
    """The relay's function table (JMESPath's built-ins plus the mapping functions)."""
    return RelayFunctions()


def compile(expression: str) -> CompiledExpression:
    """Parse and compile an expression (``jmespath.compile`` equivalent)."""
    parsed: dict[str, Any] = dict(Parser().parse(expression).parsed)
    return CompiledExpression(expression, parsed, default_functions())


def search(expression: str, data: Any, options: Options | None = None) -> Any:
    """Compile and evaluate in one call (``jmespath.search`` equivalent)."""
    return compile(expression).search(data, options)
