"""Which stored bodies hold a person's identifiers: what ``Store.erase`` deletes.

A body holds an identifier when one of its JSON strings (a value or an object's key, at any
depth) is the identifier's value: exactly, or ignoring case for the types whose values Zendesk
lower-cases (``email``, ``twitter``, and ``google``, matched as an email). A value inside a
longer string does not count: "ann@example.com" is not held by "joann@example.com".

Stores scan with a cheap test on the stored JSON bytes first (``terms``: each a substring every
holding body contains), then confirm by parsing (``holds``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from app.delivery.store import Identifier

CASE_INSENSITIVE = frozenset({"email", "twitter", "google"})
# Characters whose lower case contains an ASCII letter while they are not ASCII themselves
# (U+0130 and the Kelvin sign): lower-casing the stored bytes ASCII-only (SQLite's lower(),
# bytes.lower) leaves them, so a case-insensitive term must not rely on those letters.
FOLDED_INTO_ASCII = frozenset("ik")


class Matcher:
    """The identifiers to find, and how to find them in stored bodies."""

    def __init__(self, identifiers: Sequence[Identifier]) -> None:
        for identifier in identifiers:
            if not identifier.value:
                raise ValueError(f"identifier {identifier.type!r} has an empty value")
        self._exact = frozenset(i.value for i in identifiers if i.type not in CASE_INSENSITIVE)
        self._folded = frozenset(i.value.lower() for i in identifiers if i.type in CASE_INSENSITIVE)
        # the stored bytes hold the value JSON-encoded, quotes included (orjson, as stored)
        self.exact_terms = tuple(sorted(orjson.dumps(value) for value in self._exact))
        self.folded_terms = tuple(sorted({_folded_term(value) for value in self._folded}))

    def __bool__(self) -> bool:
        return bool(self._exact or self._folded)

    def may_hold(self, body: bytes) -> bool:
        """The cheap test: whether the stored JSON bytes contain one of the terms."""
        if any(term in body for term in self.exact_terms):
            return True
        if self.folded_terms:
            lowered = body.lower()
            return any(term in lowered for term in self.folded_terms)
        return False

    def holds(self, body: bytes) -> bool:
        """Whether the stored JSON body holds one of the identifiers as a whole string."""
        stack: list[Any] = [orjson.loads(body)]
        while stack:  # not recursive: a body may nest deeper than Python's recursion limit
            item = stack.pop()
            if isinstance(item, str):
                if item in self._exact or (self._folded and item.lower() in self._folded):
                    return True
            elif isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        return False


def _folded_term(value: str) -> bytes:
    """The longest piece of the (lower-cased) value JSON-encoded that every body holding it
    contains once lower-cased ASCII-only: its run of ASCII characters that no other character
    lower-cases into (b"" when there is none: every body is then confirmed by parsing)."""
    encoded = orjson.dumps(value).decode()
    runs, run = [], []
    for char in encoded:
        if char.isascii() and char not in FOLDED_INTO_ASCII:
            run.append(char)
        else:
            runs.append("".join(run))
            run = []
    runs.append("".join(run))
    return max(runs, key=len).lower().encode()
