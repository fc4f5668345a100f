"""The membership history report: CSV lines for one month, read in keyset batches
(models/csv_stream.py) so a report of any size streams in flat memory. The month's
bounds are literals in the query, so the planner reads that month's partition alone
(docs/partitions.md)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

from models.csv_stream import keyset_lines, utc_stamp
from models.errors import Gone
from models.infra.db import fetchone
from models.infra.replica import replica_read
from models.months import month_bounds
from models.partitions import kept_from

CSV_HEADER = "user_id;segment;operation;timestamp;reason\n"
# With actor=true: who caused each event, as a sixth column.
CSV_HEADER_ACTOR = "user_id;segment;operation;timestamp;reason;actor\n"
BATCH = 20_000

# OWASP's defence against CSV injection: a cell starting with = + - @ tab or CR is a
# formula to a spreadsheet, so such a name gets a leading single quote. No name holds a
# quote, so a program reading the report drops one leading quote to get the exact name.
SEGMENT_CELL = (
    "CASE WHEN left(s.name, 1) IN ('=', '+', '-', '@', chr(9), chr(13))"
    " THEN '''' || s.name ELSE s.name END"
)


def check_kept(year: int, month: int, retention_months: int | None, today: date) -> None:
    """Raise Gone for a month retention has dropped (or is about to drop)."""
    first = kept_from(today, retention_months)
    if first is not None and date(year, month, 1) < first:
        setting = f"HISTORY_RETENTION_MONTHS={retention_months}"
        raise Gone(
            f"history before {first:%Y-%m} is not kept: {setting}",
            kept_from=f"{first:%Y-%m}",
            retention_months=retention_months,
        )


# (text of up to BATCH lines, how many, the last line's (at, id)). psycopg2 writes the
# month's bounds into the text as literals, so the plan is pruned to its partition.
BATCH_SQL = f"""
    WITH page AS (
        SELECT h.at, h.id,
               h.user_id || ';' || {SEGMENT_CELL} || ';' || h.operation || ';'
               || {utc_stamp("h.at")}
               || ';' || h.reason
               || CASE WHEN %(actor)s THEN ';' || h.actor ELSE '' END || E'\\n' AS line
        FROM history h JOIN segments s ON s.id = h.segment_id
        WHERE h.at >= %(start)s AND h.at < %(end)s
          AND (%(user)s::bigint IS NULL OR h.user_id = %(user)s)
          AND (%(after_at)s::timestamptz IS NULL
               OR (h.at, h.id) > (%(after_at)s, %(after_id)s))
        ORDER BY h.at, h.id LIMIT %(limit)s
    ),
    last AS (SELECT at, id FROM page ORDER BY at DESC, id DESC LIMIT 1)
    SELECT coalesce(string_agg(line, '' ORDER BY at, id), ''), count(*),
           (SELECT at FROM last), (SELECT id FROM last)
    FROM page"""


def batch_params(
    user_id: int | None,
    start: datetime,
    end: datetime,
    after: tuple | None = None,
    actor: bool = False,
) -> dict:
    return {
        "actor": actor,
        "start": start,
        "end": end,
        "user": user_id,
        "limit": BATCH,
        "after_at": after[0] if after else None,
        "after_id": after[1] if after else None,
    }


@replica_read
def _batch(params: dict) -> tuple:
    return fetchone(BATCH_SQL, params)


def history_csv(user_id: int | None, year: int, month: int, actor: bool = False) -> Iterator[str]:
    """The header, then one chunk of lines per batch (with ``actor``, a sixth column)."""
    start, end = month_bounds(year, month)

    def batch(after: tuple | None) -> tuple[str, int, tuple]:
        text, count, last_at, last_id = _batch(batch_params(user_id, start, end, after, actor))
        return text, count, (last_at, last_id)

    return keyset_lines(CSV_HEADER_ACTOR if actor else CSV_HEADER, batch, BATCH)
