"""Webhooks: the change feed of membership events, per subscriber.

**Order without skipping.** An event's id is taken before its transaction commits, so a
transaction holding id 10 can commit after one holding id 11: a cursor over ids alone
would pass 10 by. Each event records the transaction that wrote it (``history.txid``),
and the feed reads only events of transactions below a horizon (``HORIZON``): every
transaction below it that can write history has ended, and every one still able to write
an event has an xid at or above it. So the feed, ordered by ``(txid, id)``, only ever
grows after its end, and a cursor over that pair never skips an event. Within one
transaction events come in id order; across transactions, in the order their
transactions took their ids (so a late committer's smaller id can come after a larger
one delivered before).

The horizon is the oldest transaction the feed's snapshot saw running, except those
known never to write our history: transactions of other databases on the server, and
ours that promised so (an upload's staging, models/events.py). An unknown one counts: a
long transaction in this database that may write history holds the feed back until it
ends (bulk job batches are short for that reason). Why skipping those is safe: an xid
in the snapshot was assigned before it, so a backend showing that xid afterwards (read
in the same statement) is that very transaction, and a database or a promise never
changes within one.

Delivery is at least once: the cursor moves only after the receiver acknowledged a batch.
"""

from __future__ import annotations

import secrets as random_secrets
from dataclasses import dataclass
from datetime import datetime

from peewee import SQL, fn

from models import audit
from models.errors import NotFound
from models.events import NO_HISTORY
from models.infra.db import db, read_only, unit_of_work
from models.tables import Webhook

BATCH = 1000  # events per delivery at most
SCAN = 10_000  # events looked at per delivery when a filter skips most of them
LEASE_SECONDS = 30  # a delivery's hold on its webhook (the POST times out after 5)
MAX_BACKOFF = 300  # seconds between two attempts at most
FEED_ORDER = "coalesce(h.txid, '0'::xid8), h.id"
# At most once per transaction: a transaction reads pg_stat_activity once and keeps what
# it read, and that read must come after the snapshot of the statement using it.
HORIZON = f"""least(
    pg_snapshot_xmax(pg_current_snapshot()),
    (SELECT min(x) FROM pg_snapshot_xip(pg_current_snapshot()) x
     WHERE x::xid NOT IN (
         SELECT backend_xid FROM pg_stat_activity
         WHERE backend_xid IS NOT NULL
           AND (datname IS DISTINCT FROM current_database()
                OR application_name = '{NO_HISTORY}'))))"""


@dataclass(frozen=True)
class WebhookView:
    id: int
    url: str
    segments: list[str] | None
    created_at: datetime
    cursor: int  # the id of the last event delivered (0: none yet)
    delivered: int
    pending: int | None  # events waiting (up to SCAN; None when not counted)
    last_delivery_at: datetime | None
    last_error: str | None
    failures: int
    next_attempt_at: datetime
    secret: str | None = None  # only in the answer to its creation


@dataclass(frozen=True)
class Delivery:
    webhook_id: int
    url: str
    secret: str
    events: list[dict]
    cursor: tuple[str, int]  # where the feed stands once these are acknowledged
    more: bool  # the scan stopped early: deliver again at once


def _view(hook: Webhook, pending: int | None = None, secret: str | None = None) -> WebhookView:
    return WebhookView(
        id=hook.id,
        url=hook.url,
        segments=hook.segments,
        created_at=hook.created_at,
        cursor=hook.cursor_id,
        delivered=hook.delivered,
        pending=pending,
        last_delivery_at=hook.last_delivery_at,
        last_error=hook.last_error,
        failures=hook.failures,
        next_attempt_at=hook.next_attempt_at,
        secret=secret,
    )


@unit_of_work
def create_webhook(url: str, segments: list[str] | None, secret: str | None) -> WebhookView:
    """Start at the feed's current end: only events written from now on are sent."""
    secret = secret or random_secrets.token_urlsafe(32)
    hook = (
        Webhook.insert(
            url=url,
            segments=sorted(set(segments)) if segments else None,
            secret=secret,
            cursor_txid=SQL(HORIZON),
        )
        .returning(Webhook)
        .execute()
    )
    made = next(iter(hook))
    audit.record("webhook.create", f"webhook:{made.id}", {"after": _settings(made)})
    return _view(made, pending=0, secret=secret)


def _settings(hook: Webhook) -> dict:
    """What an audit entry keeps of a webhook: never its secret."""
    return {"url": hook.url, "segments": hook.segments}


def _found(webhook_id: int) -> Webhook:
    hook = Webhook.get_or_none(Webhook.id == webhook_id)
    if hook is None:
        raise NotFound(f"webhook {webhook_id} not found", id=webhook_id)
    return hook


@read_only
def list_webhooks() -> list[WebhookView]:
    return [_view(h) for h in Webhook.select().order_by(Webhook.id)]


@read_only
def get_webhook(webhook_id: int) -> WebhookView:
    hook = _found(webhook_id)
    pending = db.execute_sql(
        f"SELECT count(*) FROM ({_feed(filtered=True)} LIMIT {SCAN}) p", _feed_params(hook)
    ).fetchone()[0]
    return _view(hook, pending=pending)


@unit_of_work
def delete_webhook(webhook_id: int) -> WebhookView:
    hook = _found(webhook_id)
    Webhook.delete().where(Webhook.id == webhook_id).execute()
    audit.record("webhook.delete", f"webhook:{webhook_id}", {"before": _settings(hook)})
    return _view(hook)


def _feed(filtered: bool) -> str:
    """The events after the cursor and below the horizon, in feed order; ``filtered``:
    only the webhook's segments."""
    segments = "AND (%(segments)s::text[] IS NULL OR s.name = ANY(%(segments)s))"
    return f"""
        SELECT h.id, h.user_id, s.name, h.operation, h.reason,
               to_char(h.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), h.actor,
               coalesce(h.txid, '0'::xid8)::text
        FROM history h JOIN segments s ON s.id = h.segment_id
        WHERE ({FEED_ORDER}) > (%(txid)s::xid8, %(id)s)
          AND coalesce(h.txid, '0'::xid8) < {HORIZON}
          {segments if filtered else ""}
        ORDER BY {FEED_ORDER}"""


def _feed_params(hook: Webhook) -> dict:
    return {"txid": hook.cursor_txid, "id": hook.cursor_id, "segments": hook.segments}


@read_only
def due_webhooks() -> list[int]:
    """Webhooks with events waiting, whose backoff has passed and that no delivery holds,
    the longest waiting first (a receiver that just failed goes after the others). The
    feed's end is found once (an index probe per history partition), so an idle webhook
    costs a comparison per tick, not a delivery's transaction."""
    rows = db.execute_sql(f"""
        WITH feed_end AS (
            SELECT coalesce(h.txid, '0'::xid8) AS txid, h.id FROM history h
            WHERE coalesce(h.txid, '0'::xid8) < {HORIZON}
            ORDER BY coalesce(h.txid, '0'::xid8) DESC, h.id DESC LIMIT 1)
        SELECT w.id FROM webhooks w JOIN feed_end e
            ON (w.cursor_txid, w.cursor_id) < (e.txid, e.id)
        WHERE w.next_attempt_at <= now() AND (w.lease_until IS NULL OR w.lease_until < now())
        ORDER BY w.next_attempt_at, w.id""").fetchall()
    return [r[0] for r in rows]


@unit_of_work
def claim_delivery(webhook_id: int) -> Delivery | None:
    """Take the webhook's lease and read its next batch; None when it is held, backing
    off, deleted, or has nothing to send."""
    hook = (
        Webhook.select()
        .where(
            Webhook.id == webhook_id,
            Webhook.next_attempt_at <= fn.now(),
            Webhook.lease_until.is_null() | (Webhook.lease_until < fn.now()),
        )
        .for_update("FOR UPDATE SKIP LOCKED")
        .first()
    )
    if hook is None:
        return None
    # Unfiltered, the scan is the batch. Filtered, SCAN events are looked at, so the
    # cursor moves past the ones of other segments even when none of its own comes.
    limit = SCAN if hook.segments else BATCH
    scanned = db.execute_sql(
        f"{_feed(filtered=False)} LIMIT {limit}", _feed_params(hook)
    ).fetchall()
    wanted = set(hook.segments or ())
    events = [r for r in scanned if not wanted or r[2] in wanted][:BATCH]
    if len(events) == BATCH:
        last, more = events[-1], True
    else:
        last, more = (scanned[-1] if scanned else None), len(scanned) == limit
    if last is None:
        return None
    Webhook.update(lease_until=SQL("now() + make_interval(secs => %s)", (LEASE_SECONDS,))).where(
        Webhook.id == webhook_id
    ).execute()
    keys = ("id", "user_id", "segment", "operation", "reason", "at", "actor")
    payload = [dict(zip(keys, r[:7], strict=True)) for r in events]
    return Delivery(hook.id, hook.url, hook.secret, payload, (last[7], last[0]), more)


@unit_of_work
def acknowledge(delivery: Delivery) -> None:
    """The receiver took the batch: move the cursor past it."""
    Webhook.update(
        cursor_txid=delivery.cursor[0],
        cursor_id=delivery.cursor[1],
        delivered=Webhook.delivered + len(delivery.events),
        last_delivery_at=fn.now() if delivery.events else Webhook.last_delivery_at,
        last_error=None,
        failures=0,
        lease_until=None,
    ).where(Webhook.id == delivery.webhook_id).execute()


@unit_of_work
def failed(delivery: Delivery, error: str) -> float:
    """The receiver did not take it: back off exponentially (capped), keep the cursor.
    Returns the seconds until the next attempt."""
    hook = Webhook.get_or_none(Webhook.id == delivery.webhook_id)
    if hook is None:
        return 0.0
    delay = float(min(2**hook.failures, MAX_BACKOFF))
    Webhook.update(
        failures=Webhook.failures + 1,
        last_error=error[:500],
        next_attempt_at=SQL("now() + make_interval(secs => %s)", (delay,)),
        lease_until=None,
    ).where(Webhook.id == delivery.webhook_id).execute()
    return delay
