"""Mapping drafts: a mapping's YAML text from a caller, compiled like a file, never saved."""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from app.mapping.loader import Mapping, MappingIssue, MappingLoadError, compile_mapping, parse_mapping_text

DRAFT_FILE = "draft.yaml"


def compile_draft(
    text: str, file_name: str | None, destinations: AbcMapping[str, tuple[str, ...]]
) -> Mapping:
    """Compile YAML text as ``load_mapping_file`` compiles a file; ``MappingLoadError`` with lines.

    ``file_name`` (a bare name; any folder part is dropped) names the draft in issues and is the
    default mapping name. The draft's ``examples`` are not run: their inputs name files on the
    relay's disk, which a caller must not get to read. Anchors and aliases are refused, since a
    few lines of them expand to gigabytes when the body is compiled.
    """
    path = Path(Path(file_name or DRAFT_FILE).name or DRAFT_FILE)
    try:
        doc = parse_mapping_text(text, path)
        if isinstance(doc, CommentedMap):
            _refuse_aliases(doc, path)
            doc.pop("examples", None)
        return compile_mapping(doc, path, destinations)
    except RecursionError:
        raise MappingLoadError([MappingIssue(path, 1, "nested too deeply")]) from None


def _refuse_aliases(doc: CommentedMap, path: Path) -> None:
    """Raise when a YAML node is reachable twice (an alias of an anchored node)."""
    seen: set[int] = set()
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            line = int(getattr(getattr(node, "lc", None), "line", 0)) + 1
            raise MappingLoadError([MappingIssue(path, line, "anchors and aliases (&, *) are not allowed")])
        seen.add(id(node))
        if isinstance(node, CommentedMap):
            stack.extend(v for v in node.values() if isinstance(v, CommentedMap | CommentedSeq))
        elif isinstance(node, CommentedSeq):
            stack.extend(v for v in node if isinstance(v, CommentedMap | CommentedSeq))
