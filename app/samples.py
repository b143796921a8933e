"""Sample Adobe payloads: the ``*.json`` files of the mappings folder's ``examples/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.payloads import parse_payload
from app.problems import Problem

SAMPLES_FOLDER = "examples"


@dataclass(frozen=True)
class Sample:
    """One sample payload file, with what the relay recognises in it."""

    name: str
    body: bytes
    shape: str
    event_types: tuple[str, ...]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "shape": self.shape, "event_types": list(self.event_types)}


def find_samples(mappings_dir: Path, max_bytes: int) -> list[Sample]:
    """Every sample of ``{mappings_dir}/examples``, by file name; files that are no Adobe
    payload (or larger than the relay accepts) are not samples and are left out."""
    samples = []
    for path in sorted((mappings_dir / SAMPLES_FOLDER).glob("*.json")):
        try:
            if path.stat().st_size > max_bytes:
                continue
            body = path.read_bytes()
            parsed = parse_payload(body)
        except (OSError, Problem):
            continue
        types = [e["xdm"].get("eventType") for e in parsed.events]
        event_types = tuple(dict.fromkeys(t for t in types if isinstance(t, str)))
        samples.append(Sample(path.name, body, parsed.shape, event_types))
    return samples
