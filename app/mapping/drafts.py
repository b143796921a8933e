"""Mapping drafts: a mapping's YAML text from a caller, compiled like a file, never saved."""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, NodeEvent, ScalarEvent
from ruamel.yaml.nodes import ScalarNode

from app.mapping.loader import Mapping, MappingIssue, MappingLoadError, compile_mapping, parse_mapping_text

DRAFT_FILE = "draft.yaml"
YAML_TAGS = "tag:yaml.org,2002:"  # written `!!`
INT_TAG = f"{YAML_TAGS}int"
# Objects and lists in objects and lists: real mappings use under ten levels, and the YAML
# parser's time grows with the square of the depth (3000 levels took 8 s).
MAX_DEPTH = 64
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what a JSON encoder writes as an integer


def compile_draft(
    text: str, file_name: str | None, destinations: AbcMapping[str, tuple[str, ...]]
) -> Mapping:
    """Compile YAML text as ``load_mapping_file`` compiles a file; ``MappingLoadError`` with lines.

    ``file_name`` (a bare name; any folder part is dropped) names the draft in issues and is the
    default mapping name. The draft's ``examples`` are not run: their inputs name files on the
    relay's disk, which a caller must not get to read. A draft is plain YAML (``check_plain``).
    """
    path = Path(Path(file_name or DRAFT_FILE).name or DRAFT_FILE)
    try:
        check_plain(text, path)
        doc = parse_mapping_text(text, path)
        if isinstance(doc, CommentedMap):
            doc.pop("examples", None)
        return compile_mapping(doc, path, destinations)
    except RecursionError:
        raise MappingLoadError([MappingIssue(path, 1, "nested too deeply")]) from None


def check_plain(text: str, path: Path) -> None:
    """Refuse what plain YAML values do not need, at its line, before anything is built.

    Anchors and aliases (``&a``, ``*a``), since a few lines of them expand to gigabytes once
    the body is rendered, whether they name objects or strings; tags (``!!binary``, ``!!set``,
    ``!custom``), whose values are not JSON; integers beyond 64 bits, which no JSON body can
    carry; nesting deeper than ``MAX_DEPTH``, checked as the text is parsed, before the
    parser slows down. YAML syntax errors are left to ``parse_mapping_text``, which says the same.
    """
    yaml = YAML(typ="rt")
    depth = 0
    try:
        for event in yaml.parse(text):
            depth += isinstance(event, CollectionStartEvent) - isinstance(event, CollectionEndEvent)
            if depth > MAX_DEPTH:
                raise _issue(path, event.start_mark.line + 1, f"nested too deeply (over {MAX_DEPTH} levels)")
            if not isinstance(event, NodeEvent):
                continue
            line = event.start_mark.line + 1
            if isinstance(event, AliasEvent) or event.anchor is not None:
                raise _issue(path, line, "anchors and aliases (&, *) are not allowed")
            if isinstance(event, ScalarEvent | CollectionStartEvent) and event.tag is not None:
                tag = str(event.tag).replace(YAML_TAGS, "!!", 1)
                reason = f"YAML tags such as `{tag}` are not allowed: write plain values"
                raise _issue(path, line, reason)
            if isinstance(event, ScalarEvent) and event.style is None and not _fits_json(yaml, event):
                raise _issue(path, line, "integers beyond 64 bits are not allowed: quote the number")
    except YAMLError:
        return


def _fits_json(yaml: YAML, event: ScalarEvent) -> bool:
    """Whether a plain scalar is anything but an integer out of ``INT_MIN``..``INT_MAX``."""
    node = ScalarNode(INT_TAG, event.value, event.start_mark, event.end_mark)
    if yaml.resolver.resolve(ScalarNode, event.value, (True, False)) != INT_TAG:
        return True
    try:
        value: int = yaml.constructor.construct_yaml_int(node)
        return INT_MIN <= value <= INT_MAX
    except ValueError:  # more digits than Python converts
        return False


def _issue(path: Path, line: int, reason: str) -> MappingLoadError:
    return MappingLoadError([MappingIssue(path, line, reason)])
