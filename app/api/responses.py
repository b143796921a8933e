"""Response helpers: JSON via orjson, and problem documents."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from app.problems import PROBLEM_CONTENT_TYPE, Problem


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson."""
    return Response(orjson.dumps(content), status, headers, media_type="application/json")


def problem_response(problem: Problem, **extra: Any) -> Response:
    """An ``application/problem+json`` response for a problem (plus extension members)."""
    doc = problem.to_dict()
    doc.update(extra)
    return Response(orjson.dumps(doc), problem.status, problem.headers(), media_type=PROBLEM_CONTENT_TYPE)
