"""POST /segments/{name}/users: a list of ids staged as it streams, applied by a job."""

from __future__ import annotations

from models.verify import verify
from tests.integration.imports import CSV, expand, members, setup_segment, staged
from tests.integration.jobs import run_job


def test_csv_import_adds_listed_users_with_import_events(client, sql):
    setup_segment(client)
    body = b"user_id\r\n1\r\n2\r\n\r\n3\n99\n2\n"
    r = client.post("/segments/S/users", content=body, headers=CSV)
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["segment"] == "S" and accepted["ids"] == 4
    job = run_job(accepted["job_id"], batch=2)
    assert job.state == "done" and job.done == job.total == 4
    assert job.result == {
        "added": 3,
        "removed": 0,
        "unchanged": 0,
        "unknown_users": 1,
        "unknown_sample": [99],
    }
    assert members(sql) == {1: "import", 2: "import", 3: "import"}
    sql.execute("SELECT user_id, operation, reason FROM history ORDER BY user_id")
    assert sql.fetchall() == [(u, "add", "import") for u in (1, 2, 3)]
    assert staged(sql)[1] == 0  # staging rows go when the job ends
    api = client.get(f"/jobs/{accepted['job_id']}").json()
    assert api["result"]["added"] == 3 and api["kind"] == "import"
    assert verify()["ok"]


def test_a_bad_line_is_a_400_naming_it_and_leaves_nothing(client, sql):
    setup_segment(client)
    r = client.post("/segments/S/users", content=b"1\n2\n-3\n4\n", headers=CSV)
    assert r.status_code == 400 and "line 3" in r.json()["error"], r.text
    assert staged(sql) == (0, 0)
    for body, media in [
        (b"", "text/plain"),
        (b"user_id\n\n", "text/csv"),
        (b'{"ids": []}', "application/json"),
        (b'{"ids": [1, 2.5]}', "application/json"),
        (b'{"ids": [1]', "application/json"),
        (b"1\n" + b"9" * 100 + b"\n", "text/plain"),
    ]:
        r = client.post("/segments/S/users", content=body, headers={"content-type": media})
        assert r.status_code == 400, (body, r.text)
    assert staged(sql) == (0, 0)


def test_json_body_remove_and_the_opt_out_it_leaves(client, sql):
    setup_segment(client)
    client.patch("/users", json={"id": 1, "segments": ["S"]})
    client.patch("/users", json={"id": 2, "segments": ["S"]})
    r = client.post(
        "/segments/S/users?action=remove",
        content=b'{"ids": [2, 3]}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 202, r.text
    job = run_job(r.json()["job_id"])
    assert job.result["removed"] == 1 and job.result["unchanged"] == 1
    assert members(sql) == {1: "manual"}
    sql.execute("SELECT user_id FROM segment_opt_outs ORDER BY 1")
    assert [r[0] for r in sql.fetchall()] == [2, 3]
    # The opted-out users stay out of a later auto assignment of the segment.
    job_id = client.patch("/segments", json={"segment": "S", "auto_percent": 100}).json()["job_id"]
    run_job(job_id)
    assert sorted(members(sql)) == [1, 4, 5, 6, 7, 8, 9, 10]
    assert verify()["ok"]


def test_replace_keeps_auto_members_and_removes_unlisted_manual_ones(client, sql):
    setup_segment(client)
    client.patch("/users", json={"id": 1, "segments": ["S"]})
    client.patch("/users", json={"id": 2, "segments": ["S"]})
    run_job(client.post("/segments/S/users", content=b"4\n", headers=CSV).json()["job_id"])
    # Everyone else becomes an auto member.
    run_job(client.patch("/segments", json={"segment": "S", "auto_percent": 100}).json()["job_id"])
    r = client.post("/segments/S/users?mode=replace", content=b"2\n5\n", headers=CSV)
    job = run_job(r.json()["job_id"], batch=1)
    assert job.state == "done"
    assert job.result["added"] == 0 and job.result["removed"] == 2
    assert job.result["unchanged"] == 2  # 2 (manual) and 5 (auto, now listed: import)
    auto = {u: "auto" for u in (3, 6, 7, 8, 9, 10)}
    assert members(sql) == {2: "manual", 5: "import", **auto}
    sql.execute("SELECT user_id, reason FROM history WHERE operation = 'remove' ORDER BY 1")
    assert sql.fetchall() == [(1, "import"), (4, "import")]
    assert verify()["ok"]


def test_create_users_gives_new_users_their_auto_segments(client, sql):
    setup_segment(client, users=[])
    job_id = client.post("/segments", json={"segment": "ALL", "auto_percent": 100}).json()["job_id"]
    run_job(job_id)
    r = client.post(
        "/segments/S/users?create_users=true&active_time=3600", content=b"7\n8\n", headers=CSV
    )
    job = run_job(r.json()["job_id"])
    assert job.result["added"] == 2 and job.result["unknown_users"] == 0
    assert client.get("/users/7").json()["segments"] == ["ALL", "S"]
    detail = client.get("/users/8/memberships").json()["memberships"]
    assert [(m["segment"], m["source"], m["expires_at"] is None) for m in detail] == [
        ("ALL", "auto", True),
        ("S", "import", False),
    ]
    assert verify()["ok"]


def test_idempotency_key_replays_the_same_body_and_refuses_another(client, sql):
    setup_segment(client)
    headers = {**CSV, "Idempotency-Key": "load-2026-11-27"}
    first = client.post("/segments/S/users", content=b"1\n2\n", headers=headers)
    again = client.post("/segments/S/users", content=b"1\n2\n", headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json() == first.json()
    other = client.post("/segments/S/users", content=b"1\n3\n", headers=headers)
    assert other.status_code == 422
    assert staged(sql) == (1, 2)  # one job, its two staged ids; nothing from the repeats


def test_query_and_header_checks(client, sql):
    setup_segment(client)
    for query in [
        "action=drop",
        "action=remove&active_time=5",
        "action=remove&mode=replace",
        "mode=all",
        "create_users=yes",
        "active_time=0",
        "active_time=1.5",
    ]:
        r = client.post(f"/segments/S/users?{query}", content=b"1\n", headers=CSV)
        assert r.status_code == 400, (query, r.text)
    assert client.post("/segments/NOPE/users", content=b"1\n", headers=CSV).status_code == 404
    r = client.post("/segments/S/users", content=b"1\n", headers={"content-type": "image/png"})
    assert r.status_code == 415
    r = client.post("/segments/S/users", content=b"1\n", headers={**CSV, "Idempotency-Key": ""})
    assert r.status_code == 400
    assert staged(sql) == (0, 0)


def test_body_limit_is_64_mib_here_and_1_mib_elsewhere(client, sql):
    setup_segment(client)
    body = b"".join(b"%d\n" % i for i in range(1_000_000, 1_300_000))  # 2.4 MB
    r = client.post("/segments/S/users", content=body, headers=CSV)
    assert r.status_code == 202 and r.json()["ids"] == 300_000
    big = b'{"id": 1, "pad": "' + b"x" * (1024 * 1024) + b'"}'
    r = client.post("/users", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_segment_deleted_while_its_import_runs(client, sql):
    from models import jobs

    setup_segment(client)
    job_id = client.post("/segments/S/users", content=b"1\n2\n3\n4\n5\n", headers=CSV).json()[
        "job_id"
    ]
    assert jobs.claim_job(job_id, "w", 30)
    expand(job_id, "w")
    assert jobs.advance_job(job_id, "w", 2, 30) is False  # users 1 and 2 are in
    cleanup = client.request("DELETE", "/segments", json={"segment": "S"}).json()["job_id"]
    while not jobs.advance_job(job_id, "w", 2, 30):  # the import sees the deletion
        pass
    job = jobs.get_job(job_id)
    # Failed with its reason (issue 18, item 4), the adds it made kept and counted.
    assert job.state == "failed" and job.result["added"] == 2
    assert job.error == "the segment was deleted"
    run_job(cleanup)
    assert members(sql) == {}
    sql.execute("SELECT count(*) FROM memberships")
    assert sql.fetchone()[0] == 0
    assert staged(sql)[1] == 0
    assert verify()["ok"]


def test_unknown_parameters_compressed_or_binary_bodies_change_nothing(client, sql):
    setup_segment(client)
    r = client.post("/segments/S/users?actoin=remove", content=b"1\n", headers=CSV)
    assert r.status_code == 400 and "actoin" in r.json()["error"]
    gz = {**CSV, "Content-Encoding": "gzip"}
    assert (
        client.post("/segments/S/users", content=b"\x1f\x8b\x08\x00", headers=gz).status_code == 415
    )
    r = client.post("/segments/S/users", content=b"\x00\x01\xff\xfe\n", headers=CSV)
    assert r.status_code == 400 and r.json()["details"]["line"] == 1
    r = client.post("/segments/S/users", content=b"id\n1\n", headers=CSV)
    assert r.status_code == 400 and r.json()["details"]["line"] == 1
    assert staged(sql) == (0, 0)
