"""Every Adobe sample payload gets a 2xx or a 4xx problem, and its outcome is pinned.

The outcome per file and mapping lives in ``tests/snapshots/adobe_fixtures.json``; a change in
behaviour shows up there in review. Regenerate with ``UPDATE_SNAPSHOTS=1 make test``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADOBE_SAMPLES, FIXTURES, MAPPINGS, auth, make_settings

SNAPSHOT = Path(__file__).resolve().parent.parent / "snapshots" / "adobe_fixtures.json"
FILES = sorted(FIXTURES.glob("*.json")) + sorted(ADOBE_SAMPLES.glob("*.json"))


def outcome(client: TestClient, path: Path) -> dict[str, Any]:
    response = client.post(
        "/v1/events", content=path.read_bytes(), headers={**auth(), "Content-Type": "text/plain"}
    )
    assert response.status_code < 500, response.text
    doc = response.json()
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert {"type", "title", "status", "code"} <= set(doc)
    results = [
        {k: r[k] for k in ("event_index", "mapping", "status") if k in r}
        | ({"code": r["problem"]["code"]} if "problem" in r else {})
        for r in doc.get("results", [])
    ]
    return {"http_status": response.status_code, "code": doc.get("code"), "results": results}


def forced_previews(client: TestClient, path: Path) -> dict[str, list[Any]]:
    """What each shipped mapping renders for the file when forced (its `when` skipped)."""
    previews: dict[str, list[Any]] = {}
    for name in client.get("/readyz").json()["mappings"]:
        response = client.post(f"/v1/preview?mapping={name}", content=path.read_bytes(), headers=auth())
        assert response.status_code < 500, response.text
        doc = response.json()
        previews[name] = (
            [doc["code"]]
            if response.status_code >= 400
            else [
                [
                    r["status"],
                    *([r["problem"]["code"]] if "problem" in r else []),
                    *(v["path"] for v in r.get("problem", {}).get("violations", [])),
                ]
                for r in doc["results"]
            ]
        )
    return previews


@pytest.fixture(scope="module")
def snapshot() -> dict[str, Any]:
    return json.loads(SNAPSHOT.read_text()) if SNAPSHOT.exists() else {}


def test_every_snapshot_has_its_payload_file(snapshot: dict[str, Any]) -> None:
    assert sorted(snapshot) == sorted(path.name for path in FILES)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_fixture_outcome_matches_snapshot(
    relay_client: Callable[..., TestClient], snapshot: dict[str, Any], path: Path
) -> None:
    client = relay_client(make_settings(relay_mappings_dir=MAPPINGS))  # every shipped mapping
    actual = outcome(client, path) | {"forced": forced_previews(client, path)}
    if os.environ.get("UPDATE_SNAPSHOTS"):
        current = json.loads(SNAPSHOT.read_text()) if SNAPSHOT.exists() else {}
        current[path.name] = actual
        SNAPSHOT.write_text(json.dumps(dict(sorted(current.items())), indent=2, ensure_ascii=False) + "\n")
        return
    assert path.name in snapshot, f"no snapshot for {path.name}: run with UPDATE_SNAPSHOTS=1"
    assert actual == snapshot[path.name]
