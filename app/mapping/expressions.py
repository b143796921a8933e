"""JMESPath expressions compiled once, evaluated with the relay's custom functions."""

from __future__ import annotations

from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

from app.mapping.functions import jmespath_options


class ExpressionError(ValueError):
    """An expression that does not compile, or fails on an event (a type error, say)."""


class Expression:
    """A compiled JMESPath expression; ``search`` applies it to a normalised event."""

    __slots__ = ("_compiled", "_options", "source")

    def __init__(self, source: str) -> None:
        self.source = source.strip()
        try:
            self._compiled: ParsedResult = jmespath.compile(self.source)
        except JMESPathError as exc:
            raise ExpressionError(f"invalid JMESPath `{self.source}`: {_reason(exc)}") from None
        self._options = jmespath_options()

    def search(self, data: Any) -> Any:
        """Evaluate against ``data``; ``ExpressionError`` when the expression fails on it."""
        try:
            return self._compiled.search(data, options=self._options)
        except JMESPathError as exc:
            raise ExpressionError(f"`{self.source}` failed: {_reason(exc)}") from None

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def is_truthy(value: Any) -> bool:
    """JMESPath truthiness: false, null, empty string, array and object are false."""
    return not (value is None or value is False or value in ("", [], {}))


def _reason(exc: JMESPathError) -> str:
    return " ".join(str(exc).split())
