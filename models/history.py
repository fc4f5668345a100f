"""The membership history report: CSV lines for one month, read in keyset batches so a
report of any size streams in flat memory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from models.db import fetchall, read_only

CSV_HEADER = "user_id;segment;operation;timestamp;reason\n"
BATCH = 5000


def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    """The half-open UTC interval [first day 00:00, first day of next month 00:00)."""
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


@read_only
def _batch(user_id: int | None, start: datetime, end: datetime, after: tuple | None) -> list:
    # The line is built in SQL: it is as cheap there as anywhere, and Python then only joins.
    return fetchall(
        """SELECT h.at, h.id,
                  h.user_id || ';' || s.name || ';' || h.operation || ';'
                  || to_char(h.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                  || ';' || h.reason || E'\\n'
           FROM history h JOIN segments s ON s.id = h.segment_id
           WHERE h.at >= %(start)s AND h.at < %(end)s
             AND (%(user)s::bigint IS NULL OR h.user_id = %(user)s)
             AND (%(after_at)s::timestamptz IS NULL OR (h.at, h.id) > (%(after_at)s, %(after_id)s))
           ORDER BY h.at, h.id LIMIT %(limit)s""",
        {
            "start": start,
            "end": end,
            "user": user_id,
            "limit": BATCH,
            "after_at": after[0] if after else None,
            "after_id": after[1] if after else None,
        },
    )


def history_csv(user_id: int | None, year: int, month: int) -> Iterator[str]:
    """Yields the header, then one chunk of lines per batch. Each batch borrows its own
    connection, so a slow client never holds one between batches."""
    start, end = month_bounds(year, month)
    yield CSV_HEADER
    after = None
    while True:
        rows = _batch(user_id, start, end, after)
        if not rows:
            return
        yield "".join(r[2] for r in rows)
        if len(rows) < BATCH:
            return
        after = rows[-1][:2]
