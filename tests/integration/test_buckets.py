"""The bucket rule: Python (single users) and SQL (bulk jobs) must agree exactly."""

from __future__ import annotations

import random

import pytest

from models.buckets import BUCKETS, bucket, new_salt, threshold, threshold_sql

MAX_ID = 2**63 - 1


def _ids() -> list[int]:
    rng = random.Random(20230829)
    edges = [1, 2, 9, 10, 99, 100, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, MAX_ID - 1]
    edges.append(MAX_ID)
    ids = set(edges)
    ids.update(range(1, 5_001))
    while len(ids) < 20_000:
        ids.add(rng.randint(1, MAX_ID) if rng.random() < 0.7 else rng.randint(1, 10**7))
    return sorted(ids)


@pytest.mark.parametrize(
    "salt",
    [new_salt(), new_salt(), "0000000000000000", "", "salt:with:colons", "ÜÑíçødé-☃"],
)
def test_python_bucket_agrees_with_sql_segment_bucket(sql, salt):
    ids = _ids()
    sql.execute(
        "SELECT id, segment_bucket(%s, id) FROM unnest(%s::bigint[]) AS id ORDER BY id",
        (salt, ids),
    )
    in_sql = dict(sql.fetchall())
    assert len(in_sql) == len(ids)
    mismatches = [(i, bucket(salt, i), in_sql[i]) for i in ids if bucket(salt, i) != in_sql[i]]
    assert mismatches == [], mismatches[:10]
    assert bucket(salt, MAX_ID) == in_sql[MAX_ID]
    # The buckets cover the whole range, roughly evenly.
    values = list(in_sql.values())
    assert min(values) >= 0 and max(values) < BUCKETS
    assert len(set(values)) > 8_000


def test_python_threshold_agrees_with_sql_threshold_for_every_percent(sql):
    """Every percent a segment can hold (numeric(5,2), 0 to 100)."""
    sql.execute(
        f"SELECT p::text, {threshold_sql('p')} FROM"
        " (SELECT (g / 100.0)::numeric(5, 2) AS p FROM generate_series(0, 10000) g) t"
    )
    rows = sql.fetchall()
    assert len(rows) == BUCKETS + 1
    assert [(p, threshold(p)) for p, _ in rows] == rows
