"""Segments: create, soft-delete, change the auto percentage, list and page members."""

from __future__ import annotations

from decimal import Decimal

from models import jobs
from models.buckets import new_salt, threshold
from models.db import execute, fetchall, fetchone, read_only, unit_of_work
from models.errors import Conflict, NotFound
from models.memberships import LIVE
from models.tables import Segment

# Serialises auto segment creation / percent changes (exclusive) against user creation
# (shared). Any constant works; it only has to be the same in every process.
AUTO_SEGMENTS_LOCK = 5_120_447_903


def hold_auto_segments_shared() -> None:
    execute("SELECT pg_advisory_xact_lock_shared(%s)", (AUTO_SEGMENTS_LOCK,))


def _hold_auto_segments_exclusive() -> None:
    execute("SELECT pg_advisory_xact_lock(%s)", (AUTO_SEGMENTS_LOCK,))


def _segment_view(row: tuple) -> dict:
    name, auto_percent, created_at = row[:3]
    return {"segment": name, "auto_percent": auto_percent, "created_at": created_at}


@unit_of_work
def create_segment(name: str, auto_percent: Decimal) -> tuple[dict, int | None]:
    """Returns the segment and, when auto_percent > 0, the id of its assignment job."""
    if auto_percent > 0:
        _hold_auto_segments_exclusive()
    row = fetchone(
        """INSERT INTO segments (name, salt, auto_percent) VALUES (%s, %s, %s)
           ON CONFLICT (name) WHERE deleted_at IS NULL DO NOTHING
           RETURNING id, name, auto_percent, created_at""",
        (name, new_salt(), auto_percent),
    )
    if row is None:
        raise Conflict(f"segment {name} already exists", segment=name)
    segment_id = row[0]
    job_id = None
    if auto_percent > 0:
        job_id = jobs.create_job(
            "assign_auto", segment_id, {"low": 0, "high": threshold(auto_percent), "reason": "auto"}
        )
    return _segment_view(row[1:]), job_id


@unit_of_work
def delete_segment(name: str) -> tuple[dict, int]:
    """Hide the segment from every read at once, free its name, and record the job that
    removes its memberships. Returns the segment and the cleanup job's id."""
    # Like a percent change: a user being created either commits before the cleanup job
    # scans, or sees the segment as deleted and does not join it.
    _hold_auto_segments_exclusive()
    # Lock first, stamp after: the clock is read once no batch or request holds the row,
    # so the deletion time comes after every add it ends.
    found = fetchone(
        "SELECT id FROM segments WHERE name = %s AND deleted_at IS NULL FOR UPDATE", (name,)
    )
    if found is None:
        raise NotFound(f"segment {name} not found", segment=name)
    row = fetchone(
        """UPDATE segments SET deleted_at = clock_timestamp() WHERE id = %s
           RETURNING name, auto_percent, created_at""",
        found,
    )
    return _segment_view(row), jobs.create_job("cleanup_segment", found[0], {})


@unit_of_work
def change_percent(name: str, auto_percent: Decimal) -> tuple[dict, int | None]:
    """Set a new percentage; growing adds buckets [old, new), shrinking removes auto
    members at or above new. Returns the segment and the job's id (None if unchanged)."""
    _hold_auto_segments_exclusive()
    row = fetchone(
        "SELECT id, auto_percent FROM segments WHERE name = %s AND deleted_at IS NULL FOR UPDATE",
        (name,),
    )
    if row is None:
        raise NotFound(f"segment {name} not found", segment=name)
    segment_id, old = row
    updated = fetchone(
        "UPDATE segments SET auto_percent = %s WHERE id = %s "
        "RETURNING name, auto_percent, created_at",
        (auto_percent, segment_id),
    )
    old_t, new_t = threshold(old), threshold(auto_percent)
    job_id = None
    if new_t > old_t:
        params = {"low": old_t, "high": new_t, "reason": "percent_change"}
        job_id = jobs.create_job("assign_auto", segment_id, params)
    elif new_t < old_t:
        job_id = jobs.create_job("shrink_auto", segment_id, {"low": new_t})
    return _segment_view(updated), job_id


@read_only
def list_segments() -> list[dict]:
    rows = fetchall(
        f"""SELECT s.name, s.auto_percent, s.created_at,
                   count(m.user_id) FILTER (WHERE {LIVE})
            FROM segments s LEFT JOIN memberships m ON m.segment_id = s.id
            WHERE s.deleted_at IS NULL
            GROUP BY s.id ORDER BY s.name"""
    )
    return [{**_segment_view(r), "members": r[3]} for r in rows]


@read_only
def get_segment(name: str) -> dict:
    row = fetchone(
        f"""SELECT s.name, s.auto_percent, s.created_at,
                   (SELECT count(*) FROM memberships m WHERE m.segment_id = s.id AND {LIVE})
            FROM segments s WHERE s.name = %s AND s.deleted_at IS NULL""",
        (name,),
    )
    if row is None:
        raise NotFound(f"segment {name} not found", segment=name)
    return {**_segment_view(row), "members": row[3]}


@read_only
def segment_members(name: str, after: int, limit: int) -> list[int]:
    """One page of the segment's live members, by user id, keyset-paginated."""
    if not Segment.select().where(Segment.name == name, Segment.deleted_at.is_null()).exists():
        raise NotFound(f"segment {name} not found", segment=name)
    rows = fetchall(
        f"""SELECT m.user_id FROM memberships m JOIN segments s ON s.id = m.segment_id
            WHERE s.name = %s AND {LIVE} AND m.user_id > %s
            ORDER BY m.user_id LIMIT %s""",
        (name, after, limit),
    )
    return [r[0] for r in rows]
