"""The reads behind the support console (web/console): a user's month as a timeline,
a segment's member count over time, its members with their details, and the jobs worth
watching. Plain reads; every change the console makes goes through the same domain
functions as the JSON API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from peewee import JOIN, fn

from models import audit
from models.errors import NotFound
from models.infra.db import current_actor, fetchall, read_only, unit_of_work
from models.months import month_bounds
from models.tables import (
    ApiKey,
    ConsoleSession,
    HistoryEvent,
    Job,
    JobState,
    Membership,
    Scope,
    Segment,
)

TIMELINE_LIMIT = 1000  # events shown on a page; the CSV has them all
SERIES_POINTS = 60


@dataclass(frozen=True)
class TimelineEvent:
    at: datetime
    segment: str
    operation: str
    reason: str
    actor: str


@dataclass(frozen=True)
class Member:
    user_id: int
    source: str
    added_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class JobView:
    id: int
    kind: str
    segment: str
    segment_live: bool
    state: str
    done: int
    total: int | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    result: dict | None


@dataclass(frozen=True)
class SeriesPoint:
    at: datetime
    members: int


@read_only
def user_timeline(user_id: int, year: int, month: int) -> list[TimelineEvent]:
    """The user's events of the month, oldest first (at most TIMELINE_LIMIT)."""
    start, end = month_bounds(year, month)
    query = (
        HistoryEvent.select(
            HistoryEvent.at,
            Segment.name,
            HistoryEvent.operation,
            HistoryEvent.reason,
            HistoryEvent.actor,
        )
        .join(Segment)
        .where(HistoryEvent.user == user_id, HistoryEvent.at >= start, HistoryEvent.at < end)
        .order_by(HistoryEvent.at, HistoryEvent.id)
        .limit(TIMELINE_LIMIT)
    )
    return [TimelineEvent(*row) for row in query.tuples()]


@read_only
def segment_member_page(name: str, after: int, limit: int) -> list[Member]:
    """A page of the live segment's live members with their details, by user id."""
    segment = Segment.get_or_none(Segment.name == name, Segment.is_live())
    if segment is None:
        raise NotFound(f"segment {name} not found", segment=name)
    query = (
        Membership.select(
            Membership.user, Membership.source, Membership.added_at, Membership.expires_at
        )
        .join(Segment)
        .where(Membership.segment == segment.id, Membership.is_live(), Membership.user > after)
        .order_by(Membership.user)
        .limit(limit)
    )
    return [Member(*row) for row in query.tuples()]


@read_only
def member_series(name: str, members_now: int, now: datetime | None = None) -> list[SeriesPoint]:
    """Members over time, from the segment's creation (or 30 days back) to now, in up to
    SERIES_POINTS steps. Counted backwards from today's count, so history already
    dropped by retention does not skew it: members at t = now - net changes after t."""
    now = now or datetime.now(UTC)
    segment = Segment.get_or_none(Segment.name == name, Segment.is_live())
    if segment is None:
        raise NotFound(f"segment {name} not found", segment=name)
    start = max(segment.created_at, now - timedelta(days=30))
    step = max((now - start) / SERIES_POINTS, timedelta(seconds=1))
    steps = int((now - start) / step)
    # Net change in each step (index i covers (start + i*step, start + (i+1)*step]).
    rows = fetchall(
        """SELECT least(floor(extract(epoch FROM at - %(start)s) / %(step)s)::int, %(last)s),
                  sum(CASE WHEN operation = 'add' THEN 1 ELSE -1 END)
           FROM history WHERE segment_id = %(segment)s AND at > %(start)s
           GROUP BY 1""",
        {
            "start": start,
            "step": step.total_seconds(),
            "last": steps,
            "segment": segment.id,
        },
    )
    net = dict(rows)
    points = [SeriesPoint(now, members_now)]
    members = members_now
    for i in range(steps, -1, -1):
        members -= net.get(i, 0)
        points.append(SeriesPoint(start + i * step, members))
    return points[::-1]


def _job_views(query) -> list[JobView]:
    return [
        JobView(
            id=job.id,
            kind=job.kind,
            segment=job.segment.name,
            segment_live=job.segment.deleted_at is None,
            state=job.state,
            done=job.done,
            total=job.total,
            error=job.error,
            created_at=job.created_at,
            finished_at=job.finished_at,
            result=job.result,
        )
        for job in query
    ]


def _jobs():
    return Job.select(Job, Segment).join(Segment, JOIN.INNER)


@read_only
def jobs_in_flight(limit: int = 50) -> list[JobView]:
    unfinished = (JobState.QUEUED.value, JobState.RUNNING.value)
    return _job_views(_jobs().where(Job.state.in_(unfinished)).order_by(Job.id).limit(limit))


@read_only
def recent_jobs(state: JobState, limit: int) -> list[JobView]:
    """The latest jobs that ended in ``state`` (done or failed), newest first."""
    ended = _jobs().where(Job.state == state.value)
    return _job_views(ended.order_by(Job.id.desc()).limit(limit))


@read_only
def segment_jobs(name: str, limit: int = 5) -> list[JobView]:
    """The live segment's latest jobs, newest first."""
    query = _jobs().where(Segment.name == name, Segment.is_live())
    return _job_views(query.order_by(Job.id.desc()).limit(limit))


@read_only
def job_view(job_id: int) -> JobView | None:
    found = _job_views(_jobs().where(Job.id == job_id))
    return found[0] if found else None


@dataclass(frozen=True)
class SessionHolder:
    """Who a console session belongs to: a key, or the root (API_TOKEN) when key_id
    is None."""

    key_id: int | None
    name: str | None
    scope: str


@unit_of_work
def start_session(nonce: str, expires_at: datetime, key_id: int | None) -> None:
    """Record a console login (and audit it); expired sessions are cleared as new ones
    start, so the table holds about one row per person logged in."""
    ConsoleSession.delete().where(ConsoleSession.expires_at < fn.now()).execute()
    ConsoleSession.insert(nonce=nonce, expires_at=expires_at, key=key_id).execute()
    audit.record("console.login", current_actor(), {"session_ends": expires_at.isoformat()})


@read_only
def session_holder(nonce: str) -> SessionHolder | None:
    """Who holds the session, if it was started here, not ended since, not past its end,
    and its key (if any) is neither revoked nor expired."""
    row = (
        ConsoleSession.select(ConsoleSession.key, ApiKey.name, ApiKey.scope)
        .join(ApiKey, JOIN.LEFT_OUTER)
        .where(
            ConsoleSession.nonce == nonce,
            ConsoleSession.expires_at > fn.now(),
            ConsoleSession.key.is_null()
            | (
                ApiKey.revoked_at.is_null()
                & (ApiKey.expires_at.is_null() | (ApiKey.expires_at > fn.now()))
            ),
        )
        .tuples()
        .first()
    )
    if row is None:
        return None
    key_id, name, scope = row
    return SessionHolder(key_id, name, scope or Scope.ADMIN.value)


@unit_of_work
def end_session(nonce: str) -> None:
    ConsoleSession.delete().where(ConsoleSession.nonce == nonce).execute()


@unit_of_work
def end_all_sessions() -> int:
    """End every console session (a lost laptop, a person leaving); returns how many."""
    return ConsoleSession.delete().where(ConsoleSession.expires_at > fn.now()).execute()
