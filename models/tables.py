"""Peewee models for the rows read or written one at a time. Set-based work (bulk
assignment, sweeps, history) is SQL through the same database object, next to the rule
it implements. The DDL itself lives in ``models/migrations``."""

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
