"""The error taxonomy and its RFC 9457 rendering: one shape for every error the relay returns.

The codes, grouped by where the problem arises::

    request      invalid_json, unsupported_payload, invalid_request, unauthorized,
                 forbidden, not_found, method_not_allowed, payload_too_large,
                 too_many_events, json_too_deep, string_too_long, invalid_signature,
                 request_timeout, too_many_identities
    mapping      mapping_not_found, mapping_error, validation_failed, mapping_invalid,
                 draft_too_costly
    delivery     duplicate, overloaded, store_unavailable
    destination  destination_rejected, destination_auth_failed, destination_not_found,
                 destination_conflict, rate_limited, destination_unavailable, timeout
    relay        internal_error

Each code has a fixed caller status, title and retryability (``CODES``); a ``Problem`` is an
exception carrying one code plus the details of one occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True)
class ProblemKind:
    """What is fixed for one code: the status the caller gets, a title, and retryability."""

    status: int
    title: str
    retryable: bool = False


CODES: dict[str, ProblemKind] = {
    "invalid_json": ProblemKind(400, "Request body is not valid JSON"),
    "unsupported_payload": ProblemKind(400, "Payload is not an Adobe event shape"),
    "invalid_request": ProblemKind(400, "Request is malformed"),
    "unauthorized": ProblemKind(401, "Missing or invalid bearer token"),
    "forbidden": ProblemKind(403, "Token does not allow this operation"),
    "not_found": ProblemKind(404, "No such resource"),
    "mapping_not_found": ProblemKind(404, "No mapping with that name"),
    "method_not_allowed": ProblemKind(405, "Method not allowed"),
    "payload_too_large": ProblemKind(413, "Request body is too large"),
    "mapping_error": ProblemKind(422, "Mapping could not be applied to the event"),
    "validation_failed": ProblemKind(422, "Rendered body breaks the destination's rules"),
    "mapping_invalid": ProblemKind(422, "Mapping text does not compile"),
    "draft_too_costly": ProblemKind(422, "Draft needs more time, memory or answer than a preview may use"),
    "duplicate": ProblemKind(409, "Event was already accepted"),
    "destination_rejected": ProblemKind(422, "Destination rejected the event"),
    "destination_auth_failed": ProblemKind(502, "Destination refused the relay's credentials"),
    "destination_not_found": ProblemKind(502, "Destination resource not found"),
    # final like every 4xx but 408 and 429: a conflict does not go away by waiting
    "destination_conflict": ProblemKind(409, "Destination reported a conflict"),
    "rate_limited": ProblemKind(429, "Destination rate limit reached", retryable=True),
    "destination_unavailable": ProblemKind(502, "Destination unavailable", retryable=True),
    "timeout": ProblemKind(504, "Destination did not answer in time", retryable=True),
    "overloaded": ProblemKind(503, "Relay is overloaded", retryable=True),
    "store_unavailable": ProblemKind(503, "Relay cannot store events right now", retryable=True),
    "internal_error": ProblemKind(500, "Internal error", retryable=True),
    "too_many_events": ProblemKind(413, "Batch has too many events"),
    "json_too_deep": ProblemKind(400, "JSON nesting is too deep"),
    "string_too_long": ProblemKind(400, "A JSON string is too long"),
    "invalid_signature": ProblemKind(401, "Request signature is invalid"),
    "request_timeout": ProblemKind(408, "Request body did not arrive in time", retryable=True),
    "too_many_identities": ProblemKind(413, "An identity map has too many identities"),
}


class Problem(Exception):
    """One occurrence of a coded problem; ``to_dict`` gives its RFC 9457 document."""

    def __init__(
        self,
        code: str,
        detail: str | None = None,
        *,
        retry_after: float | None = None,
        rate_limit: int | None = None,
        rate_remaining: int | None = None,
        **extensions: Any,
    ) -> None:
        if code not in CODES:
            raise ValueError(f"unknown problem code {code!r}")
        super().__init__(detail or CODES[code].title)
        self.code = code
        self.detail = detail
        self.retry_after = retry_after
        # What a destination's answer said of its rate limit (per minute), for the limiter
        # only: like ``Delivered``'s, never part of the document.
        self.rate_limit = rate_limit
        self.rate_remaining = rate_remaining
        self.extensions = {k: v for k, v in extensions.items() if v is not None}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Problem:
        """Rebuild a problem from its document (as stored with a delivery)."""
        fixed = {"type", "title", "status", "code", "retryable", "detail", "retry_after"}
        code = doc.get("code")
        return cls(
            code if isinstance(code, str) and code in CODES else "internal_error",
            doc.get("detail"),
            retry_after=doc.get("retry_after"),
            **{k: v for k, v in doc.items() if k not in fixed},
        )

    @property
    def kind(self) -> ProblemKind:
        return CODES[self.code]

    @property
    def status(self) -> int:
        return self.kind.status

    @property
    def retryable(self) -> bool:
        return self.kind.retryable

    def to_dict(self) -> dict[str, Any]:
        """The problem as an RFC 9457 document with our ``code`` and ``retryable`` members."""
        doc: dict[str, Any] = {
            "type": f"/problems/{self.code.replace('_', '-')}",
            "title": self.kind.title,
            "status": self.status,
            "code": self.code,
            "retryable": self.retryable,
        }
        if self.detail:
            doc["detail"] = self.detail
        if self.retry_after is not None:
            doc["retry_after"] = self.retry_after
        doc.update(self.extensions)
        return doc

    def headers(self) -> dict[str, str]:
        """Response headers that go with the document (``Retry-After`` when known)."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}
