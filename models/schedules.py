"""Scheduled changes of a segment: a new auto_percent, or its deletion, at a set time.

A step runs exactly once, with several schedulers and across crashes: a runner claims a
due step with FOR UPDATE SKIP LOCKED and, in that one transaction, makes the change (the
same domain call PATCH or DELETE /segments makes, which records its job) and marks the
step done. A runner killed mid-step rolls all of it back and the step stays due. A step
that cannot run (a full layer) is marked failed with its reason; later steps still run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from peewee import SQL, Tuple, fn

from models import audit, segments
from models.errors import DomainError, Invalid, NotFound
from models.infra.db import db, reader, reset_actor, set_actor, unit_of_work
from models.infra.replica import replica_read
from models.tables import ScheduleStep, Segment, StepState

MAX_STEPS = 100


@dataclass(frozen=True)
class Step:
    at: datetime  # with a zone
    auto_percent: Decimal | None = None
    delete: bool = False
    state: str = StepState.PENDING.value
    job_id: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Ran:
    """A step a runner took: the job its change recorded (send it after commit)."""

    step_id: int
    state: str
    job_id: int | None


def check_steps(steps: list[Step], now: datetime) -> None:
    """1-100 steps, each in the future, strictly increasing, a delete only last."""
    if not 1 <= len(steps) <= MAX_STEPS:
        raise Invalid(f"a schedule has 1 to {MAX_STEPS} steps, not {len(steps)}")
    for i, step in enumerate(steps):
        where = {"step": i}
        if step.at <= now:
            raise Invalid(f"step {i}: `at` {step.at.isoformat()} is not in the future", **where)
        if i and step.at <= steps[i - 1].at:
            raise Invalid(f"step {i}: `at` must be later than step {i - 1}'s", **where)
        if step.delete and i != len(steps) - 1:
            raise Invalid(f"step {i}: a delete step can only be the last", **where)


def _segment_id(name: str, lock: bool = False) -> int:
    query = Segment.select(Segment.id).where(Segment.name == name, Segment.is_live())
    segment = (query.for_update() if lock else query).first(db if lock else reader())
    if segment is None:
        raise NotFound(f"segment {name} not found", segment=name)
    return segment.id


def _pending(segment_id: int):
    return (ScheduleStep.segment == segment_id) & (ScheduleStep.state == StepState.PENDING)


@unit_of_work
def set_schedule(name: str, steps: list[Step]) -> list[Step]:
    """Replace the segment's pending steps with ``steps``. The segment row is locked, so
    a concurrent deletion either cancels these steps or finds the segment gone."""
    check_steps(steps, db.execute_sql("SELECT now()").fetchone()[0])
    segment_id = _segment_id(name, lock=True)
    before = _drop_pending(segment_id)
    ScheduleStep.insert_many(
        [
            {
                "segment": segment_id,
                "at": s.at,
                "auto_percent": s.auto_percent,
                "deletes": s.delete,
            }
            for s in steps
        ]
    ).execute()
    audit.record("segment.schedule", name, {"before": before, "after": _described(steps)})
    return _steps(segment_id)


@unit_of_work
def clear_schedule(name: str) -> list[Step]:
    segment_id = _segment_id(name, lock=True)
    before = _drop_pending(segment_id)
    audit.record("segment.schedule", name, {"before": before, "after": []})
    return _steps(segment_id)


def _described(steps: list[Step]) -> list[dict]:
    """Steps as the audit trail keeps them: the time and what happens then."""
    return [
        {
            "at": s.at.isoformat(),
            **({"delete": True} if s.delete else {"auto_percent": str(s.auto_percent)}),
        }
        for s in steps
    ]


def _drop_pending(segment_id: int) -> list[dict]:
    """Delete the segment's pending steps; what they were, for the audit trail."""
    dropped = ScheduleStep.delete().where(_pending(segment_id)).returning(ScheduleStep).execute()
    return _described([_step(s) for s in sorted(dropped, key=lambda s: s.at)])


@replica_read
def get_schedule(name: str) -> list[Step]:
    return _steps(_segment_id(name))


def _steps(segment_id: int) -> list[Step]:
    query = (
        ScheduleStep.select()
        .where(ScheduleStep.segment == segment_id)
        .order_by(ScheduleStep.at, ScheduleStep.id)
        .bind(reader())
    )
    return [_step(s) for s in query]


def _step(row: ScheduleStep) -> Step:
    return Step(row.at, row.auto_percent, row.deletes, row.state, row.job_id, row.error)


@unit_of_work
def run_due_step() -> Ran | None:
    """Run one due step, if any: its change, its job and its state in one transaction."""
    # A segment's steps run in their order: one whose earlier step is still pending (run
    # by another runner right now, its row locked) waits for it to commit.
    earlier = ScheduleStep.alias()
    waits = earlier.select(SQL("1")).where(
        earlier.segment == ScheduleStep.segment,
        earlier.state == StepState.PENDING,
        Tuple(earlier.at, earlier.id) < Tuple(ScheduleStep.at, ScheduleStep.id),
    )
    step = (
        ScheduleStep.select(ScheduleStep, Segment.name)
        .join(Segment)
        .where(
            ScheduleStep.state == StepState.PENDING,
            ScheduleStep.at <= fn.now(),
            ~fn.EXISTS(waits),
        )
        .order_by(ScheduleStep.at, ScheduleStep.id)
        .limit(1)
        .for_update("FOR UPDATE OF t1 SKIP LOCKED")  # t1: peewee's alias of the steps
        .objects()
        .first()
    )
    if step is None:
        return None
    # The change is the step's setter's: history, jobs and the audit trail record them
    # as its actor (the setting for the rows' defaults, the context for audit entries).
    db.execute_sql("SELECT set_config('segments.actor', %s, true)", (step.actor,))
    acting = set_actor(step.actor)
    # Marked done first: deleting the segment drops its pending steps, this one included.
    _finish(step.id, StepState.DONE, None, None)
    try:
        with db.atomic():  # a savepoint: a step that cannot run undoes only its own change
            if step.deletes:
                view = segments.delete_segment(step.name)
            else:
                view = segments.change_percent(step.name, step.auto_percent)
    except DomainError as exc:
        _finish(step.id, StepState.FAILED, None, exc.message)
        return Ran(step.id, StepState.FAILED.value, None)
    finally:
        reset_actor(acting)
    _finish(step.id, StepState.DONE, view.job_id, None)
    return Ran(step.id, StepState.DONE.value, view.job_id)


def _finish(step_id: int, state: StepState, job_id: int | None, error: str | None) -> None:
    ScheduleStep.update(state=state.value, job=job_id, error=error, ran_at=fn.now()).where(
        ScheduleStep.id == step_id
    ).execute()
