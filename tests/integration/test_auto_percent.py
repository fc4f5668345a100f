"""auto_percent, percent changes, segment deletion, TTL and job leases, on the real database.

The app runs in-process (``client``); bulk jobs run through the real actor on Dramatiq's
StubBroker and Worker (tests/integration/jobs.py); the lease tests drive ``claim_job`` /
``advance_job`` by hand to interleave two holders.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import psycopg2

from models import jobs
from models.buckets import bucket
from models.infra.db import db
from models.memberships import expire_memberships
from models.segments import delete_segment
from models.users import create_user
from tests.integration.auto_segments import (
    add_users,
    change_percent,
    create_auto,
    events,
    members,
    page_all,
    segment,
)
from tests.integration.jobs import resend_job, run_job

MAX_ID = 2**63 - 1


# --- assignment on creation ----------------------------------------------------------------


def test_auto_percent_10_on_10000_users(client, sql):
    add_users(sql, 1, 10_000)
    job_id = create_auto(client, "TEN", 10)
    seg_id, salt = segment(sql, "TEN")

    queued = client.get(f"/jobs/{job_id}").json()
    assert queued["state"] == "queued" and queued["kind"] == "assign_auto"

    job = run_job(job_id, batch=777)
    assert job.state == "done" and job.error is None
    assert job.done == job.total == 10_000
    api_job = client.get(f"/jobs/{job_id}").json()
    assert api_job["state"] == "done" and api_job["done"] == api_job["total"] == 10_000

    expected = {u for u in range(1, 10_001) if bucket(salt, u) < 1000}
    got = members(sql, seg_id)
    assert got == expected
    assert 850 <= len(got) <= 1150

    # Stable across reads, and the same through every read path.
    first = page_all(client, "TEN")
    assert first == sorted(expected)
    assert page_all(client, "TEN") == first
    assert client.get("/segments/TEN").json()["members"] == len(expected)
    for uid in list(sorted(expected))[:20] + [u for u in range(1, 200) if u not in expected][:20]:
        want = ["TEN"] if uid in expected else []
        assert client.get(f"/users/{uid}").json() == {"id": uid, "segments": want}

    # Exactly one auto add event per member, nothing else.
    evs = events(sql, seg_id)
    assert Counter((u, op, reason) for u, op, reason, _ in evs) == Counter(
        {(u, "add", "auto"): 1 for u in expected}
    )

    # A duplicate delivery of the message does nothing.
    assert jobs.claim_job(job_id, "late-duplicate", 30) is False
    assert len(events(sql, seg_id)) == len(expected)


def test_new_user_gets_exactly_the_auto_segments_it_falls_in(client, sql):
    for name, pct in [("A10", 10), ("A50", 50), ("A90", 90), ("A12_34", 12.34)]:
        assert run_job(create_auto(client, name, pct)).state == "done"
    assert client.post("/segments", json={"segment": "MANUAL"}).status_code == 201
    run_job(create_auto(client, "GONE", 100))
    assert client.request("DELETE", "/segments", json={"segment": "GONE"}).status_code == 200
    segs = {name: segment(sql, name) for name in ["A10", "A50", "A90", "A12_34"]}
    thresholds = {"A10": 1000, "A50": 5000, "A90": 9000, "A12_34": 1234}

    ids = [*range(1, 301), MAX_ID, MAX_ID - 1, 2**32]
    for uid in ids:
        r = client.post("/users", json={"id": uid})
        assert r.status_code == 201, r.text
        want = sorted(n for n, (_, salt) in segs.items() if bucket(salt, uid) < thresholds[n])
        assert r.json() == {"id": uid, "segments": want}, uid
        assert client.get(f"/users/{uid}").json()["segments"] == want

    for name, (seg_id, salt) in segs.items():
        expected = {u for u in ids if bucket(salt, u) < thresholds[name]}
        assert members(sql, seg_id) == expected, name
        evs = events(sql, seg_id)
        assert sorted((u, op, reason) for u, op, reason, _ in evs) == sorted(
            (u, "add", "auto") for u in expected
        ), name
    assert client.post("/users", json={"id": 5}).status_code == 409


# --- percent changes -----------------------------------------------------------------------


def test_growth_10_to_30_adds_exactly_buckets_1000_to_3000(client, sql):
    add_users(sql, 1, 10_000)
    run_job(create_auto(client, "GROW", 10))
    seg_id, salt = segment(sql, "GROW")
    before = members(sql, seg_id)
    # One member removed by hand: growth must not bring it back.
    removed = min(before)
    r = client.request("DELETE", "/users", json={"id": removed, "segments": ["GROW"]})
    assert r.json() == {"id": removed, "segments": ["GROW"]}
    before.discard(removed)
    events_before = len(events(sql, seg_id))

    job_id = change_percent(client, "GROW", 30)
    job = run_job(job_id, batch=1234)
    assert job.state == "done" and job.done == job.total == 10_000
    assert job.params == {"low": 1000, "high": 3000, "reason": "percent_change"}

    after = members(sql, seg_id)
    assert after >= before
    added = after - before
    assert added == {u for u in range(1, 10_001) if 1000 <= bucket(salt, u) < 3000}
    assert removed not in after
    assert after == {u for u in range(1, 10_001) if bucket(salt, u) < 3000} - {removed}

    new_events = events(sql, seg_id)[events_before:]
    assert sorted((u, op, reason) for u, op, reason, _ in new_events) == sorted(
        (u, "add", "percent_change") for u in added
    )


def test_shrink_30_to_5_removes_only_auto_members_at_or_above_500(client, sql):
    add_users(sql, 1, 10_000)
    run_job(create_auto(client, "SHRINK", 30))
    seg_id, salt = segment(sql, "SHRINK")
    before = members(sql, seg_id)
    assert before == {u for u in range(1, 10_001) if bucket(salt, u) < 3000}

    # An auto member with a high bucket, made manual by a person re-adding it; and a
    # user outside the auto range added by hand.
    held = next(u for u in sorted(before) if bucket(salt, u) >= 2500)
    outsider = next(u for u in range(1, 10_001) if bucket(salt, u) >= 9000)
    for uid in (held, outsider):
        r = client.patch("/users", json={"id": uid, "segments": ["SHRINK"]})
        assert r.json() == {"id": uid, "segments": ["SHRINK"]}
    events_before = len(events(sql, seg_id))

    job_id = change_percent(client, "SHRINK", 5)
    job = run_job(job_id, batch=333)
    assert job.state == "done" and job.kind == "shrink_auto"
    assert job.done == job.total == len(before) + 1

    after = members(sql, seg_id)
    gone = (before | {outsider}) - after
    assert gone == {u for u in before if bucket(salt, u) >= 500} - {held}
    assert held in after and outsider in after
    assert after == {u for u in before if bucket(salt, u) < 500} | {held, outsider}
    assert client.get(f"/users/{held}").json()["segments"] == ["SHRINK"]

    new_events = events(sql, seg_id)[events_before:]
    assert sorted((u, op, reason) for u, op, reason, _ in new_events) == sorted(
        (u, "remove", "percent_change") for u in gone
    )


def test_user_removed_by_hand_is_not_re_added_by_a_later_growth(client, sql):
    add_users(sql, 1, 5_000)
    run_job(create_auto(client, "OPT", 10))
    seg_id, salt = segment(sql, "OPT")
    # Members with bucket in [500, 1000): a shrink to 5 then growth to 30 re-adds that range.
    victims = [u for u in sorted(members(sql, seg_id)) if 500 <= bucket(salt, u) < 1000][:5]
    assert len(victims) == 5
    for uid in victims:
        r = client.request("DELETE", "/users", json={"id": uid, "segments": ["OPT"]})
        assert r.json() == {"id": uid, "segments": ["OPT"]}

    run_job(change_percent(client, "OPT", 5))
    run_job(change_percent(client, "OPT", 30))

    expected = {u for u in range(1, 5_001) if bucket(salt, u) < 3000} - set(victims)
    assert members(sql, seg_id) == expected
    for uid in victims:
        assert client.get(f"/users/{uid}").json()["segments"] == []
        ops = [(op, reason) for u, op, reason, _ in events(sql, seg_id) if u == uid]
        assert ops == [("add", "auto"), ("remove", "manual")]

    # A person adding it back is allowed, and then it is a normal manual member.
    r = client.patch("/users", json={"id": victims[0], "segments": ["OPT"]})
    assert r.json()["segments"] == ["OPT"]
    run_job(change_percent(client, "OPT", 1))
    assert victims[0] in members(sql, seg_id)


# --- segment deletion ------------------------------------------------------------------------


def test_segment_delete_cleanup_job(client, sql):
    add_users(sql, 1, 3_000)
    run_job(create_auto(client, "DOOMED", 50))
    seg_id, salt = segment(sql, "DOOMED")
    # Some manual members with a TTL, some of which expired (unswept) before deletion.
    outsiders = [u for u in range(1, 3_001) if bucket(salt, u) >= 5000][:30]
    r = client.patch("/users", json={"id": outsiders[0], "segments": ["DOOMED"]})
    assert r.status_code == 200
    for uid in outsiders[1:]:
        r = client.patch("/users", json={"id": uid, "segments": ["DOOMED"], "active_time": 3600})
        assert r.status_code == 200
    expired = outsiders[1:11]
    sql.execute(
        """UPDATE memberships SET expires_at = now() - (user_id %% 50 + 1) * interval '1 minute'
           WHERE segment_id = %s AND user_id = ANY(%s)""",
        (seg_id, expired),
    )
    sql.execute("SELECT user_id, expires_at FROM memberships WHERE segment_id = %s", (seg_id,))
    expiry = dict(sql.fetchall())
    all_members = set(expiry)
    assert len(all_members) > 1000

    r = client.request("DELETE", "/segments", json={"segment": "DOOMED"})
    assert r.status_code == 200 and r.json()["segment"] == "DOOMED"
    job_id = r.json()["job_id"]
    sql.execute("SELECT deleted_at FROM segments WHERE id = %s", (seg_id,))
    (deleted_at,) = sql.fetchone()
    assert deleted_at is not None

    # Gone from every read at once, before any cleanup; the name is free again.
    some = sorted(all_members)[0]
    assert client.get(f"/users/{some}").json()["segments"] == []
    assert client.get("/segments/DOOMED").status_code == 404
    assert "DOOMED" not in [s["segment"] for s in client.get("/segments").json()["segments"]]
    assert client.post("/segments", json={"segment": "DOOMED"}).status_code == 201

    job = run_job(job_id, batch=250)
    assert job.state == "done" and job.kind == "cleanup_segment"
    assert job.done == job.total == len(all_members)
    assert members(sql, seg_id) == set()

    removes = [(u, reason, at) for u, op, reason, at in events(sql, seg_id) if op == "remove"]
    assert Counter(u for u, _, _ in removes) == Counter(all_members)
    for uid, reason, at in removes:
        if uid in expired:
            assert (reason, at) == ("ttl", expiry[uid]), uid
        else:
            assert (reason, at) == ("segment_deleted", deleted_at), uid


def test_user_created_while_its_auto_segment_is_deleted_keeps_no_membership(client, sql):
    """A user whose creation overlaps a segment's deletion: once the cleanup job is done,
    no membership of the deleted segment may be left (an add event with no remove)."""
    run_job(create_auto(client, "RACE", 100))
    seg_id, _ = segment(sql, "RACE")

    created, release = threading.Event(), threading.Event()
    result: list = []

    def create_in_open_transaction() -> None:
        # The very create_user the web runs, its transaction committing a moment later
        # (as under load), so the deletion can commit in between.
        with db.connection_context(), db.atomic():
            result.append(create_user(77))
            created.set()
            release.wait(10)

    deleted: list = []

    def delete() -> None:
        deleted.append(delete_segment("RACE"))

    creator = threading.Thread(target=create_in_open_transaction)
    creator.start()
    assert created.wait(10)
    deleter = threading.Thread(target=delete)
    deleter.start()
    deleter.join(1.0)
    if deleted:  # the deletion did not wait for the user's transaction: clean up now
        run_job(deleted[0].job_id)
    release.set()
    creator.join(10)
    deleter.join(10)
    assert result == [["RACE"]] and deleted
    if jobs.get_job(deleted[0].job_id).state != "done":
        resend_job(deleted[0].job_id)

    leftover = members(sql, seg_id)
    ops = [(op, reason) for u, op, reason, _ in events(sql, seg_id) if u == 77]
    assert (leftover, ops) == (set(), [("add", "auto"), ("remove", "segment_deleted")])


# --- TTL -------------------------------------------------------------------------------------


def expiries(sql, segment_id: int) -> dict[int, datetime]:
    sql.execute("SELECT user_id, expires_at FROM memberships WHERE segment_id = %s", (segment_id,))
    return dict(sql.fetchall())


def test_ttl_sweep_events_are_at_expires_at(client, sql):
    assert client.post("/segments", json={"segment": "TTL"}).status_code == 201
    seg_id, _ = segment(sql, "TTL")
    for uid in range(1, 8):
        assert client.post("/users", json={"id": uid}).status_code == 201
        body = {"id": uid, "segments": ["TTL"]}
        if uid != 7:
            body["active_time"] = 3600
        assert client.patch("/users", json=body).status_code == 200
    # 1..5 expired at distinct past moments (sub-second precision), 6 expires later,
    # 7 has no expiry.
    sql.execute(
        """UPDATE memberships
           SET expires_at = now() - user_id * interval '1 day 1 hour 1.234567 second'
           WHERE segment_id = %s AND user_id <= 5 RETURNING user_id, expires_at""",
        (seg_id,),
    )
    expiry = dict(sql.fetchall())

    # Reads hide them at once, before any sweep.
    for uid in range(1, 8):
        want = [] if uid <= 5 else ["TTL"]
        assert client.get(f"/users/{uid}").json()["segments"] == want

    swept = 0
    while (n := expire_memberships(2)) > 0:
        swept += n
    assert swept == 5
    assert members(sql, seg_id) == {6, 7}
    removes = [(u, op, reason, at) for u, op, reason, at in events(sql, seg_id) if op == "remove"]
    assert sorted(removes) == sorted((u, "remove", "ttl", expiry[u]) for u in range(1, 6))
    assert expire_memberships(100) == 0

    # The CSV shows the expiry moment, not the sweep's.
    at = expiry[1]
    csv = client.get("/users/1/history", params={"year": at.year, "month": at.month}).text
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"1;TTL;remove;{stamp};ttl" in csv.splitlines()


def test_two_concurrent_sweeps_never_write_an_event_twice(client, sql):
    assert client.post("/segments", json={"segment": "SWEEP"}).status_code == 201
    seg_id, _ = segment(sql, "SWEEP")
    add_users(sql, 1, 5_000)
    sql.execute(
        """INSERT INTO memberships (user_id, segment_id, source, added_at, expires_at)
           SELECT g, %s, 'manual', now() - interval '2 days',
                  now() - interval '1 day' + (g %% 97) * interval '1 second'
           FROM generate_series(1, 5000) g""",
        (seg_id,),
    )
    expiry = expiries(sql, seg_id)
    barrier = threading.Barrier(2)
    counts: list[int] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait(10)
            total = 0
            while (n := expire_memberships(37)) > 0:
                total += n
            counts.append(total)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert expire_memberships(1000) == 0
    assert sum(counts) == 5_000, counts
    sql.execute(
        """SELECT count(*), count(DISTINCT user_id), min(reason), max(reason)
           FROM history WHERE segment_id = %s AND operation = 'remove'""",
        (seg_id,),
    )
    assert sql.fetchone() == (5_000, 5_000, "ttl", "ttl")
    removes = [(u, at) for u, op, _, at in events(sql, seg_id) if op == "remove"]
    assert sorted(removes) == sorted(expiry.items())
    assert members(sql, seg_id) == set()


def test_re_add_without_active_time_clears_the_expiry(client, sql):
    assert client.post("/segments", json={"segment": "KEEP"}).status_code == 201
    assert client.post("/users", json={"id": 1}).status_code == 201
    seg_id, _ = segment(sql, "KEEP")
    r = client.patch("/users", json={"id": 1, "segments": ["KEEP"], "active_time": 1})
    assert r.json() == {"id": 1, "segments": ["KEEP"]}
    r = client.patch("/users", json={"id": 1, "segments": ["KEEP"]})
    assert r.json() == {"id": 1, "segments": ["KEEP"]}
    sql.execute("SELECT expires_at FROM memberships WHERE segment_id = %s", (seg_id,))
    assert sql.fetchall() == [(None,)]

    time.sleep(1.2)  # past the first request's expiry
    assert expire_memberships(100) == 0
    assert client.get("/users/1").json()["segments"] == ["KEEP"]
    assert [(op, reason) for _, op, reason, _ in events(sql, seg_id)] == [("add", "manual")]


def test_re_add_after_unswept_expiry_is_a_new_membership(client, sql):
    assert client.post("/segments", json={"segment": "AGAIN"}).status_code == 201
    assert client.post("/users", json={"id": 1}).status_code == 201
    seg_id, _ = segment(sql, "AGAIN")
    client.patch("/users", json={"id": 1, "segments": ["AGAIN"], "active_time": 60})
    sql.execute(
        "UPDATE memberships SET expires_at = now() - interval '5 minutes' RETURNING expires_at"
    )
    (expired_at,) = sql.fetchone()
    client.patch("/users", json={"id": 1, "segments": ["AGAIN"]})
    evs = events(sql, seg_id)
    assert [(op, reason) for _, op, reason, _ in evs] == [
        ("add", "manual"),
        ("remove", "ttl"),
        ("add", "manual"),
    ]
    assert evs[1][3] == expired_at
    assert expire_memberships(100) == 0
    assert client.get("/users/1").json()["segments"] == ["AGAIN"]


# --- job leases ------------------------------------------------------------------------------


def test_job_lease_only_one_holder_then_takeover_resumes_from_checkpoint(client, sql):
    add_users(sql, 1, 5_000)
    job_id = create_auto(client, "LEASE", 50)
    seg_id, salt = segment(sql, "LEASE")

    assert jobs.claim_job(job_id, "worker-A", 30) is True
    assert jobs.claim_job(job_id, "worker-B", 30) is False
    assert jobs.advance_job(job_id, "worker-A", 1000, 30) is False
    assert jobs.advance_job(job_id, "worker-B", 1000, 30) is None  # not the holder
    assert jobs.advance_job(job_id, "worker-A", 1000, 30) is False
    half = members(sql, seg_id)
    assert half == {u for u in range(1, 2_001) if bucket(salt, u) < 5000}
    assert jobs.get_job(job_id).done == 2_000

    # worker-A goes silent; its lease runs out.
    sql.execute(
        "UPDATE jobs SET lease_until = now() - interval '1 second' WHERE id = %s", (job_id,)
    )
    assert jobs.claim_job(job_id, "worker-B", 30) is True
    assert jobs.claim_job(job_id, "worker-A", 30) is False
    assert jobs.advance_job(job_id, "worker-A", 1000, 30) is None  # A lost it
    while not jobs.advance_job(job_id, "worker-B", 1000, 30):
        pass

    job = jobs.get_job(job_id)
    assert job.state == "done" and job.done == job.total == 5_000
    assert job.attempts == 2
    expected = {u for u in range(1, 5_001) if bucket(salt, u) < 5000}
    assert members(sql, seg_id) == expected
    assert Counter((u, op, r) for u, op, r, _ in events(sql, seg_id)) == Counter(
        {(u, "add", "auto"): 1 for u in expected}
    )
    assert jobs.claim_job(job_id, "worker-C", 30) is False


def test_job_claimed_by_exactly_one_of_many_simultaneous_workers(client, sql):
    add_users(sql, 1, 100)
    job_id = create_auto(client, "RUSH", 50)
    barrier = threading.Barrier(8)
    wins: list[str] = []

    def claim(owner: str) -> None:
        barrier.wait(10)
        if jobs.claim_job(job_id, owner, 30):
            wins.append(owner)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(wins) == 1, wins
    job = jobs.get_job(job_id)
    assert job.attempts == 1 and job.state == "running"


def test_assignment_batch_waits_for_a_manual_removal_in_flight(client, sql):
    """A manual removal holds its user's row; the batch share-locks its users, so it
    waits, then sees the opt-out and leaves the user out."""
    add_users(sql, 1, 50)
    r = client.post("/segments", json={"segment": "RACE2", "auto_percent": 0})
    assert r.status_code == 201
    seg_id, _ = segment(sql, "RACE2")
    client.patch("/users", json={"id": 7, "segments": ["RACE2"]})
    job_id = change_percent(client, "RACE2", 100)

    holder = psycopg2.connect(os.environ["DATABASE_DSN"])
    with holder.cursor() as cur:  # the statements change_memberships runs, not committed
        cur.execute("SELECT 1 FROM users WHERE id = 7 FOR NO KEY UPDATE")
        cur.execute("DELETE FROM memberships WHERE user_id = 7 AND segment_id = %s", (seg_id,))
        cur.execute("INSERT INTO segment_opt_outs (segment_id, user_id) VALUES (%s, 7)", (seg_id,))
    done = threading.Event()
    worker = threading.Thread(target=lambda: (run_job(job_id), done.set()))
    worker.start()
    assert not done.wait(1.0), "the batch must wait for the user's removal"
    holder.commit()
    holder.close()
    worker.join(30)
    assert done.is_set()
    assert 7 not in members(sql, seg_id)
    assert members(sql, seg_id) == set(range(1, 51)) - {7}


def test_cleanup_waits_for_a_locked_membership_instead_of_leaving_it(client, sql):
    """Another transaction holds one membership of the deleted segment and then lets
    go without deleting it: the cleanup job must still remove it before finishing."""
    add_users(sql, 1, 20)
    run_job(create_auto(client, "HELD", 100))
    seg_id, _ = segment(sql, "HELD")
    holder = psycopg2.connect(os.environ["DATABASE_DSN"])
    with holder.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM memberships WHERE segment_id = %s AND user_id = 5 FOR UPDATE", (seg_id,)
        )
    r = client.request("DELETE", "/segments", json={"segment": "HELD"})
    release = threading.Timer(1.0, holder.rollback)
    release.start()
    job = run_job(r.json()["job_id"], batch=100)
    release.join()
    holder.close()
    assert job.state == "done"
    assert members(sql, seg_id) == set()
    removed = [u for u, op, reason, _ in events(sql, seg_id) if op == "remove"]
    assert sorted(removed) == list(range(1, 21))
