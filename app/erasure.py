"""Erasing a person: their Zendesk profiles (with their events) and everything the relay holds
that names them.

The relay's own copies go first, so that nothing more about the person is sent while the
profiles are deleted. Profiles are looked up by identifier query
(``source:type:identifier_type:value``, reference 1.2) under each profile source and type the
Zendesk mappings write, and deleted (``DELETE /api/v2/user_profiles/{id}``: 204, and a 404
counts as already gone). A second erasure finds nothing and reports nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.delivery.readback import Pace, paced_read
from app.delivery.store import Identifier
from app.destinations.base import ReadsBack
from app.destinations.zendesk_read import PROFILES_PATH, with_query
from app.mapping.loader import Mapping, MappingSet
from app.problems import Problem
from app.relay import Relay
from app.urls import path_segment

SLOT_WAIT = 30.0  # the longest an erasure waits for one rate-limit slot


@dataclass
class ProfileReport:
    """What became of the Zendesk profiles of the identifiers."""

    deleted: list[dict[str, str]] = field(default_factory=list)
    lookups: int = 0
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"profiles_deleted": self.deleted, "lookups": self.lookups}
        if self.skipped:
            doc["skipped"] = self.skipped
        return doc


async def erase(relay: Relay, identifiers: Sequence[Identifier]) -> dict[str, Any]:
    """Erase the identifiers everywhere; the report of what was deleted where.

    Raises ``Problem`` (with the report so far as ``report``) when Zendesk could not be asked.
    """
    held = await relay.store.erase(identifiers)
    report: dict[str, Any] = {"identifiers": len(identifiers), "relay": held.to_dict()}
    zendesk = relay.destinations.get("zendesk")
    profiles = ProfileReport()
    try:
        if zendesk is None or zendesk.dry_run or not isinstance(zendesk, ReadsBack):
            profiles.skipped = "Zendesk is in dry run (no credentials): nothing was sent there"
        else:
            scopes = profile_scopes(relay.mappings)
            pace = Pace(relay.dispatcher.limiters["zendesk"], SLOT_WAIT, held=False)
            for identifier in identifiers:
                for source, kind in scopes:
                    await _delete_profile(
                        zendesk, pace, f"{source}:{kind}:{identifier.type}:{identifier.value}", profiles
                    )
    except Problem as problem:
        report["zendesk"] = profiles.to_dict()
        problem.extensions["report"] = report
        raise
    report["zendesk"] = profiles.to_dict()
    return report


async def _delete_profile(zendesk: ReadsBack, pace: Pace, query: str, report: ProfileReport) -> None:
    """Find the profile of one identifier query and delete it."""
    report.lookups += 1
    found = await _call(zendesk, pace, "GET", with_query(PROFILES_PATH, {"identifier": query}))
    profile = found.get("profile") if found else None
    if not isinstance(profile, dict) or not isinstance(profile.get("id"), str):
        return
    profile_id = profile["id"]
    gone = await _call(zendesk, pace, "DELETE", f"{PROFILES_PATH}/{path_segment(profile_id)}")
    entry = {"id": profile_id, "source": str(profile.get("source")), "type": str(profile.get("type"))}
    entry["result"] = "deleted" if gone is not None else "already_gone"
    report.deleted.append(entry)


async def _call(zendesk: ReadsBack, pace: Pace, method: str, path: str) -> dict[str, Any] | None:
    """One call within the rate limit: the body, or None for a 404."""
    try:
        answer = await paced_read(zendesk, pace, method, path)
    except Problem as problem:
        if problem.code == "rate_limited":  # nothing else feeds an erasure's 429 to the limiter
            pace.answered(problem)
        if problem.code == "destination_not_found":
            return None
        raise
    return answer.response


def profile_scopes(mappings: MappingSet) -> list[tuple[str, str]]:
    """The profile (source, type) pairs the Zendesk mappings write: what each renders for an
    empty event (constants) and for its examples (computed ones)."""
    scopes: dict[tuple[str, str], None] = {}
    for mapping in mappings.mappings:
        if mapping.destination != "zendesk":
            continue
        for event in [{}, *(example.input for example in mapping.examples)]:
            pair = _profile_of(mapping, event)
            if pair is not None:
                scopes[pair] = None
    return list(scopes)


def _profile_of(mapping: Mapping, event: Any) -> tuple[str, str] | None:
    try:
        body = mapping.render(event)
    except Exception:  # a template that needs the event's data: its examples tell
        return None
    profile = body.get("profile") if isinstance(body, dict) else None
    if not isinstance(profile, dict):
        return None
    source, kind = profile.get("source"), profile.get("type")
    if isinstance(source, str) and source and isinstance(kind, str) and kind:
        return source, kind
    return None
