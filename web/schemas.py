"""Request and response bodies. Decoding is strict: unknown fields, wrong types and values
out of range are rejected with a 400 that names the field."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated

import httpx
import msgspec
from litestar.openapi import ResponseSpec

from models.infra.settings import BrokerKind

MAX_USER_ID = 2**63 - 1
# (?!\n): Python's $ also matches before a final newline; "ABC\n" is not a name.
# (?!\.\.?$): "." and ".." are path steps to every HTTP client, so no path could read them.
NAME_PATTERN = r"^(?!\.\.?$)[A-Za-z0-9_.\-]{1,64}$(?!\n)"

SEGMENT_WORDS = "a segment name: 1-64 characters of A-Z a-z 0-9 _ - . (not . or ..)"
UserId = Annotated[int, msgspec.Meta(ge=1, le=MAX_USER_ID, description="user id, 1..2^63-1")]
SegmentName = Annotated[
    str,
    msgspec.Meta(
        pattern=NAME_PATTERN,
        description='1-64 characters of A-Z a-z 0-9 _ - ., not "." or ".."',
    ),
]
SegmentNames = Annotated[list[SegmentName], msgspec.Meta(min_length=1, max_length=1000)]
OptionalNames = Annotated[list[SegmentName], msgspec.Meta(max_length=1000)]
# web/body.py checks "decimals" on the number's exact text; multipleOf tells clients.
Percent = Annotated[
    float,
    msgspec.Meta(
        ge=0,
        le=100,
        description="0..100, at most two decimals",
        extra={"decimals": 2},
        extra_json_schema={"multipleOf": 0.01},
    ),
]
ActiveTime = Annotated[int, msgspec.Meta(gt=0, le=10 * 365 * 86400, description="seconds")]


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


class _HasPercent(Strict):
    auto_percent: Percent

    @property
    def percent(self) -> Decimal:
        # web/body.py let through only texts with at most two decimals, so the nearest
        # hundredth of the float is exactly the number the client wrote.
        return Decimal(self.auto_percent * 100).quantize(Decimal(1)) / 100


class SegmentCreate(_HasPercent, kw_only=True):
    segment: SegmentName
    auto_percent: Percent = 0
    layer: SegmentName | None = None  # a layer's name: the segment owns buckets of it


class SegmentRef(Strict):
    segment: SegmentName


class SegmentPercent(_HasPercent, kw_only=True):
    segment: SegmentName


class UserCreate(Strict):
    id: UserId


# With true, a user holding another segment of an added segment's layer is moved out of
# it (reason layer_move) instead of the request failing with a 409.
Move = Annotated[bool, msgspec.Meta(description="move out of the layer's other segment")]


class UserSegmentsAdd(Strict):
    id: UserId
    segments: SegmentNames
    active_time: ActiveTime | None = None
    move: Move = False


class UserSegmentsRemove(Strict):
    id: UserId
    segments: SegmentNames


class SegmentChanges(Strict):
    add: OptionalNames = []
    remove: OptionalNames = []
    active_time: ActiveTime | None = None
    move: Move = False

    def __post_init__(self) -> None:
        broken = []
        if not self.add and not self.remove:
            broken.append("at least one of `add` and `remove` must name a segment")
        if self.active_time is not None and not self.add:
            broken.append("`active_time` applies to added segments: it needs a non-empty `add`")
        if broken:
            raise ValueError("; ".join(broken))


WebhookUrl = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+(?::[0-9]{1,5})?(?:[/?][!-~]*)?$(?!\n)",
        max_length=2048,
        description="http:// or https:// URL the batches are POSTed to",
    ),
]
WebhookSecret = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[!-~]{16,200}$(?!\n)",
        description="16-200 printable ASCII characters; generated when absent",
    ),
]


_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _webhook_url_problem(url: str) -> str | None:
    """What is wrong with the URL's host or port (parsed as delivery parses it), if
    anything: a URL that can never be reached is refused at creation."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"`url`: {exc}"
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        return f"`url`: port {parsed.port} is not in 1-65535"
    host = parsed.host.removesuffix(".")
    if ":" in host:  # an IPv6 literal, which httpx has checked
        return None
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"`url`: {host} is not an IPv4 address"
        return None
    if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        return f"`url`: {parsed.host} is not a host name"
    return None


class WebhookCreate(Strict):
    url: WebhookUrl
    segments: SegmentNames | None = None
    secret: WebhookSecret | None = None

    def __post_init__(self) -> None:
        problem = _webhook_url_problem(self.url)
        if problem:
            raise ValueError(problem)


class UserSegments(msgspec.Struct):
    id: int
    segments: list[str]


class MembershipDetail(msgspec.Struct):
    segment: str
    source: str
    added_at: datetime
    expires_at: datetime | None
    added_by: str  # root, key:<name>, anonymous, system; unknown before it was recorded
    layer: str | None = None  # the segment's layer: the user holds no other of it


class UserMemberships(msgspec.Struct):
    id: int
    memberships: list[MembershipDetail]


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
    layer: str | None = None


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
    result: dict | None  # an import's counts: added, removed, unchanged, unknown_users


class Webhook(msgspec.Struct, omit_defaults=True):
    id: int
    url: str
    segments: list[str] | None
    created_at: datetime
    cursor: int
    delivered: int
    last_delivery_at: datetime | None
    last_error: str | None
    failures: int
    next_attempt_at: datetime
    pending: int | None = None
    secret: str | None = None  # only in the answer to its creation


class WebhookList(msgspec.Struct):
    webhooks: list[Webhook]


class ImportAccepted(msgspec.Struct):
    job_id: int
    segment: str
    ids: int  # distinct ids in the list


class Error(msgspec.Struct):
    status: int
    error: str
    details: dict | None = None


class ReplicaReadiness(msgspec.Struct):
    """Where reads go; a replica down or behind never makes /ready fail (the primary
    serves), it is only reported."""

    configured: bool
    serving: str  # "replica" or "primary"
    reason: str
    lag_ms: float | None


class Readiness(msgspec.Struct):
    status: str
    checks: dict[str, str]  # dependency -> "ok" or "down: <error kind>"
    broker: BrokerKind  # the broker BROKER_URL selects; its check is checks["broker"]
    replica: ReplicaReadiness


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
        (401, "Missing, unknown, expired or revoked bearer key (only when API_TOKEN is set)"),
        (403, "The key lacks the scope this route needs (the message names it)"),
        (429, "Too many failed authentications from this address (Retry-After)"),
        (404, "Unknown user, segment or job; unknown segments are all named"),
        (409, "Already exists"),
        (413, "Request body over 1 MiB"),
        (503, "Database unavailable"),
    ]
}

# The history reports can also answer 410: a month retention no longer keeps.
HISTORY_ERRORS = {
    **ERRORS,
    410: ResponseSpec(
        data_container=Error,
        description="A month older than HISTORY_RETENTION_MONTHS keeps: its events were dropped",
        generate_examples=False,
    ),
}


# SegmentChanges' rules across fields as JSON Schema, for the OpenAPI document: valid
# when `add` names a segment, or when `remove` does and there is no `active_time`.
_NAMES_ONE = {"type": "array", "minItems": 1}
CROSS_FIELD_SCHEMAS = {
    "SegmentChanges": {
        "anyOf": [
            {"required": ["add"], "properties": {"add": _NAMES_ONE}},
            {
                "required": ["remove"],
                "properties": {"remove": _NAMES_ONE},
                "not": {
                    "required": ["active_time"],
                    "properties": {"active_time": {"type": "integer"}},
                },
            },
        ]
    }
}
