"""Bulk job batches keep their plan on tables loaded since their last ANALYZE: each
batch reads about its own rows, read from the batch's EXPLAIN ANALYZE (auto_explain,
sent to this client), not timed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from models import jobs
from models.infra.db import db
from models.job_batches import assign_batch, cleanup_batch, shrink_batch
from tests.integration.jobs import drain

USERS = 6000
SIZE = 500
TABLES = ("users", "memberships")


@pytest.fixture
def no_statistics(sql) -> Iterator[None]:
    """The state right after a bulk load: no statistics, and autovacuum not taking any."""
    for table in TABLES:
        sql.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
    yield
    for table in TABLES:
        sql.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")


def _forget_statistics(sql) -> None:
    sql.execute(
        "DELETE FROM pg_statistic WHERE starelid = ANY(%s::regclass[]);"
        "UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = ANY(%s::regclass[])",
        (list(TABLES), list(TABLES)),
    )


def _rows_read(batch, job_id: int) -> dict[str, int]:
    """Run one batch of the job and roll it back; the rows each table's scans read."""
    job = jobs.get_job(job_id)
    with db.connection_context(), db.atomic() as transaction:
        db.execute_sql("LOAD 'auto_explain'")
        db.execute_sql(
            "SET LOCAL auto_explain.log_min_duration = 0; SET LOCAL auto_explain.log_analyze = on;"
            "SET LOCAL auto_explain.log_format = json; SET LOCAL client_min_messages = log"
        )
        connection = db.connection()
        del connection.notices[:]
        batch(job, SIZE)
        notices = list(connection.notices)
        transaction.rollback()
    read: dict[str, int] = {}
    for notice in notices:
        if "plan:" in notice:
            _count(json.loads(notice.split("plan:", 1)[1])["Plan"], read)
    return read


def _count(node: dict, read: dict[str, int]) -> None:
    table = node.get("Relation Name")
    if table in (*TABLES, "layer_buckets") and node["Node Type"] != "ModifyTable":
        rows = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
        read[table] = read.get(table, 0) + rows * node["Actual Loops"]
    for child in node.get("Plans", ()):
        _count(child, read)


def _segment(client, sql, percent: float) -> int:
    sql.execute("INSERT INTO users (id) SELECT generate_series(1, %s)", (USERS,))
    r = client.post("/segments", json={"segment": "FRESH", "auto_percent": percent})
    return r.json().get("job_id")


def test_an_assignment_batch_reads_its_own_users(client, sql, no_statistics):
    job_id = _segment(client, sql, 50)
    _forget_statistics(sql)
    read = _rows_read(assign_batch, job_id)
    assert 0 < read["users"] <= 3 * SIZE, read


def _shrink(client) -> dict:
    return client.patch("/segments", json={"segment": "FRESH", "auto_percent": 10}).json()


def _delete(client) -> dict:
    return client.request("DELETE", "/segments", json={"segment": "FRESH"}).json()


@pytest.mark.parametrize(("batch", "start"), [(shrink_batch, _shrink), (cleanup_batch, _delete)])
def test_a_batch_over_members_reads_its_own(client, sql, no_statistics, batch, start):
    _segment(client, sql, 100)
    drain()
    _forget_statistics(sql)
    read = _rows_read(batch, start(client)["job_id"])
    assert 0 < read["memberships"] <= 3 * SIZE, read


def test_a_big_job_leaves_memberships_analyzed(client, sql, no_statistics):
    sql.execute("INSERT INTO users (id) SELECT generate_series(1, %s)", (jobs.ANALYZE_AFTER,))
    client.post("/segments", json={"segment": "BIG", "auto_percent": 100})
    _forget_statistics(sql)
    drain()
    sql.execute("SELECT reltuples FROM pg_class WHERE oid = 'memberships'::regclass")
    assert sql.fetchone()[0] == jobs.ANALYZE_AFTER


def test_a_layered_batch_looks_up_each_users_bucket_once(client, sql):
    """In a layer that is half taken, a batch of another segment of it reads about one
    bucket row per user; looking for a user's bucket among all of its segment's buckets
    (md5 each time) made every job of a filling layer slower (0.8 s to 27 s)."""
    sql.execute("INSERT INTO users (id) SELECT generate_series(1, %s)", (USERS,))
    client.post("/layers", json={"layer": "L"})
    client.post("/segments", json={"segment": "HALF", "layer": "L", "auto_percent": 50})
    drain()
    sql.execute("ANALYZE users, memberships, layer_buckets")  # the plan a settled table gets
    job_id = client.post(
        "/segments", json={"segment": "NEXT", "layer": "L", "auto_percent": 20}
    ).json()["job_id"]
    read = _rows_read(assign_batch, job_id)
    # NEXT's own 2,000 buckets once, then a lookup per user of the batch.
    assert 0 < read["layer_buckets"] <= 2000 + 3 * SIZE, read
