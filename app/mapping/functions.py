"""Custom JMESPath functions available in mapping expressions.

Every function returns null when its main input is null, so that a mapping key
whose value depends on a missing field renders to null and is dropped.
Wrong argument types raise :class:`jmespath.exceptions.JMESPathTypeError`, the
same error the library raises for its built-in functions.

Usage::

    jmespath.search("hashed_email(data.email)", event, options=jmespath_options())
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import jmespath
import phonenumbers
from jmespath import exceptions
from jmespath.functions import TYPES_MAP, Functions, signature

__all__ = ["RelayFunctions", "format_timestamp", "jmespath_options", "parse_timestamp"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Epoch values whose magnitude is above this are milliseconds, below it seconds.
# 1e11 seconds is the year 5138; 1e11 milliseconds is March 1973.
_MS_THRESHOLD = Decimal("1e11")
# Beyond this many milliseconds (about the year 33,658) no epoch value is a datetime; checked
# first, since turning a number of thousands of digits into an int takes quadratic time.
_EPOCH_LIMIT = Decimal("1e15")
_NUMERIC = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
# "20240501" is a basic-format ISO date, not 231 days after the epoch.
_BASIC_DATE = re.compile(r"(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")
# UTC timestamps to the second or millisecond, as most XDM events carry them.
_USUAL_UTC = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{3}))?(?:Z|\+00:00)", re.ASCII)
# A leap second (RFC 3339 allows second 60), which datetime cannot hold: read as the last
# millisecond of its minute, so events keep their order (as java.time reads 23:59:60).
_LEAP_SECOND = re.compile(r"(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}):60(?:[.,]\d+)?", re.ASCII)
_SEPARATORS = re.compile(r"[\W_]+")
_WHITESPACE = re.compile(r"\s+")


# --------------------------------------------------------------------------- helpers


def format_timestamp(value: datetime) -> str:
    """Render an aware datetime as ISO-8601 UTC with a ``Z`` suffix.

    Milliseconds are kept when non-zero (sub-millisecond digits are truncated).
    """
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    text = utc.isoformat(timespec="milliseconds" if utc.microsecond >= 1000 else "seconds")
    return text[:-6] + "Z"  # "+00:00" -> "Z"


def _canonical_utc(text: str) -> str | None:
    """``iso8601`` of a UTC timestamp in the usual XDM forms (``2024-05-01T12:00:00.000Z``,
    ``...Z``, ``...+00:00``) without building datetimes; None for any other text."""
    found = _USUAL_UTC.fullmatch(text)
    if found is None:
        return None
    seconds, millis = found.groups()
    try:
        datetime.fromisoformat(seconds)  # a real date and time?
    except ValueError:
        return None
    return f"{seconds}Z" if millis is None or millis == "000" else f"{seconds}.{millis}Z"


def _from_epoch(number: Decimal) -> datetime:
    if not number.is_finite() or abs(number) >= _EPOCH_LIMIT:
        raise ValueError("not a finite number in the range of datetimes")
    per_unit = 1000 if abs(number) > _MS_THRESHOLD else 1_000_000  # microseconds per unit
    micros = int((number * per_unit).to_integral_value())
    return _EPOCH + timedelta(microseconds=micros)


def parse_timestamp(value: object) -> datetime | None:
    """Parse an ISO-8601 string, a date, or epoch seconds/milliseconds into an aware datetime.

    Returns None when the value cannot be understood.
    """
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            # str() of a float is its shortest round-trip repr: 1714564800.123 stays .123.
            return _from_epoch(Decimal(str(value)) if isinstance(value, float) else Decimal(value))
        if not isinstance(value, str):
            return None
        text = value.strip()
        if text[4:5] != "-" and _NUMERIC.fullmatch(text) and not _BASIC_DATE.fullmatch(text):
            return _from_epoch(Decimal(text))
        if text.endswith(("z", "Z")):
            text = text[:-1] + "+00:00"
        if ":60" in text and (leap := _LEAP_SECOND.match(text)):
            text = f"{leap.group(1)}:59.999{text[leap.end() :]}"
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        # Normalise now so an out-of-range conversion fails here, not in the caller.
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError, InvalidOperation, ArithmeticError):
        return None


def _snake_case(text: str) -> str:
    """Split on camelCase boundaries and separators, join with ``_``, lower-case."""
    pieces: list[str] = []
    length = len(text)
    for index, char in enumerate(text):
        if char.isupper() and index > 0:
            prev = text[index - 1]
            nxt = text[index + 1] if index + 1 < length else ""
            # fooBar, foo2Bar -> foo_bar ; HTTPServer -> http_server
            if prev.islower() or prev.isdigit() or (prev.isupper() and nxt.islower()):
                pieces.append("_")
        pieces.append(char)
    words = _SEPARATORS.split("".join(pieces))
    return "_".join(word.lower() for word in words if word)


def _underscore_keys(value: Any) -> Any:
    """Every object key with each run of whitespace replaced by ``_``, at any depth."""
    if isinstance(value, dict):
        return {
            _WHITESPACE.sub("_", key) if isinstance(key, str) else key: _underscore_keys(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_underscore_keys(item) for item in value]
    return value


def _drop_nulls(value: Any) -> Any:
    """Object members and array items that are null removed, at any depth."""
    if isinstance(value, dict):
        return {key: _drop_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_drop_nulls(item) for item in value if item is not None]
    return value


def _is_primary(entry: dict[Any, Any]) -> bool:
    flag = entry.get("primary")
    if flag is True:
        return True
    return isinstance(flag, str) and flag.strip().casefold() == "true"


def _namespace_entries(identity_map: object, namespace: str) -> Iterator[dict[Any, Any]]:
    """Each identity entry (an object with a non-null ``id``) of a namespace, any key casing,
    in map order; lazily, so ``primary_identity`` stops at the first primary one."""
    if not isinstance(identity_map, dict):
        return
    wanted = namespace.casefold()
    for key, entries in identity_map.items():
        if not isinstance(key, str) or not isinstance(entries, list) or key.casefold() != wanted:
            continue
        for entry in entries:
            if isinstance(entry, dict) and entry.get("id") is not None:
                yield entry


# --------------------------------------------------------------------------- functions

_STR_OR_NULL: list[str] = ["string", "null"]
_OBJECT_OR_NULL: list[str] = ["object", "null"]


class RelayFunctions(Functions):
    """JMESPath built-ins plus the functions marketers need in mapping files."""

    # The base class rebuilds the allowed Python types of an argument on every call.
    _allowed_pytypes: ClassVar[dict[tuple[str, ...], tuple[list[str], list[str]]]] = {}

    def _get_allowed_pytypes(self, types: list[str]) -> tuple[list[str], list[str]]:
        key = tuple(types)
        allowed = self._allowed_pytypes.get(key)
        if allowed is None:
            allowed = super()._get_allowed_pytypes(types)  # type: ignore[misc]  # not in the stubs
            self._allowed_pytypes[key] = allowed
        return allowed

    @signature({"types": _STR_OR_NULL})
    def _func_lower(self, value: str | None) -> str | None:
        return None if value is None else value.lower()

    @signature({"types": _STR_OR_NULL})
    def _func_upper(self, value: str | None) -> str | None:
        return None if value is None else value.upper()

    @signature({"types": _STR_OR_NULL})
    def _func_trim(self, value: str | None) -> str | None:
        return None if value is None else value.strip()

    @signature({"types": _STR_OR_NULL})
    def _func_sha256(self, value: str | None) -> str | None:
        if value is None:
            return None
        return hashlib.sha256(value.encode("utf-8")).hexdigest()

    @signature({"types": _STR_OR_NULL})
    def _func_hashed_email(self, value: str | None) -> str | None:
        if value is None:
            return None
        normalised = value.strip().lower()
        if not normalised:
            return None
        return hashlib.sha256(normalised.encode("utf-8")).hexdigest()

    # e164(phone, default_region?) -- JMESPath signatures have no optional
    # arguments, so the first one is declared variadic and the rest is checked here.
    @signature({"types": ["string", "number", "null"], "variadic": True})
    def _func_e164(self, phone: str | float | None, *rest: Any) -> str | None:
        if len(rest) > 1:
            raise exceptions.ArityError(2, 1 + len(rest), "e164")
        region = rest[0] if rest else None
        if region is not None and not isinstance(region, str):
            raise exceptions.JMESPathTypeError("e164", region, _jmespath_type(region), _STR_OR_NULL)
        if phone is None:
            return None
        if isinstance(phone, float):
            if not phone.is_integer():
                return None
            phone = int(phone)
        text = str(phone).strip()
        if text.startswith("00"):
            text = "+" + text[2:]
        try:
            parsed = phonenumbers.parse(text, region.strip().upper() if region else None)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_possible_number(parsed):
            return None
        result: str = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        return result

    @signature({"types": ["string", "number", "null"]})
    def _func_iso8601(self, value: str | float | None) -> str | None:
        if type(value) is str and (canonical := _canonical_utc(value)) is not None:
            return canonical
        parsed = parse_timestamp(value)
        return None if parsed is None else format_timestamp(parsed)

    @signature()
    def _func_now(self) -> str:
        return format_timestamp(datetime.now(UTC))

    @signature({"types": _STR_OR_NULL})
    def _func_snake_case(self, value: str | None) -> str | None:
        return None if value is None else _snake_case(value)

    @signature({"types": [], "variadic": True})
    def _func_coalesce(self, *values: Any) -> Any:
        for value in values:
            if value is not None:
                return value
        return None

    @signature({"types": []}, {"types": _STR_OR_NULL})
    def _func_primary_identity(self, identity_map: Any, namespace: str | None) -> Any:
        if namespace is None or not isinstance(identity_map, dict):
            return None
        # _namespace_entries written out: a generator per call cost a third of this function
        wanted, first = namespace.casefold(), None
        for key, entries in identity_map.items():
            if not isinstance(key, str) or not isinstance(entries, list) or key.casefold() != wanted:
                continue
            for entry in entries:
                if isinstance(entry, dict) and entry.get("id") is not None:
                    if _is_primary(entry):
                        return entry["id"]
                    if first is None:
                        first = entry["id"]
        return first

    @signature({"types": []}, {"types": _STR_OR_NULL})
    def _func_identities(self, identity_map: Any, namespace: str | None) -> list[Any]:
        if namespace is None:
            return []
        return [entry["id"] for entry in _namespace_entries(identity_map, namespace)]

    @signature({"types": _OBJECT_OR_NULL})
    def _func_underscore_keys(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _underscore_keys(value)

    @signature({"types": _OBJECT_OR_NULL})
    def _func_drop_nulls(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _drop_nulls(value)


def _jmespath_type(value: object) -> str:
    return TYPES_MAP.get(type(value).__name__, "unknown")


def jmespath_options() -> jmespath.Options:
    """Options that make the relay's custom functions available to an expression."""
    return jmespath.Options(custom_functions=RelayFunctions())
