"""Helpers the tests of imports share: a segment with users, what is staged, a claimed
import's first pass, the members as their sources."""

from __future__ import annotations

CSV = {"content-type": "text/csv"}


def setup_segment(client, name: str = "S", users=range(1, 11)) -> None:
    assert client.post("/segments", json={"segment": name}).status_code == 201
    for uid in users:
        client.post("/users", json={"id": uid})


def staged(sql) -> tuple[int, int]:
    """(jobs, staged ids): in the upload's batches, or moved into import_staging."""
    sql.execute(
        "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM import_staging) + "
        "(SELECT coalesce(sum(cardinality(ids)), 0) FROM import_upload_batches)"
    )
    return sql.fetchone()


def expand(job_id: int, owner: str) -> None:
    """Run a claimed import's first pass: its upload's batches into import_staging."""
    from models import imports, jobs

    while jobs.get_job(job_id).phase == imports.EXPAND:
        assert jobs.advance_job(job_id, owner, 1000, 30) is False


def members(sql, name: str = "S") -> dict[int, str]:
    sql.execute(
        "SELECT m.user_id, m.source FROM memberships m JOIN segments s ON s.id = m.segment_id "
        "WHERE s.name = %s AND s.deleted_at IS NULL",
        (name,),
    )
    return dict(sql.fetchall())
