"""One membership change and its history event, in one statement.

Every statement that adds or removes memberships goes through ``change_with_events``:
the change is a data-modifying SQL statement whose RETURNING rows say what changed, and
the history insert in the same statement reads exactly those rows. So one state change
writes exactly one event, atomically, and no caller writes history by hand.

The change must return ``user_id, segment_id, reason, at, event``: ``event`` is false
for a row that was touched without changing state (an upsert that kept a held
membership). Event times come from clock_timestamp() in the RETURNING list, read after
the row lock is held, not from now() (the transaction's start): two transactions racing
on one membership get event times in the order their changes took effect.

A long transaction that never writes history (an upload's staging) says so first with
``promise_no_history``: the webhook feed then does not wait for it (models/webhooks.py),
and the database refuses history from it (migration 008).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.infra.db import db
from models.tables import Operation

# The application_name of a transaction that promised not to write history; other
# sessions can see it in pg_stat_activity while the transaction runs.
NO_HISTORY = "segments-no-history"

_TEMPLATE = """
WITH {before}changed AS ({change}),
events AS (
    INSERT INTO history (user_id, segment_id, operation, reason, at)
    SELECT user_id, segment_id, %(operation)s, reason, at FROM changed WHERE event
)
{result}
"""


def change_with_events(
    change: str,
    params: Mapping[str, Any],
    operation: Operation,
    *,
    before: str = "",
    result: str = "SELECT count(*) FILTER (WHERE event) FROM changed",
) -> list[tuple]:
    """Run ``change`` and write one ``operation`` event per changed row.

    ``before`` holds CTEs the change reads (``name AS (...), ``); ``result`` is the final
    SELECT, which may read ``changed`` and those CTEs. Returns its rows.
    """
    sql = _TEMPLATE.format(before=before, change=change, result=result)
    return db.execute_sql(sql, {**params, "operation": operation.value}).fetchall()


def promise_no_history(cursor: Any) -> None:
    """Mark the transaction ``cursor`` runs in as one that writes no history: the webhook
    feed does not wait for it, however long it lasts. First, before it writes anything
    (so no history came before the promise either)."""
    cursor.execute(
        "SELECT pg_current_xact_id_if_assigned() IS NULL, set_config('application_name', %s, true)",
        (NO_HISTORY,),
    )
    if not cursor.fetchone()[0]:
        raise RuntimeError("promise_no_history after the transaction wrote")
