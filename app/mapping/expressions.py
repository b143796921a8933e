"""JMESPath expressions compiled once, evaluated with the relay's custom functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jmespath.exceptions import JMESPathError

from app.mapping.compiled import CompiledExpression
from app.mapping.compiled import compile as compile_jmespath
from app.mapping.functions import RelayFunctions

FUNCTION_TABLE: dict[str, Any] = RelayFunctions.FUNCTION_TABLE


class ExpressionError(ValueError):
    """An expression that does not compile, or fails on an event (a type error, say)."""


class Expression:
    """A compiled JMESPath expression; ``search`` applies it to a normalised event."""

    __slots__ = ("_compiled", "source")

    def __init__(self, source: str) -> None:
        self.source = source.strip()
        try:
            self._compiled: CompiledExpression = compile_jmespath(self.source)
        except JMESPathError as exc:
            raise ExpressionError(f"invalid JMESPath `{self.source}`: {_reason(exc)}") from None
        except ValueError:  # jmespath's lexer reads `[99...9]` with int(), which refuses 4300+ digits
            raise ExpressionError(f"invalid JMESPath `{self.source}`: a number is too long") from None
        problem = check_functions(self._compiled.parsed)
        if problem:
            raise ExpressionError(f"invalid JMESPath `{self.source}`: {problem}")

    @property
    def function(self) -> Callable[[Any], Any]:
        """The compiled closure itself (raises ``jmespath`` errors, not ``ExpressionError``)."""
        return self._compiled.function

    @property
    def functions(self) -> Any:
        """The function table ``function`` calls (``jmespath.functions.Functions``)."""
        return self._compiled.functions

    @property
    def parsed(self) -> dict[str, Any]:
        """The expression's syntax tree (``jmespath.parser`` form)."""
        return self._compiled.parsed

    def search(self, data: Any) -> Any:
        """Evaluate against ``data``; ``ExpressionError`` when the expression fails on it."""
        try:
            return self._compiled.search(data)
        except JMESPathError as exc:
            raise ExpressionError(f"`{self.source}` failed: {_reason(exc)}") from None
        except TypeError as exc:  # e.g. `'a' < `1`` compares a string with a number
            raise ExpressionError(f"`{self.source}` failed: {exc}") from None

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def check_functions(node: dict[str, Any]) -> str | None:
    """Unknown functions and wrong argument counts, found at compile time, not per event."""
    if node.get("type") == "function_expression":
        name = node["value"]
        spec = FUNCTION_TABLE.get(name)
        if spec is None:
            return f"unknown function {name}()"
        signature, count = spec["signature"], len(node["children"])
        if signature and signature[-1].get("variadic"):
            if count < len(signature):
                return f"{name}() takes at least {len(signature)} argument(s), got {count}"
        elif count != len(signature):
            return f"{name}() takes {len(signature)} argument(s), got {count}"
    for child in node.get("children", ()):
        if isinstance(child, dict) and (problem := check_functions(child)):
            return problem
    return None


def is_truthy(value: Any) -> bool:
    """JMESPath truthiness: false, null, empty string, array and object are false."""
    return not (value is None or value is False or value in ("", [], {}))


def _reason(exc: JMESPathError) -> str:
    return " ".join(str(exc).split())
