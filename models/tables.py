"""A Peewee model for every table, and the values its text columns may hold.

The DDL itself lives in ``models/migrations`` (CHECK constraints included); these models
match it column for column. Plain reads and single-row writes go through them; set-based
changes that must write their history event in the same statement are SQL next to the
rule they implement (``models/events.py`` is the one place that pairs them).
"""

from __future__ import annotations

from enum import StrEnum

import peewee as pw
from playhouse.postgres_ext import ArrayField, BinaryJSONField

from models.infra.db import BaseModel


class Source(StrEnum):
    """Why a membership exists: a person added it, or the auto_percent rule did."""

    MANUAL = "manual"
    AUTO = "auto"
    IMPORT = "import"


class Operation(StrEnum):
    ADD = "add"
    REMOVE = "remove"


class Reason(StrEnum):
    MANUAL = "manual"
    AUTO = "auto"
    TTL = "ttl"
    SEGMENT_DELETED = "segment_deleted"
    PERCENT_CHANGE = "percent_change"
    IMPORT = "import"
    LAYER_MOVE = "layer_move"


class JobKind(StrEnum):
    ASSIGN_AUTO = "assign_auto"
    SHRINK_AUTO = "shrink_auto"
    CLEANUP_SEGMENT = "cleanup_segment"
    IMPORT = "import"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class User(BaseModel):
    id = pw.BigIntegerField(primary_key=True)
    created_at = pw.DateTimeField()

    class Meta:
        table_name = "users"


class Layer(BaseModel):
    """Segments that never share a user: each owns buckets of the layer's 10,000."""

    name = pw.CharField(max_length=64, collation="C")
    salt = pw.TextField()
    created_at = pw.DateTimeField()
    deleted_at = pw.DateTimeField(null=True)
    last_rank = pw.BigIntegerField()

    class Meta:
        table_name = "layers"


class Segment(BaseModel):
    # "C": names sort by their bytes everywhere, as Python sorts them, whatever the
    # database's default collation is.
    name = pw.CharField(max_length=64, collation="C")
    salt = pw.TextField()
    auto_percent = pw.DecimalField(max_digits=5, decimal_places=2)
    created_at = pw.DateTimeField()
    # Soft delete: the row stays so history keeps the name; the live name is unique.
    deleted_at = pw.DateTimeField(null=True)
    layer = pw.ForeignKeyField(Layer, column_name="layer_id", null=True)

    class Meta:
        table_name = "segments"

    @classmethod
    def is_live(cls) -> pw.Expression:
        """A segment is live until it is deleted (the one spelling of the rule)."""
        return cls.deleted_at.is_null()


class LayerBucket(BaseModel):
    """A bucket of a layer: free (never used or released) or owned by one segment."""

    layer = pw.ForeignKeyField(Layer, column_name="layer_id")
    bucket = pw.SmallIntegerField()
    segment = pw.ForeignKeyField(Segment, column_name="segment_id", null=True)
    taken_rank = pw.BigIntegerField(null=True)
    released_rank = pw.BigIntegerField(null=True)

    class Meta:
        table_name = "layer_buckets"
        primary_key = pw.CompositeKey("layer", "bucket")


class Membership(BaseModel):
    user = pw.ForeignKeyField(User, column_name="user_id")
    segment = pw.ForeignKeyField(Segment, column_name="segment_id")
    source = pw.TextField(choices=[(s.value, s.value) for s in Source])
    added_at = pw.DateTimeField()
    expires_at = pw.DateTimeField(null=True)
    added_by = pw.TextField()
    layer = pw.IntegerField(column_name="layer_id", null=True)  # set by a trigger

    class Meta:
        table_name = "memberships"
        primary_key = pw.CompositeKey("user", "segment")

    # A membership is live while it has not expired and its segment is live; reads
    # filter on this, so an expired membership disappears at once, swept or not. As SQL
    # over the aliases m (memberships) and s (segments), for the prepared hot reads:
    UNEXPIRED_SQL = "(m.expires_at IS NULL OR m.expires_at > now())"
    LIVE_SQL = "s.deleted_at IS NULL AND " + UNEXPIRED_SQL

    @classmethod
    def is_unexpired(cls) -> pw.Expression:
        return cls.expires_at.is_null() | (cls.expires_at > pw.SQL("now()"))

    @classmethod
    def is_live(cls) -> pw.Expression:
        """The rule as a Peewee expression; the query must join Segment."""
        return Segment.is_live() & cls.is_unexpired()


class OptOut(BaseModel):
    """A person removed the user from the segment: auto assignment leaves them out."""

    segment = pw.ForeignKeyField(Segment, column_name="segment_id")
    user = pw.ForeignKeyField(User, column_name="user_id")
    created_at = pw.DateTimeField()

    class Meta:
        table_name = "segment_opt_outs"
        primary_key = pw.CompositeKey("segment", "user")


class HistoryEvent(BaseModel):
    id = pw.BigAutoField()
    user = pw.ForeignKeyField(User, column_name="user_id")
    segment = pw.ForeignKeyField(Segment, column_name="segment_id")
    operation = pw.TextField()
    reason = pw.TextField()
    at = pw.DateTimeField()
    actor = pw.TextField()

    class Meta:
        table_name = "history"


class Job(BaseModel):
    id = pw.BigAutoField()
    kind = pw.TextField()
    segment = pw.ForeignKeyField(Segment, column_name="segment_id")
    params = BinaryJSONField()
    state = pw.TextField()
    done = pw.BigIntegerField()
    total = pw.BigIntegerField(null=True)
    checkpoint = pw.BigIntegerField()
    phase = pw.SmallIntegerField()  # a job of several passes: which one it is in
    result = BinaryJSONField(null=True)  # counts a finished job reports (imports)
    error = pw.TextField(null=True)
    attempts = pw.IntegerField()
    lease_owner = pw.TextField(null=True)
    lease_until = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField()
    started_at = pw.DateTimeField(null=True)
    finished_at = pw.DateTimeField(null=True)
    updated_at = pw.DateTimeField()
    actor = pw.TextField()  # who started it: every event it writes carries it

    class Meta:
        table_name = "jobs"


class ImportKey(BaseModel):
    """An upload's Idempotency-Key: a repeat of the same body gets the same job."""

    key = pw.TextField(primary_key=True)
    body_sha256 = pw.TextField()
    job = pw.ForeignKeyField(Job, column_name="job_id")
    ids = pw.BigIntegerField(null=True)  # the distinct ids the first request staged
    created_at = pw.DateTimeField()

    class Meta:
        table_name = "import_keys"


class Webhook(BaseModel):
    id = pw.BigAutoField()
    url = pw.TextField()
    segments = ArrayField(pw.TextField, null=True)  # names; None: every segment
    secret = pw.TextField()
    created_at = pw.DateTimeField()
    cursor_txid = pw.TextField()  # xid8, as text
    cursor_id = pw.BigIntegerField()
    delivered = pw.BigIntegerField()
    last_delivery_at = pw.DateTimeField(null=True)
    last_error = pw.TextField(null=True)
    failures = pw.IntegerField()
    next_attempt_at = pw.DateTimeField()
    lease_until = pw.DateTimeField(null=True)

    class Meta:
        table_name = "webhooks"


class Scope(StrEnum):
    """What a key may do; each includes the ones before it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    def allows(self, needed: Scope) -> bool:
        return _RANK[self] >= _RANK[needed]


_RANK = {scope: rank for rank, scope in enumerate(Scope)}


class ApiKey(BaseModel):
    id = pw.BigAutoField()
    name = pw.TextField()
    scope = pw.TextField(choices=[(s.value, s.value) for s in Scope])
    prefix = pw.TextField()  # the key's first characters, shown to tell keys apart
    hash = pw.TextField()  # hex SHA-256 of the key; the key itself is never stored
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField(null=True)
    last_used_at = pw.DateTimeField(null=True)
    revoked_at = pw.DateTimeField(null=True)
    rotated_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "api_keys"


class AuditEntry(BaseModel):
    id = pw.BigAutoField()
    at = pw.DateTimeField()
    actor = pw.TextField()
    action = pw.TextField()
    target = pw.TextField()
    details = BinaryJSONField()
    request_id = pw.TextField(null=True)

    class Meta:
        table_name = "audit"


class StepState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class ScheduleStep(BaseModel):
    """A change of a segment at a set time: a new auto_percent, or its deletion."""

    id = pw.BigAutoField()
    segment = pw.ForeignKeyField(Segment, column_name="segment_id")
    at = pw.DateTimeField()
    auto_percent = pw.DecimalField(max_digits=5, decimal_places=2, null=True)
    deletes = pw.BooleanField(column_name="delete")  # not `delete`: Model.delete
    state = pw.TextField()
    job = pw.ForeignKeyField(Job, column_name="job_id", null=True)
    error = pw.TextField(null=True)
    actor = pw.TextField()
    created_at = pw.DateTimeField()
    ran_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "schedule_steps"


class ConsoleSession(BaseModel):
    nonce = pw.TextField(primary_key=True)
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField()
    key = pw.ForeignKeyField(ApiKey, column_name="key_id", null=True)  # None: API_TOKEN

    class Meta:
        table_name = "console_sessions"
