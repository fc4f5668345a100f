"""Bulk imports: a list of user ids put into (or taken out of) a segment.

An upload stages the ids (models/uploads.py) and records the job at its end. The job then
applies the ids in batches (``import_batch``), each one transaction with its checkpoint,
like every job. The import jobs of one segment run one at a time, in the order they were
recorded (``models.jobs.claim_job``): the later of two replaces wins, whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from models import layer_members, users
from models.events import change_with_events
from models.infra.db import db
from models.job_batches import BatchResult
from models.memberships import clear_opt_outs, opt_out, remove_ended
from models.tables import Job, Operation, Reason


class Action(StrEnum):
    ADD = "add"
    REMOVE = "remove"


class Mode(StrEnum):
    MERGE = "merge"
    REPLACE = "replace"


# The passes of an import job: the upload's batches moved into import_staging, the
# listed ids, then (replace) the members not listed.
LISTED, UNLISTED, EXPAND = 0, 1, 2


@dataclass(frozen=True)
class ImportOptions:
    action: Action = Action.ADD
    active_time: int | None = None
    mode: Mode = Mode.MERGE
    create_users: bool = False
    move: bool = False  # users holding another segment of the layer are moved, not skipped


SEGMENT_DELETED = "the segment was deleted"


def upload_of(job: Job) -> int:
    """The upload id the job's ids are staged under."""
    return job.params["upload"]


def drop_staging(job: Job) -> None:
    """An ended import's staged ids are no longer needed."""
    for table in ("import_upload_batches", "import_staging"):
        db.execute_sql(f"DELETE FROM {table} WHERE upload_id = %s", (upload_of(job),))


def _column(sql: str, params: tuple) -> list[int]:
    return [row[0] for row in db.execute_sql(sql, params).fetchall()]


def _lock_users(ids: list[int]) -> list[int]:
    """The existing ones of ``ids``, row-locked in id order like a manual change, so one
    user's changes never interleave and two batches never lock in crossed order."""
    return _column("SELECT id FROM users WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", (ids,))


def _known_users(ids: list[int], create: bool) -> list[int]:
    """The listed users that exist (created first when ``create``), row-locked."""
    if create:
        users.create_users(ids)  # each in its auto segments, as POST /users does
    return _lock_users(ids)


def _end_expired(segment_id: int, users: list[int]) -> None:
    """Expired but unswept memberships ended at their expiry: record it first."""
    remove_ended(
        """SELECT user_id, segment_id FROM memberships
           WHERE segment_id = %(segment)s AND user_id = ANY(%(users)s)
             AND expires_at <= now() FOR UPDATE""",
        {"segment": segment_id, "users": users},
    )


def _add(segment_id: int, users: list[int], active_time: int | None) -> int:
    """Upsert the memberships; a new one gets its event. An auto member listed by a
    person becomes 'import', so a percent decrease leaves it. Returns how many are new."""
    rows = change_with_events(
        """INSERT INTO memberships AS m (user_id, segment_id, source, added_at, expires_at)
           SELECT u, %(segment)s, 'import', clock_timestamp(),
                  clock_timestamp() + make_interval(secs => %(ttl)s::int)
           FROM unnest(%(users)s::bigint[]) u ORDER BY u
           ON CONFLICT (user_id, segment_id) DO UPDATE
               SET expires_at = EXCLUDED.expires_at,
                   source = CASE WHEN m.source = 'auto' THEN 'import' ELSE m.source END
           RETURNING m.user_id, m.segment_id, %(reason)s AS reason,
                     clock_timestamp() AS at, (xmax = 0) AS event""",
        {"segment": segment_id, "users": users, "ttl": active_time, "reason": Reason.IMPORT.value},
        Operation.ADD,
    )
    clear_opt_outs([segment_id], users)
    return rows[0][0]


def _remove(segment_id: int, users: list[int], sources: tuple[str, ...], since=None) -> list[int]:
    """Remove the memberships (of these sources, and when ``since`` is given, added
    before it) with their events. Returns the users whose membership went."""
    return [
        row[0]
        for row in change_with_events(
            """DELETE FROM memberships
               WHERE segment_id = %(segment)s AND user_id = ANY(%(users)s)
                 AND source = ANY(%(sources)s)
                 AND (%(since)s::timestamptz IS NULL OR added_at < %(since)s)
               RETURNING user_id, segment_id, %(reason)s AS reason,
                         clock_timestamp() AS at, true AS event""",
            {
                "segment": segment_id,
                "users": users,
                "sources": list(sources),
                "since": since,
                "reason": Reason.IMPORT.value,
            },
            Operation.REMOVE,
            result="SELECT user_id FROM changed",
        )
    ]


def _listed_batch(job: Job, options: ImportOptions, size: int) -> BatchResult:
    # No DISTINCT in SQL: with it, and the freshly copied table not yet analysed, the
    # planner sorted every staged id after the checkpoint for each batch (1.4 s at 1M).
    # Walking the index in order and collapsing repeats here is flat. A repeated last
    # id beyond the limit is passed over by the next batch's "> checkpoint": done.
    ids = sorted(
        set(
            _column(
                "SELECT user_id FROM import_staging WHERE upload_id = %s AND user_id > %s "
                "ORDER BY user_id LIMIT %s",
                (upload_of(job), job.checkpoint, size),
            )
        )
    )
    if not ids:
        if options.mode is Mode.REPLACE:
            return BatchResult(0, 0, False, phase=UNLISTED)
        return BatchResult(job.checkpoint, 0, True)
    known = _known_users(ids, options.create_users)
    known_set = set(known)
    unknown = [i for i in ids if i not in known_set]
    counts = {"added": 0, "removed": 0, "unchanged": 0, "unknown_users": len(unknown)}
    conflicted: list[int] = []
    if known:
        _end_expired(job.segment_id, known)
    if options.action is Action.REMOVE:
        if known:
            # Every listed user opts out, member or not, as a manual removal does.
            counts["removed"] = len(_remove(job.segment_id, known, ("manual", "auto", "import")))
            opt_out([job.segment_id], known)
    else:
        # A layer's segment reports its conflicts (and moves) in every batch's counts.
        room = layer_members.make_room_for(job.segment_id, known, options.move)
        if room is not None:
            known, conflicted = room.users, room.conflicted
            counts |= {"conflicts": len(conflicted), "moved": room.moved}
        counts["added"] = _add(job.segment_id, known, options.active_time) if known else 0
    counts["unchanged"] = len(known) - counts["added"] - counts["removed"]
    return BatchResult(
        ids[-1], len(ids), False, counts=counts, unknown=unknown[:100], conflicted=conflicted[:100]
    )


def _unlisted_batch(job: Job, size: int) -> BatchResult:
    """replace: the next members by id; those added by a person or an import before the
    job started and not in the list are removed, and only they opt out. Auto members
    stay, and so does a membership added after the job started (a later change wins)."""
    members = _column(
        "SELECT user_id FROM memberships WHERE segment_id = %s AND user_id > %s "
        "ORDER BY user_id LIMIT %s",
        (job.segment_id, job.checkpoint, size),
    )
    if not members:
        return BatchResult(job.checkpoint, 0, True, phase=UNLISTED)
    unlisted = _column(
        """SELECT u FROM unnest(%s::bigint[]) u WHERE NOT EXISTS (
               SELECT 1 FROM import_staging s WHERE s.upload_id = %s AND s.user_id = u)
           ORDER BY u""",
        (members, upload_of(job)),
    )
    removed = []
    if unlisted:
        _lock_users(unlisted)
        _end_expired(job.segment_id, unlisted)
        removed = _remove(job.segment_id, unlisted, ("manual", "import"), since=job.started_at)
        opt_out([job.segment_id], removed)
    return BatchResult(
        members[-1],
        len(members),
        len(members) < size,
        phase=UNLISTED,
        counts={"removed": len(removed)},
    )


def _expand_batch(job: Job) -> BatchResult:
    """One of the upload's batches into import_staging, where each id is kept once and
    indexed for the passes; then the listed pass starts."""
    upload = upload_of(job)
    batch = db.execute_sql(
        "SELECT min(batch) FROM import_upload_batches WHERE upload_id = %s", (upload,)
    ).fetchone()[0]
    if batch is None:
        return BatchResult(0, 0, False, phase=LISTED)
    db.execute_sql(
        """WITH taken AS (DELETE FROM import_upload_batches
                          WHERE upload_id = %(upload)s AND batch = %(batch)s RETURNING ids)
           INSERT INTO import_staging (upload_id, user_id)
           SELECT %(upload)s, u FROM taken, unnest(taken.ids) u ORDER BY u
           ON CONFLICT DO NOTHING""",
        {"upload": upload, "batch": batch},
    )
    return BatchResult(0, 0, False, phase=EXPAND)


def import_batch(job: Job, size: int) -> BatchResult:
    """One batch of an import job; the segment is share-locked for it, so a deletion or
    percent change waits, and a segment deleted meanwhile fails the job."""
    live = db.execute_sql(
        "SELECT 1 FROM segments WHERE id = %s AND deleted_at IS NULL FOR SHARE",
        (job.segment_id,),
    ).fetchone()
    if live is None:
        return BatchResult(job.checkpoint, 0, True, phase=job.phase, error=SEGMENT_DELETED)
    p = job.params
    options = ImportOptions(
        Action(p["action"]), p["active_time"], Mode(p["mode"]), p["create_users"], p.get("move")
    )
    if job.phase == EXPAND:
        return _expand_batch(job)
    if job.phase == UNLISTED:
        return _unlisted_batch(job, size)
    return _listed_batch(job, options, size)
