"""/segments/{name}/schedule: changes of a segment that the scheduler runs at set times."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import msgspec
from litestar import Controller, delete, put
from litestar.params import JSONBody

from models import schedules
from models.schedules import Step
from web.auth import ADMIN, READ, SCOPE
from web.methods import get_and_head, options_handler
from web.routes import params
from web.schemas import ERRORS, Percent, Strict

# RFC 3339 with its zone: a time without one would mean whatever the server's zone is.
RFC3339 = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$(?!\n)"
)
At = Annotated[
    str,
    msgspec.Meta(
        pattern=RFC3339,
        description="RFC 3339 time with a zone (Z or +hh:mm), in the future",
        extra_json_schema={"format": "date-time"},
    ),
]


class StepIn(Strict, kw_only=True):
    at: At
    auto_percent: Percent | None = None
    delete: bool | None = None

    def __post_init__(self) -> None:
        if (self.auto_percent is None) == (self.delete is None):
            raise ValueError('a step has exactly one of `auto_percent` and `"delete": true`')
        if self.delete is False:
            raise ValueError("`delete` can only be true (leave it out to change the percent)")
        if self.auto_percent is not None:
            exact = Decimal(str(self.auto_percent))
            if exact != exact.quantize(Decimal("0.01")):
                raise ValueError("`auto_percent` has at most two decimals")
        try:
            datetime.fromisoformat(self.at.upper().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"`at` {self.at!r} is not a valid time") from None

    def step(self) -> Step:
        at = datetime.fromisoformat(self.at.upper().replace("Z", "+00:00"))
        percent = None if self.auto_percent is None else Decimal(str(self.auto_percent))
        return Step(at=at, auto_percent=percent, delete=bool(self.delete))


class ScheduleIn(Strict):
    steps: Annotated[list[StepIn], msgspec.Meta(min_length=1, max_length=schedules.MAX_STEPS)]


class StepOut(msgspec.Struct, omit_defaults=True):
    at: datetime
    state: str  # pending, done or failed
    job_id: int | None
    error: str | None
    auto_percent: float | None = None
    delete: bool | None = None


class Schedule(msgspec.Struct):
    segment: str
    steps: list[StepOut]


def _schedule(name: str, steps: list[Step]) -> Schedule:
    return Schedule(
        segment=name,
        steps=[
            StepOut(
                at=s.at,
                state=s.state,
                job_id=s.job_id,
                error=s.error,
                auto_percent=None if s.auto_percent is None else _number(s.auto_percent),
                delete=True if s.delete else None,
            )
            for s in steps
        ],
    )


def _number(value: Decimal) -> float:
    return int(value) if value == value.to_integral_value() else float(value)


class ScheduleController(Controller):
    path = "/segments/{name:str}/schedule"
    tags = ["schedules"]
    options = options_handler()

    @put(
        "/",
        sync_to_thread=True,
        responses=ERRORS,
        summary="Replace the segment's pending scheduled steps",
        opt={SCOPE: ADMIN},
    )
    def replace(self, name: params.NamePath, data: JSONBody[ScheduleIn]) -> Schedule:
        """Each step: `at` (RFC 3339 with a zone, in the future, strictly increasing) and
        exactly one of `auto_percent` or `"delete": true` (last only); 1-100 steps."""
        name = params.segment_name(name)
        return _schedule(name, schedules.set_schedule(name, [s.step() for s in data.steps]))

    @get_and_head(
        "/",
        sync_to_thread=True,
        responses=ERRORS,
        summary="The segment's scheduled steps",
        opt={SCOPE: READ},
    )
    def read(self, name: params.NamePath) -> Schedule:
        name = params.segment_name(name)
        return _schedule(name, schedules.get_schedule(name))

    @delete(
        "/",
        status_code=200,
        sync_to_thread=True,
        responses=ERRORS,
        summary="Drop the segment's pending steps",
        opt={SCOPE: ADMIN},
    )
    def clear(self, name: params.NamePath) -> Schedule:
        name = params.segment_name(name)
        return _schedule(name, schedules.clear_schedule(name))
