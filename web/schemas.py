"""Request and response bodies. Decoding is strict: unknown fields, wrong types and values
out of range are rejected with a 400 that names the field."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import msgspec
from litestar.openapi import ResponseSpec

MAX_USER_ID = 2**63 - 1
# (?!\n): Python's $ also matches before a final newline; "ABC\n" is not a name.
NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$(?!\n)"

UserId = Annotated[int, msgspec.Meta(ge=1, le=MAX_USER_ID, description="user id, 1..2^63-1")]
SegmentName = Annotated[
    str,
    msgspec.Meta(pattern=NAME_PATTERN, description="1-64 characters of A-Z a-z 0-9 _ - ."),
]
SegmentNames = Annotated[list[SegmentName], msgspec.Meta(min_length=1, max_length=1000)]
OptionalNames = Annotated[list[SegmentName], msgspec.Meta(max_length=1000)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100, description="0..100, at most two decimals")]
ActiveTime = Annotated[int, msgspec.Meta(gt=0, le=10 * 365 * 86400, description="seconds")]


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


class _HasPercent(Strict):
    auto_percent: Percent

    def __post_init__(self) -> None:
        if abs(self.auto_percent * 100 - round(self.auto_percent * 100)) > 1e-6:
            raise ValueError("`auto_percent` allows at most two decimals")

    @property
    def percent(self) -> Decimal:
        return Decimal(self.auto_percent * 100).quantize(Decimal(1)) / 100


class SegmentCreate(_HasPercent, kw_only=True):
    segment: SegmentName
    auto_percent: Percent = 0


class SegmentRef(Strict):
    segment: SegmentName


class SegmentPercent(_HasPercent, kw_only=True):
    segment: SegmentName


class UserCreate(Strict):
    id: UserId


class UserSegmentsAdd(Strict):
    id: UserId
    segments: SegmentNames
    active_time: ActiveTime | None = None


class UserSegmentsRemove(Strict):
    id: UserId
    segments: SegmentNames


class SegmentChanges(Strict):
    add: OptionalNames = []
    remove: OptionalNames = []
    active_time: ActiveTime | None = None

    def __post_init__(self) -> None:
        if not self.add and not self.remove:
            raise ValueError("at least one of `add` and `remove` must name a segment")


class UserSegments(msgspec.Struct):
    id: int
    segments: list[str]


class SegmentChangesResult(msgspec.Struct):
    id: int
    added: list[str]
    removed: list[str]


class Segment(msgspec.Struct, omit_defaults=True):
    segment: str
    auto_percent: float
    created_at: datetime
    members: int | None = None
    job_id: int | None = None


class SegmentList(msgspec.Struct):
    segments: list[Segment]


class SegmentMembers(msgspec.Struct):
    segment: str
    users: list[int]
    next_after: int | None


class Job(msgspec.Struct):
    id: int
    kind: str
    segment_id: int
    state: str
    done: int
    total: int | None
    error: str | None
    attempts: int
    params: dict
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class Error(msgspec.Struct):
    status: int
    error: str
    details: dict | None = None


class Readiness(msgspec.Struct):
    status: str
    checks: dict[str, str]


class UserLookup(Strict):
    # Up to 1000 entries as sent; duplicates are collapsed after that check.
    ids: Annotated[list[UserId], msgspec.Meta(min_length=1, max_length=1000)]


class UserLookupResult(msgspec.Struct):
    users: list[UserSegments]
    unknown: list[int]


# Every error a handler may answer with, so the OpenAPI document describes real responses.
ERRORS = {
    code: ResponseSpec(data_container=Error, description=description, generate_examples=False)
    for code, description in [
        (400, "Invalid input: the message names the field or value"),
        (401, "Missing or wrong bearer token (only when API_TOKEN is set)"),
        (404, "Unknown user, segment or job; unknown segments are all named"),
        (409, "Already exists"),
        (413, "Request body over 1 MiB"),
        (503, "Database unavailable"),
    ]
}
