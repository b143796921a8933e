"""Baseline for ``bench/ingest.py``: the relay a user would write instead of running aep-relay.

One FastAPI route, ``POST /v1/events``, written the plain way:

* checks ``Authorization: Bearer <token>`` (401 otherwise);
* parses the body with ``await request.json()`` (Starlette's, the standard ``json`` module):
  Adobe sends ``text/plain``, so FastAPI's typed body parameter would refuse it, and reading
  the request is what its docs show; orjson is an optimisation a user adds later, if ever;
* evaluates the order mapping (``mappings/zendesk-order-completed.yaml``) with the reference
  ``jmespath`` package: its ``when`` (no match: 200 ``ignored``), its ``event_id`` and each
  ``{{ expr }}`` of its body through ``jmespath.search``, with the four functions that mapping
  calls written plainly through jmespath's custom-functions API; null values are dropped;
* stores the rendered body in SQLite with the standard ``sqlite3`` module (``journal_mode=WAL``,
  ``synchronous=FULL``): a connection, an INSERT and a commit per request, the event id a
  unique key (already stored: 200 ``duplicate``), then answers 202 ``queued`` with the row id.

The route is ``async def`` because the body must be awaited; the blocking SQLite write goes to
Starlette's threadpool with ``run_in_threadpool``, the pool FastAPI runs a plain ``def`` route in,
so concurrent requests write from concurrent threads as they would there. Nothing is sent
anywhere and nothing is validated: this is only the ingest side of the relay. Served by uvicorn
with the same ``uvicorn.run`` arguments as ``bench/bare_app.py``.

    python bench/handwritten_app.py --port 8082 --db /tmp/handwritten.db --token secret
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jmespath
import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from jmespath import functions
from ruamel.yaml import YAML

ORDER_MAPPING = Path(__file__).resolve().parents[1] / "mappings" / "zendesk-order-completed.yaml"
TOKEN_PATTERN = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


class MappingFunctions(functions.Functions):
    """The relay's functions that the order mapping calls, and no more."""

    @functions.signature({"types": []}, {"types": []})
    def _func_coalesce(self, first: Any, second: Any) -> Any:
        return first if first is not None else second

    @functions.signature({"types": ["string", "null"]})
    def _func_lower(self, value: str | None) -> str | None:
        return None if value is None else value.lower()

    @functions.signature({"types": []}, {"types": ["string"]})
    def _func_primary_identity(self, identity_map: Any, namespace: str) -> Any:
        """The primary id of the namespace (case-insensitive), else its first id."""
        for key, entries in (identity_map or {}).items():
            if key.lower() == namespace.lower() and entries:
                return next((e["id"] for e in entries if e.get("primary")), entries[0]["id"])
        return None

    @functions.signature({"types": ["string", "null"]})
    def _func_iso8601(self, value: str | None) -> str | None:
        if value is None:
            return None
        moment = datetime.fromisoformat(value).astimezone(UTC)
        return moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")[:-6] + "Z"


OPTIONS = jmespath.Options(custom_functions=MappingFunctions())


def search(expression: str, event: Any) -> Any:
    return jmespath.search(expression, event, options=OPTIONS)


def render(template: Any, event: Any) -> Any:
    """The body with each ``{{ expr }}`` evaluated: a whole-string token keeps its value's type."""
    if isinstance(template, dict):
        rendered = {key: render(value, event) for key, value in template.items()}
        return {key: value for key, value in rendered.items() if value is not None}
    if isinstance(template, list):
        return [render(item, event) for item in template]
    if not isinstance(template, str) or "{{" not in template:
        return template
    text = template.strip()
    if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
        return search(text[2:-2], event)
    return TOKEN_PATTERN.sub(lambda token: str(search(token.group(1), event)), template)


def create_app(db: Path, token: str, mapping_file: Path = ORDER_MAPPING) -> FastAPI:
    mapping = YAML(typ="safe").load(mapping_file.read_text(encoding="utf-8"))
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")  # persistent: stored in the database file
        conn.execute(
            "CREATE TABLE IF NOT EXISTS deliveries (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL "
            "UNIQUE, body TEXT NOT NULL, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
    app = FastAPI(title="hand-written relay baseline")

    def save(event_id: str, body: Any) -> int | None:
        """Insert and commit one delivery; None when the event id is already stored."""
        # 30 s, not the 5 s default: concurrent writers wait on SQLite's lock, and a user who
        # saw `database is locked` under load raises it
        with closing(sqlite3.connect(db, timeout=30)) as conn:
            conn.execute("PRAGMA synchronous=FULL")  # per connection: fsync on every commit
            try:
                with conn:  # commits, or rolls back on an error
                    cursor = conn.execute(
                        "INSERT INTO deliveries (event_id, body) VALUES (?, ?)", (event_id, json.dumps(body))
                    )
            except sqlite3.IntegrityError:
                return None
            return cursor.lastrowid

    @app.post("/v1/events")
    async def ingest(request: Request) -> JSONResponse:
        if not secrets.compare_digest(request.headers.get("authorization", ""), f"Bearer {token}"):
            return JSONResponse({"detail": "unauthorized"}, status_code=401)
        event = await request.json()
        if not search(mapping["when"], event):
            return JSONResponse({"status": "ignored"}, status_code=200)
        event_id, body = search(mapping["event_id"], event), render(mapping["body"], event)
        delivery_id = await run_in_threadpool(save, event_id, body)
        if delivery_id is None:
            return JSONResponse({"status": "duplicate"}, status_code=200)
        return JSONResponse({"status": "queued", "delivery_id": delivery_id}, status_code=202)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--db", type=Path, required=True, help="SQLite file (created if missing)")
    parser.add_argument("--token", required=True, help="the bearer token clients must send")
    parser.add_argument("--mapping", type=Path, default=ORDER_MAPPING, help="the mapping YAML")
    args = parser.parse_args()
    # the same uvicorn.run arguments as bench/bare_app.py
    uvicorn.run(
        create_app(args.db, args.token, args.mapping),
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        server_header=False,
    )


if __name__ == "__main__":
    main()
