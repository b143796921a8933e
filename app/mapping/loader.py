"""Mapping files (``mappings/*.yaml``) -> compiled ``Mapping`` objects, or errors with lines."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from app.mapping.expressions import Expression, ExpressionError, is_truthy
from app.mapping.templates import Keys, Render, TemplateError, compile_template


class _TextTimestampConstructor(RoundTripConstructor):
    """Unquoted YAML timestamps stay the text that was written (no time-zone rewriting)."""


_TextTimestampConstructor.add_constructor(
    "tag:yaml.org,2002:timestamp", RoundTripConstructor.construct_yaml_str
)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.Constructor = _TextTimestampConstructor
    return yaml


KNOWN_KEYS = {"name", "destination", "when", "event_id", "endpoint", "body", "examples"}
EXAMPLE_KEYS = {"input", "expect", "ignored"}


@dataclass(frozen=True)
class MappingIssue:
    """Why a file was refused, at which line (1-based)."""

    file: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


class MappingLoadError(Exception):
    """A set of mapping files that cannot be served; lists every issue found."""

    def __init__(self, issues: list[MappingIssue]) -> None:
        super().__init__("\n".join(str(issue) for issue in issues))
        self.issues = issues


@dataclass(frozen=True)
class Example:
    """An input payload and the exact body the mapping must render for it (or ``ignored``)."""

    input: Any  # a parsed payload
    expect: Any
    ignored: bool
    line: int


@dataclass(frozen=True)
class Mapping:
    """One compiled mapping file."""

    name: str
    destination: str
    source: Path
    render: Render
    name_line: int = 1
    when: Expression | None = None
    event_id: Expression | None = None
    endpoint: str | None = None
    endpoint_params: dict[str, Render] = field(default_factory=dict)
    examples: tuple[Example, ...] = ()
    # The only xdm.eventType `when` admits, when it says so (see required_event_type).
    event_type: str | None = None

    def applies_to(self, event: Any) -> bool:
        """Whether ``when`` is truthy for the event (no ``when`` applies to every event)."""
        return self.when is None or is_truthy(self.when.search(event))


@dataclass(frozen=True)
class MappingSet:
    """The mappings being served, in file-name order; each event is checked against each
    mapping's ``when``. (An index on ``xdm.eventType`` was measured and dropped: 1.04x on
    ignored events with the shipped mappings, see docs/performance.md.)"""

    mappings: tuple[Mapping, ...]

    def get(self, name: str) -> Mapping | None:
        return next((m for m in self.mappings if m.name == name), None)

    def __len__(self) -> int:
        return len(self.mappings)


def load_mappings(directory: Path, destinations: AbcMapping[str, tuple[str, ...]]) -> MappingSet:
    """Load every ``*.yaml``/``*.yml`` file of a folder; ``MappingLoadError`` lists all issues.

    ``destinations`` maps each known destination name to the endpoint names it accepts.
    """
    if not directory.is_dir():
        raise MappingLoadError([MappingIssue(directory, 0, "mappings folder not found")])
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    issues: list[MappingIssue] = []
    mappings: list[Mapping] = []
    names: dict[str, Path] = {}
    for path in files:
        try:
            mapping = load_mapping_file(path, destinations)
        except MappingLoadError as exc:
            issues.extend(exc.issues)
            continue
        if mapping.name in names:
            issues.append(
                MappingIssue(
                    path,
                    mapping.name_line,
                    f"duplicate mapping name {mapping.name!r} (also in {names[mapping.name]})",
                )
            )
            continue
        names[mapping.name] = path
        mappings.append(mapping)
    if issues:
        raise MappingLoadError(issues)
    return MappingSet(tuple(mappings))


def load_mapping_file(path: Path, destinations: AbcMapping[str, tuple[str, ...]]) -> Mapping:
    """Load and compile one mapping file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise _issue(path, 1, f"cannot read: {exc}") from None
    try:
        return compile_mapping(parse_mapping_text(text, path), path, destinations)
    except RecursionError:
        raise _issue(path, 1, "nested too deeply") from None


def parse_mapping_text(text: str, path: Path) -> Any:
    """The YAML text of a mapping file as ruamel's round-trip document (with line numbers)."""
    try:
        return _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise _issue(path, line, f"YAML syntax: {exc.problem or exc.context}") from None
    except YAMLError as exc:
        raise _issue(path, 1, f"cannot read: {exc}") from None


def compile_mapping(doc: Any, path: Path, destinations: AbcMapping[str, tuple[str, ...]]) -> Mapping:
    """Compile a parsed mapping document (from ruamel's round-trip loader)."""
    if not isinstance(doc, CommentedMap):
        raise _issue(path, 1, "a mapping file must be a YAML object with `destination` and `body`")
    unknown = sorted(str(key) for key in doc if key not in KNOWN_KEYS)
    if unknown:
        raise _issue(path, _key_line(doc, unknown[0]), f"unknown key `{unknown[0]}`")
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise _issue(path, _key_line(doc, "name"), "`name` must be a non-empty string")
    destination = doc.get("destination")
    if not isinstance(destination, str) or destination not in destinations:
        known = ", ".join(sorted(destinations))
        raise _issue(
            path,
            _key_line(doc, "destination"),
            f"unknown destination {destination!r} (known: {known})",
        )
    endpoint, endpoint_params = _compile_endpoint(doc, path, destinations[destination])
    if doc.get("body") is None:
        line = _key_line(doc, "body") if "body" in doc else 1
        raise _issue(path, line, "`body` is required (the request body to render)")
    try:
        render = compile_template(to_plain(doc["body"]))
    except TemplateError as exc:
        raise _issue(
            path,
            _path_line(doc["body"], exc.keys, _key_line(doc, "body")),
            f"body.{exc.path}: {exc.reason}" if exc.path else exc.reason,
        ) from None
    when = _compile_expression(doc, "when", path)
    return Mapping(
        name=name.strip(),
        destination=destination,
        source=path,
        render=render,
        name_line=_key_line(doc, "name") if "name" in doc else 1,
        when=when,
        event_type=required_event_type(when.parsed) if when is not None else None,
        event_id=_compile_expression(doc, "event_id", path),
        endpoint=endpoint,
        endpoint_params=endpoint_params,
        examples=_load_examples(doc, path),
    )


def required_event_type(node: dict[str, Any]) -> str | None:
    """``'x'`` when the expression can only be truthy if ``xdm.eventType == 'x'``."""
    if node.get("type") == "and_expression":
        left, right = node["children"]
        return required_event_type(left) or required_event_type(right)
    if node.get("type") != "comparator" or node.get("value") != "eq":
        return None
    for path, literal in (node["children"], node["children"][::-1]):
        is_event_type = path.get("type") == "subexpression" and [
            (child.get("type"), child.get("value")) for child in path["children"]
        ] == [("field", "xdm"), ("field", "eventType")]
        if is_event_type and literal.get("type") == "literal" and isinstance(literal.get("value"), str):
            return str(literal["value"])
    return None


def _compile_expression(doc: CommentedMap, key: str, path: Path) -> Expression | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _issue(path, _key_line(doc, key), f"`{key}` must be a JMESPath string")
    text = value.strip()
    if text.startswith("{{") and text.endswith("}}"):
        text = text[2:-2]  # tolerate the token syntax people use in body values
    try:
        return Expression(text)
    except ExpressionError as exc:
        raise _issue(path, _key_line(doc, key), f"`{key}`: {exc}") from None


def _compile_endpoint(
    doc: CommentedMap, path: Path, allowed: tuple[str, ...]
) -> tuple[str | None, dict[str, Render]]:
    value = doc.get("endpoint")
    line = _key_line(doc, "endpoint")
    if value is None:
        return None, {}
    params: dict[str, Render] = {}
    if isinstance(value, CommentedMap):
        name = value.get("name")
        for key, item in value.items():
            if key == "name":
                continue
            try:
                params[str(key)] = compile_template(to_plain(item), ("endpoint", str(key)))
            except TemplateError as exc:
                raise _issue(path, _key_line(value, key), str(exc)) from None
    else:
        name = value
    if name not in allowed:
        raise _issue(path, line, f"unknown endpoint {name!r} (this destination has: {', '.join(allowed)})")
    return str(name), params


def _load_examples(doc: CommentedMap, path: Path) -> tuple[Example, ...]:
    value = doc.get("examples")
    if value is None:
        return ()
    if not isinstance(value, CommentedSeq):
        raise _issue(path, _key_line(doc, "examples"), "`examples` must be a list")
    examples = []
    for index, item in enumerate(value):
        line = value.lc.item(index)[0] + 1
        if not isinstance(item, CommentedMap) or "input" not in item:
            raise _issue(path, line, "each example needs `input` and `expect` (or `ignored: true`)")
        unknown = sorted(str(key) for key in item if key not in EXAMPLE_KEYS)
        if unknown:
            raise _issue(path, _key_line(item, unknown[0]), f"unknown example key `{unknown[0]}`")
        ignored = bool(item.get("ignored", False))
        if not ignored and "expect" not in item:
            raise _issue(path, line, "example needs `expect` (or `ignored: true`)")
        examples.append(
            Example(
                input=_example_input(item["input"], path, _key_line(item, "input")),
                expect=to_plain(item.get("expect")),
                ignored=ignored,
                line=line,
            )
        )
    return tuple(examples)


def _example_input(value: Any, path: Path, line: int) -> Any:
    if not isinstance(value, str):
        return to_plain(value)
    from app.payloads import parse_json
    from app.problems import Problem

    input_path = (path.parent / value).resolve()
    try:
        return parse_json(input_path.read_bytes())
    except OSError:
        raise _issue(path, line, f"example input {value!r} not found") from None
    except Problem as exc:
        raise _issue(path, line, f"example input {value!r}: {exc}") from None


def to_plain(node: Any) -> Any:
    """ruamel's round-trip values -> plain JSON-like Python values."""
    if isinstance(node, AbcMapping):
        return {_key_text(key): to_plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [to_plain(value) for value in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, dt.date):
        return node.isoformat()
    return node


def _key_text(key: Any) -> str:
    """YAML keys as JSON keys: `true:` is "true", `null:` is "null"."""
    if isinstance(key, bool):
        return "true" if key else "false"
    return "null" if key is None else str(key)


def _issue(path: Path, line: int, reason: str) -> MappingLoadError:
    return MappingLoadError([MappingIssue(path, line, reason)])


def _key_line(node: Any, key: Any) -> int:
    try:
        return int(node.lc.key(key)[0]) + 1
    except (AttributeError, KeyError, TypeError):
        return int(getattr(getattr(node, "lc", None), "line", 0)) + 1


def _path_line(node: Any, keys: Keys, fallback: int) -> int:
    """The line of the field at ``keys`` inside a round-trip node."""
    line = fallback
    for key in keys:
        try:
            position = node.lc.item(key) if isinstance(key, int) else node.lc.key(key)
            line = int(position[0]) + 1
            node = node[key]
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            break
    return line
