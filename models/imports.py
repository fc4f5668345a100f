"""Bulk imports: a list of user ids put into (or taken out of) a segment.

An upload is staged by ``Upload``: one transaction on a connection of its own records the
job and COPYs the ids into ``import_staging`` as they arrive, so a rejected upload leaves
nothing behind and the web process never holds the list. The job then applies the ids in
batches (``import_batch``), each one transaction with its checkpoint, like every job.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from enum import StrEnum

import psycopg2

from models import layer_members, users
from models.db import db
from models.errors import NotFound
from models.events import change_with_events
from models.job_batches import BatchResult
from models.memberships import remove_ended
from models.settings import active
from models.tables import Job, JobKind, Operation, Reason


class Action(StrEnum):
    ADD = "add"
    REMOVE = "remove"


class Mode(StrEnum):
    MERGE = "merge"
    REPLACE = "replace"


# The passes of an import job: the listed ids, then (replace) the members not listed.
LISTED, UNLISTED = 0, 1


@dataclass(frozen=True)
class ImportOptions:
    action: Action = Action.ADD
    active_time: int | None = None
    mode: Mode = Mode.MERGE
    create_users: bool = False
    move: bool = False  # users holding another segment of the layer are moved, not skipped


@dataclass(frozen=True)
class ImportStarted:
    job_id: int
    ids: int  # distinct ids staged
    replayed: bool  # an Idempotency-Key repeat: the original job, nothing new started


class IdempotencyMismatch(Exception):
    """The Idempotency-Key was used before with a different body."""


class Upload:
    """One upload's transaction: ``start`` (404 for an unknown segment), ``add`` ids as
    they are parsed, then ``commit`` or ``abort``. Blocking calls: run them off the
    event loop."""

    def __init__(self, segment: str, options: ImportOptions, key: str | None) -> None:
        self.segment, self.options, self.key = segment, options, key
        self.digest = hashlib.sha256()
        self.conn = psycopg2.connect(**active().connect_params())
        self.cur = self.conn.cursor()
        self.job_id = 0

    def start(self) -> None:
        self.cur.execute(
            "SELECT id FROM segments WHERE name = %s AND deleted_at IS NULL", (self.segment,)
        )
        row = self.cur.fetchone()
        if row is None:
            raise NotFound(f"segment {self.segment} not found", segment=self.segment)
        self.cur.execute(
            "INSERT INTO jobs (kind, segment_id, params) VALUES (%s, %s, %s) RETURNING id",
            # StrEnum members are str: they are written as their values.
            (JobKind.IMPORT.value, row[0], json.dumps(asdict(self.options))),
        )
        self.job_id = self.cur.fetchone()[0]

    def feed(self, raw: bytes) -> None:
        """The body's bytes as received, for the Idempotency-Key's comparison."""
        self.digest.update(raw)

    def add(self, ids: list[int]) -> None:
        rows = "".join(f"{self.job_id}\t{user_id}\n" for user_id in ids)
        self.cur.copy_expert("COPY import_staging (job_id, user_id) FROM STDIN", io.StringIO(rows))

    def commit(self) -> ImportStarted:
        """Count the distinct ids and commit; or, for a key seen before, roll back and
        name the original job (IdempotencyMismatch if its body differed)."""
        self.cur.execute(
            """UPDATE jobs SET total = (SELECT count(DISTINCT user_id) FROM import_staging
                                        WHERE job_id = %(job)s)
               WHERE id = %(job)s RETURNING total""",
            {"job": self.job_id},
        )
        total = self.cur.fetchone()[0]
        if self.key is not None:
            digest = self.digest.hexdigest()
            self.cur.execute(
                "INSERT INTO import_keys (key, body_sha256, job_id) VALUES (%s, %s, %s) "
                "ON CONFLICT (key) DO NOTHING RETURNING job_id",
                (self.key, digest, self.job_id),
            )
            if self.cur.fetchone() is None:
                return self._replay(digest)
        self.conn.commit()
        return ImportStarted(self.job_id, total, replayed=False)

    def _replay(self, digest: str) -> ImportStarted:
        self.conn.rollback()
        self.cur.execute(
            "SELECT k.body_sha256, k.job_id, j.total FROM import_keys k "
            "JOIN jobs j ON j.id = k.job_id WHERE k.key = %s",
            (self.key,),
        )
        seen, job_id, total = self.cur.fetchone()
        if seen != digest:
            raise IdempotencyMismatch(self.key)
        return ImportStarted(job_id, total or 0, replayed=True)

    def close(self) -> None:
        """Roll back whatever was not committed, and close the connection."""
        self.conn.close()


def _column(sql: str, params: tuple) -> list[int]:
    return [row[0] for row in db.execute_sql(sql, params).fetchall()]


def _lock_users(ids: list[int]) -> list[int]:
    """The existing ones of ``ids``, row-locked in id order like a manual change, so one
    user's changes never interleave and two batches never lock in crossed order."""
    return _column("SELECT id FROM users WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", (ids,))


def _known_users(ids: list[int], create: bool) -> list[int]:
    """The listed users that exist (created first when ``create``), row-locked."""
    if create:
        users.hold_auto_segments_shared()  # as POST /users: no auto assignment misses them
        created = _column(
            "INSERT INTO users (id) SELECT unnest(%s::bigint[]) ORDER BY 1 "
            "ON CONFLICT DO NOTHING RETURNING id",
            (ids,),
        )
        if created:
            users.join_auto_segments(created)  # as POST /users gives them
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
    db.execute_sql(
        "DELETE FROM segment_opt_outs WHERE segment_id = %s AND user_id = ANY(%s)",
        (segment_id, users),
    )
    return rows[0][0]


def _remove(segment_id: int, users: list[int], sources: tuple[str, ...]) -> int:
    """Remove the memberships (of these sources) with their events; every user named
    opts out of auto assignment, as a manual removal does. Returns how many went."""
    rows = change_with_events(
        """DELETE FROM memberships
           WHERE segment_id = %(segment)s AND user_id = ANY(%(users)s)
             AND source = ANY(%(sources)s)
           RETURNING user_id, segment_id, %(reason)s AS reason,
                     clock_timestamp() AS at, true AS event""",
        {
            "segment": segment_id,
            "users": users,
            "sources": list(sources),
            "reason": Reason.IMPORT.value,
        },
        Operation.REMOVE,
    )
    db.execute_sql(
        "INSERT INTO segment_opt_outs (segment_id, user_id) "
        "SELECT %s, unnest(%s::bigint[]) ORDER BY 2 ON CONFLICT DO NOTHING",
        (segment_id, users),
    )
    return rows[0][0]


def _listed_batch(job: Job, options: ImportOptions, size: int) -> BatchResult:
    # No DISTINCT in SQL: with it, and the freshly copied table not yet analysed, the
    # planner sorted every staged id after the checkpoint for each batch (1.4 s at 1M).
    # Walking the index in order and collapsing repeats here is flat. A repeated last
    # id beyond the limit is passed over by the next batch's "> checkpoint": done.
    ids = sorted(
        set(
            _column(
                "SELECT user_id FROM import_staging WHERE job_id = %s AND user_id > %s "
                "ORDER BY user_id LIMIT %s",
                (job.id, job.checkpoint, size),
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
        counts["removed"] = _remove(job.segment_id, known, ("manual", "auto", "import"))
    else:
        room = layer_members.make_room_for(job.segment_id, known, options.move)
        if room is not None:  # a layer's segment
            known, conflicted = room.users, room.conflicted
            counts |= {"conflicts": len(conflicted), "moved": room.moved}
        counts["added"] = _add(job.segment_id, known, options.active_time) if known else 0
    counts["unchanged"] = len(known) - counts["added"] - counts["removed"]
    return BatchResult(
        ids[-1], len(ids), False, counts=counts, unknown=unknown[:100], conflicted=conflicted[:100]
    )


def _unlisted_batch(job: Job, size: int) -> BatchResult:
    """replace: the next members by id; those added by a person or an import and not in
    the list are removed. Auto members stay."""
    members = _column(
        "SELECT user_id FROM memberships WHERE segment_id = %s AND user_id > %s "
        "ORDER BY user_id LIMIT %s",
        (job.segment_id, job.checkpoint, size),
    )
    if not members:
        return BatchResult(job.checkpoint, 0, True, phase=UNLISTED)
    unlisted = _column(
        """SELECT u FROM unnest(%s::bigint[]) u WHERE NOT EXISTS (
               SELECT 1 FROM import_staging s WHERE s.job_id = %s AND s.user_id = u)
           ORDER BY u""",
        (members, job.id),
    )
    removed = 0
    if unlisted:
        _lock_users(unlisted)
        _end_expired(job.segment_id, unlisted)
        removed = _remove(job.segment_id, unlisted, ("manual", "import"))
    return BatchResult(
        members[-1], len(members), len(members) < size, phase=UNLISTED, counts={"removed": removed}
    )


def import_batch(job: Job, size: int) -> BatchResult:
    """One batch of an import job; the segment is share-locked for it, so a deletion or
    percent change waits, and a segment deleted meanwhile ends the job."""
    live = db.execute_sql(
        "SELECT 1 FROM segments WHERE id = %s AND deleted_at IS NULL FOR SHARE",
        (job.segment_id,),
    ).fetchone()
    if live is None:
        return BatchResult(job.checkpoint, 0, True, phase=job.phase)
    p = job.params
    options = ImportOptions(
        Action(p["action"]), p["active_time"], Mode(p["mode"]), p["create_users"], p.get("move")
    )
    if job.phase == UNLISTED:
        return _unlisted_batch(job, size)
    return _listed_batch(job, options, size)
