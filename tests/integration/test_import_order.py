"""Imports racing each other, a manual change and a crash (issue 18, items 1, 2 and 13):
the import jobs of one segment run one at a time in the order they were recorded, a
replace removes only what was there when it started, and opts out only what it removed."""

from __future__ import annotations

from models import jobs
from models.infra.db import db
from models.verify import verify
from tests.integration.imports import CSV, expand, members, setup_segment
from tests.integration.jobs import run_unfinished_jobs


def start(client, body: bytes, query: str = "mode=replace") -> int:
    r = client.post(f"/segments/S/users?{query}", content=body, headers=CSV)
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def interleave(job_ids: list[int]) -> None:
    """Claim every job that can be claimed, then advance the claimed ones a batch of one
    id in turn, as workers racing each other would; the rest run afterwards."""
    claimed = [j for j in job_ids if jobs.claim_job(j, f"w{j}", 30)]
    while claimed:
        claimed = [j for j in claimed if not jobs.advance_job(j, f"w{j}", 1, 30)]
    run_unfinished_jobs()


def test_two_racing_replaces_end_with_the_later_list(client, sql):
    setup_segment(client)
    first, second = start(client, b"1\n2\n"), start(client, b"3\n4\n")
    assert not jobs.claim_job(second, "w", 30)  # waits for the first
    interleave([first, second])
    assert members(sql) == {3: "import", 4: "import"}
    assert [jobs.get_job(j).state for j in (first, second)] == ["done", "done"]
    assert verify()["ok"]


def test_the_order_holds_across_a_crashed_worker(client, sql):
    setup_segment(client)
    first, second = start(client, b"1\n2\n3\n"), start(client, b"4\n")
    assert jobs.claim_job(first, "crashed", 30)
    expand(first, "crashed")
    assert jobs.advance_job(first, "crashed", 1, 30) is False
    with db.connection_context():  # the worker died: its lease runs out
        db.execute_sql(
            "UPDATE jobs SET lease_until = now() - interval '1 s' WHERE id = %s", (first,)
        )
    assert not jobs.claim_job(second, "w", 30)  # the first is unfinished, not gone
    run_unfinished_jobs(batch=1)
    assert members(sql) == {4: "import"}
    assert verify()["ok"]


def test_a_merge_recorded_after_a_replace_is_applied_after_it(client, sql):
    setup_segment(client)
    client.patch("/users", json={"id": 9, "segments": ["S"]})
    replace, merge = start(client, b"1\n2\n"), start(client, b"5\n", query="mode=merge")
    interleave([merge, replace])
    assert members(sql) == {1: "import", 2: "import", 5: "import"}


def test_a_manual_add_made_while_a_replace_runs_stays(client, sql):
    setup_segment(client)
    client.patch("/users", json={"id": 7, "segments": ["S"]})
    job_id = start(client, b"1\n2\n3\n")
    assert jobs.claim_job(job_id, "w", 30)
    expand(job_id, "w")
    assert jobs.advance_job(job_id, "w", 1, 30) is False
    client.patch("/users", json={"id": 8, "segments": ["S"]})  # while the job runs
    while not jobs.advance_job(job_id, "w", 1, 30):
        pass
    assert members(sql) == {1: "import", 2: "import", 3: "import", 8: "manual"}
    assert verify()["ok"]


def test_a_replace_opts_out_only_the_members_it_removed(client, sql):
    setup_segment(client)
    client.patch("/users", json={"id": 1, "segments": ["S"]})
    client.patch("/segments", json={"segment": "S", "auto_percent": 100})
    run_unfinished_jobs()  # 2..10 become auto members
    job_id = start(client, b"2\n")
    run_unfinished_jobs()
    assert jobs.get_job(job_id).result["removed"] == 1
    assert members(sql) == {2: "import", **{u: "auto" for u in range(3, 11)}}
    sql.execute("SELECT user_id FROM segment_opt_outs ORDER BY 1")
    assert sql.fetchall() == [(1,)]  # not the auto members the replace kept
    assert verify()["ok"]
