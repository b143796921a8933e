"""Following an event and erasing a person (admin): ``GET /v1/trace/{event_id}`` and
``POST /v1/erasure``."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from app import erasure, trace
from app.api.auth import admin_relay
from app.api.responses import json_response
from app.delivery.store import Identifier

router = APIRouter()
audit = structlog.get_logger("app.audit")

MAX_IDENTIFIERS = 20  # as many as one Zendesk profile holds (reference 1.2)


class ErasureIdentifier(BaseModel):
    """One identifier of the person, as Zendesk profiles hold them."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field(min_length=1, max_length=40, examples=["email"])
    value: str = Field(min_length=1, max_length=1024, examples=["jane.smith@example.com"])


class ErasureRequest(BaseModel):
    """Whom to erase: identifiers such as email, phone_number, external_id."""

    model_config = ConfigDict(extra="forbid")
    identifiers: list[ErasureIdentifier] = Field(min_length=1, max_length=MAX_IDENTIFIERS)


@router.get("/v1/trace/{event_id}", summary="Every delivery of one Adobe event, with its attempts (admin)")
async def get_trace(
    request: Request,
    event_id: str,
    verify: Annotated[bool, Query(description="Read each Zendesk delivery back from Zendesk")] = False,
) -> Response:
    """Status, body sent and each attempt of every delivery of the event; with ``verify=true``
    each Zendesk delivery carries ``verified`` (true, false, or null where it cannot tell)."""
    relay = admin_relay(request)
    return json_response(await trace.trace(relay, event_id, verify=verify))


@router.post("/v1/erasure", summary="Erase a person at Zendesk and in the relay (admin)")
async def post_erasure(request: Request, body: ErasureRequest) -> Response:
    """Delete the person's Zendesk profiles (with their events) and every delivery, dead letter
    and idempotency record of the relay whose body holds one of the identifiers."""
    relay = admin_relay(request)
    identifiers = [Identifier(i.type, i.value) for i in body.identifiers]
    # the audit line names the request and the kinds of identifier, never their values
    kinds = sorted({i.type for i in identifiers})
    audit.info("erasure_requested", identifiers=len(identifiers), identifier_types=kinds)
    report = await erasure.erase(relay, identifiers)
    audit.info(
        "erasure_done",
        relay=report["relay"],
        zendesk_profiles_deleted=len(report["zendesk"]["profiles_deleted"]),
    )
    return json_response(report)
