"""The audit trail: one entry per configuration change, written in the change's own
transaction (call ``record`` inside its unit of work), with who made it and the values
before and after. Never a secret: callers pass names, prefixes and settings only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models.infra.db import current_actor, read_only
from models.infra.logs import request_id
from models.tables import AuditEntry

ACTIONS = (
    "segment.create",
    "segment.delete",
    "segment.percent",
    "segment.schedule",
    "layer.create",
    "layer.delete",
    "import.start",
    "webhook.create",
    "webhook.delete",
    "key.create",
    "key.revoke",
    "key.rotate",
    "console.login",
)
# For a change made on a connection of its own (an upload's), in that transaction.
INSERT_SQL = (
    "INSERT INTO audit (actor, action, target, details, request_id) VALUES (%s, %s, %s, %s, %s)"
)


@dataclass(frozen=True)
class AuditView:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict
    request_id: str | None


def entry_params(action: str, target: str, details: dict[str, Any] | None) -> tuple:
    """The values of INSERT_SQL for an entry made now, for the current actor."""
    return (current_actor(), action, target, json.dumps(details or {}), request_id.get())


def record(action: str, target: str, details: dict[str, Any] | None = None) -> None:
    """Write one audit entry in the caller's transaction."""
    assert action in ACTIONS, action
    AuditEntry.insert(
        actor=current_actor(),
        action=action,
        target=target,
        details=details or {},
        request_id=request_id.get(),
    ).execute()


@read_only
def entries(after: int, limit: int, actor: str | None, action: str | None) -> list[AuditView]:
    """Entries after id ``after``, oldest first, optionally of one actor or action."""
    query = AuditEntry.select().where(AuditEntry.id > after)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action == action)
    rows = query.order_by(AuditEntry.id).limit(limit)
    return [
        AuditView(r.id, r.at, r.actor, r.action, r.target, r.details, r.request_id) for r in rows
    ]
