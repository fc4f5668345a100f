"""/audit: who changed what, oldest first, a page at a time (admin only)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

import msgspec
from litestar.params import QueryParameter

from models import audit
from web.auth import ADMIN, SCOPE
from web.methods import get_and_head
from web.routes import params
from web.schemas import ERRORS, MAX_USER_ID

Filter = Annotated[str | None, QueryParameter(description="only entries with this value")]


class AuditEntry(msgspec.Struct):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict
    request_id: str | None


class AuditPage(msgspec.Struct):
    entries: list[AuditEntry]
    next: int | None  # pass as after= for the next page; null: no more now


def action_filter(raw: str | None) -> str | None:
    if raw:
        params.choice("action", raw, audit.ACTIONS)
    return raw or None


@get_and_head(
    "/audit",
    sync_to_thread=True,
    responses=ERRORS,
    tags=["audit"],
    summary="Configuration changes with who made them, oldest first",
    opt={SCOPE: ADMIN},
)
def read_audit(
    after: params.After = "0",
    limit: Annotated[str, QueryParameter(description="1-1000, default 100")] = "100",
    actor: Filter = None,
    action: Filter = None,
) -> AuditPage:
    size = params.integer("limit", limit, 1, 1000)
    found = audit.entries(
        params.integer("after", after, 0, MAX_USER_ID), size, actor or None, action_filter(action)
    )
    return AuditPage(
        entries=[AuditEntry(**asdict(e)) for e in found],
        next=found[-1].id if len(found) == size else None,
    )
