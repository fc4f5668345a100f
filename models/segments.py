"""Segments: create, soft-delete, change the auto percentage, list and page members."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from peewee import JOIN, fn

from models import audit, jobs, layers
from models.buckets import new_salt, threshold
from models.csv_stream import keyset_lines, utc_stamp
from models.errors import Conflict, NotFound
from models.infra.db import fetchone, reader, unit_of_work
from models.infra.replica import replica_read
from models.tables import JobKind, Layer, Membership, Reason, ScheduleStep, Segment, StepState
from models.users import hold_auto_segments_exclusive


@dataclass(frozen=True)
class SegmentView:
    """A live segment as clients see it; ``job_id`` names the job a change started."""

    name: str
    auto_percent: Decimal
    created_at: datetime
    members: int | None = None
    job_id: int | None = None
    layer: str | None = None


def _view(segment: Segment, job_id: int | None = None) -> SegmentView:
    return SegmentView(
        name=segment.name,
        auto_percent=segment.auto_percent,
        created_at=segment.created_at,
        members=getattr(segment, "members", None),
        job_id=job_id,
        layer=getattr(segment, "layer_name", None),
    )


def _live(name: str):
    return Segment.select().where(Segment.name == name, Segment.is_live())


def _assign(segment: Segment, low: int, high: int, reason: Reason, taken) -> int | None:
    """Record the job that adds the users of buckets [low, high), or of the layer's
    buckets just taken (``taken``)."""
    if taken is not None:
        params = {"low_rank": taken.low, "high_rank": taken.high, "reason": reason.value}
    elif high > low and segment.layer_id is None:
        params = {"low": low, "high": high, "reason": reason.value}
    else:
        return None
    return jobs.create_job(JobKind.ASSIGN_AUTO, segment.id, params)


@unit_of_work
def create_segment(name: str, auto_percent: Decimal, layer: str | None = None) -> SegmentView:
    """With auto_percent > 0, the view carries the id of its assignment job. In a layer
    it takes auto_percent * 100 of the layer's buckets (409 if too few are free)."""
    if auto_percent > 0 or layer is not None:
        hold_auto_segments_exclusive()
    in_layer = layers.lock_layer(layer) if layer is not None else None
    created = list(
        Segment.insert(
            name=name, salt=new_salt(), auto_percent=auto_percent, layer=in_layer and in_layer.id
        )
        .on_conflict(
            conflict_target=[Segment.name],
            conflict_where=Segment.is_live(),
            action="IGNORE",
        )
        .returning(Segment)
        .execute()
    )
    if not created:
        raise Conflict(f"segment {name} already exists", segment=name)
    (segment,) = created
    taken = None
    if in_layer is not None:
        segment.layer_name = in_layer.name
        taken = layers.take(in_layer, segment.id, name, threshold(auto_percent))
    after = {"auto_percent": str(segment.auto_percent), "layer": layer}
    audit.record("segment.create", name, {"after": after})
    return _view(segment, _assign(segment, 0, threshold(auto_percent), Reason.AUTO, taken))


@unit_of_work
def delete_segment(name: str) -> SegmentView:
    """Hide the segment from every read at once, free its name, and record the job that
    removes its memberships (its id is in the view)."""
    # Like a percent change: a user being created either commits before the cleanup job
    # scans, or sees the segment as deleted and does not join it.
    hold_auto_segments_exclusive()
    # Lock first, stamp after: the clock is read once no batch or request holds the row,
    # so the deletion time comes after every add it ends.
    segment = _live_locked(name)
    Segment.update(deleted_at=fn.clock_timestamp()).where(Segment.id == segment.id).execute()
    if segment.layer_id is not None:
        layer = layers.lock_layer(layer_id=segment.layer_id)
        segment.layer_name = layer.name
        layers.give_back(layer, segment.id, None)
    # Its schedule ends with it (a step deleting it is marked done by its runner).
    ScheduleStep.delete().where(
        ScheduleStep.segment == segment.id, ScheduleStep.state == StepState.PENDING
    ).execute()
    audit.record("segment.delete", name, {"before": {"auto_percent": str(segment.auto_percent)}})
    return _view(segment, jobs.create_job(JobKind.CLEANUP_SEGMENT, segment.id, {}))


def _live_locked(name: str) -> Segment:
    segment = _live(name).for_update().first()
    if segment is None:
        raise NotFound(f"segment {name} not found", segment=name)
    return segment


@unit_of_work
def change_percent(name: str, auto_percent: Decimal) -> SegmentView:
    """Set a new percentage; growing adds buckets [old, new), shrinking removes auto
    members at or above new. The view names the job (None if unchanged)."""
    hold_auto_segments_exclusive()
    segment = _live_locked(name)
    old_t, new_t = threshold(segment.auto_percent), threshold(auto_percent)
    in_layer = None
    if segment.layer_id is not None:
        in_layer = layers.lock_layer(layer_id=segment.layer_id)
        segment.layer_name = in_layer.name
    taken = None
    if in_layer is not None and new_t > old_t:
        taken = layers.take(in_layer, segment.id, name, new_t - old_t)
    elif in_layer is not None and new_t < old_t:
        layers.give_back(in_layer, segment.id, old_t - new_t)
    Segment.update(auto_percent=auto_percent).where(Segment.id == segment.id).execute()
    before = segment.auto_percent
    segment.auto_percent = Decimal(auto_percent).quantize(Decimal("0.01"))
    audit.record(
        "segment.percent",
        name,
        {
            "before": {"auto_percent": str(before)},
            "after": {"auto_percent": str(segment.auto_percent)},
        },
    )
    job_id = _assign(segment, old_t, new_t, Reason.PERCENT_CHANGE, taken)
    if new_t < old_t:
        job_id = jobs.create_job(JobKind.SHRINK_AUTO, segment.id, {"low": new_t})
    return _view(segment, job_id)


def _live_members_count():
    return fn.COUNT(Membership.user).filter(Membership.is_live()).alias("members")


@replica_read
def list_segments() -> list[SegmentView]:
    query = (
        Segment.select(Segment.name, Segment.auto_percent, Segment.created_at)
        .select_extend(_live_members_count(), Layer.name.alias("layer_name"))
        .join(Membership, JOIN.LEFT_OUTER, on=(Membership.segment == Segment.id))
        .join_from(Segment, Layer, JOIN.LEFT_OUTER, on=(Layer.id == Segment.layer))
        .where(Segment.is_live())
        .group_by(Segment.id, Layer.id)
        .order_by(Segment.name)
        .objects()  # the layer's name on the segment, as layer_name
        .bind(reader())
    )
    return [_view(s) for s in query]


@replica_read
def get_segment(name: str) -> SegmentView:
    query = (
        _live(name)
        .select_extend(_live_members_count(), Layer.name.alias("layer_name"))
        .join(Membership, JOIN.LEFT_OUTER, on=(Membership.segment == Segment.id))
        .join_from(Segment, Layer, JOIN.LEFT_OUTER, on=(Layer.id == Segment.layer))
        .group_by(Segment.id, Layer.id)
        .objects()
        .bind(reader())
    )
    segment = query.first()
    if segment is None:
        raise NotFound(f"segment {name} not found", segment=name)
    return _view(segment)


@replica_read
def segment_members(name: str, after: int, limit: int) -> list[int]:
    """One page of the segment's live members, by user id, keyset-paginated."""
    if not _live(name).exists(reader()):
        raise NotFound(f"segment {name} not found", segment=name)
    query = (
        Membership.select(Membership.user)
        .join(Segment)
        .where(Segment.name == name, Membership.is_live(), Membership.user > after)
        .order_by(Membership.user)
        .limit(limit)
        .bind(reader())
    )
    return [user_id for (user_id,) in query.tuples()]


MEMBERS_CSV_HEADER = "user_id;source;added_at;expires_at\n"
MEMBERS_CSV_BATCH = 50_000


@replica_read
def _members_csv_batch(segment_id: int, after: int, limit: int) -> tuple[str, int, int | None]:
    """(up to ``limit`` lines, how many, the last user id)."""
    return fetchone(
        f"""WITH page AS (
               SELECT m.user_id,
                      m.user_id || ';' || m.source || ';' || {utc_stamp("m.added_at")}
                      || ';' || coalesce({utc_stamp("m.expires_at")}, '') || E'\\n' AS line
               FROM memberships m
               WHERE m.segment_id = %(segment)s AND m.user_id > %(after)s
                 AND {Membership.UNEXPIRED_SQL}
               ORDER BY m.user_id LIMIT %(limit)s
           )
           SELECT coalesce(string_agg(line, '' ORDER BY user_id), ''), count(*), max(user_id)
           FROM page""",
        {"segment": segment_id, "after": after, "limit": limit},
    )


def members_csv(name: str) -> Iterator[str]:
    """The live segment's live members as CSV, by user id, in keyset batches
    (models/csv_stream.py). Raises NotFound before the first line, so an unknown segment
    is a 404, not an empty file."""
    segment_id, size = _live_segment_id(name), MEMBERS_CSV_BATCH

    def batch(after: int) -> tuple[str, int, int | None]:
        return _members_csv_batch(segment_id, after, size)

    return keyset_lines(MEMBERS_CSV_HEADER, batch, size, first=0)


@replica_read
def _live_segment_id(name: str) -> int:
    segment = _live(name).select(Segment.id).first(reader())
    if segment is None:
        raise NotFound(f"segment {name} not found", segment=name)
    return segment.id
