"""The tables, as Peewee models. The DDL itself lives in ``models/migrations``."""

from __future__ import annotations

import peewee as pw
from playhouse.postgres_ext import BinaryJSONField

from models.db import BaseModel


class User(BaseModel):
    id = pw.BigIntegerField(primary_key=True)
    created_at = pw.DateTimeField()

    class Meta:
        table_name = "users"


class Segment(BaseModel):
    name = pw.CharField(max_length=64)
    salt = pw.TextField()
    auto_percent = pw.DecimalField(max_digits=5, decimal_places=2)
    created_at = pw.DateTimeField()
    # Soft delete: the row stays so history keeps the name; the live name is unique.
    deleted_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "segments"


class Membership(BaseModel):
    user = pw.ForeignKeyField(User, column_name="user_id")
    segment = pw.ForeignKeyField(Segment, column_name="segment_id")
    source = pw.TextField()  # 'manual' or 'auto': a percent decrease removes only 'auto'
    added_at = pw.DateTimeField()
    expires_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "memberships"
        primary_key = pw.CompositeKey("user", "segment")


class SegmentOptOut(BaseModel):
    """A user removed by hand from a segment; auto assignment never re-adds them."""

    user = pw.ForeignKeyField(User, column_name="user_id")
    segment = pw.ForeignKeyField(Segment, column_name="segment_id")
    created_at = pw.DateTimeField()

    class Meta:
        table_name = "segment_opt_outs"
        primary_key = pw.CompositeKey("segment", "user")


class HistoryEvent(BaseModel):
    id = pw.BigAutoField()
    user = pw.ForeignKeyField(User, column_name="user_id")
    segment = pw.ForeignKeyField(Segment, column_name="segment_id")
    operation = pw.TextField()  # 'add' or 'remove'
    reason = pw.TextField()  # manual, auto, ttl, segment_deleted, percent_change
    at = pw.DateTimeField()

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
    error = pw.TextField(null=True)
    attempts = pw.IntegerField()
    lease_owner = pw.TextField(null=True)
    lease_until = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField()
    started_at = pw.DateTimeField(null=True)
    finished_at = pw.DateTimeField(null=True)
    updated_at = pw.DateTimeField()

    class Meta:
        table_name = "jobs"
