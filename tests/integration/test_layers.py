"""Layers over HTTP: the allocation order, the bucket formula, conflicts and moves,
imports, and the rows that hold a slot without counting any more."""

from __future__ import annotations

from models.buckets import bucket
from models.verify import verify
from tests.conftest import STUB_BROKER
from tests.integration.jobs import run_job, run_unfinished_jobs


def add_users(sql, first: int, last: int) -> None:
    sql.execute("INSERT INTO users (id) SELECT generate_series(%s, %s)", (first, last))


def layer(client, name: str = "L") -> dict:
    r = client.post("/layers", json={"layer": name})
    assert r.status_code == 201, r.text
    return r.json()


def create(client, name: str, percent: float, in_layer: str = "L") -> dict:
    r = client.post("/segments", json={"segment": name, "layer": in_layer, "auto_percent": percent})
    assert r.status_code == 201, r.text
    return r.json()


def ranges(client, name: str = "L") -> dict:
    body = client.get(f"/layers/{name}").json()
    owned = {s["segment"]: s["ranges"] for s in body["segments"]}
    return {**owned, "never_used": body["never_used"], "released": body["released"]}


def held(sql, layer_name: str = "L") -> dict[int, tuple[str, str]]:
    """user -> (segment, source) of the layer's live memberships."""
    sql.execute(
        """SELECT m.user_id, s.name, m.source FROM memberships m
           JOIN segments s ON s.id = m.segment_id JOIN layers l ON l.id = s.layer_id
           WHERE l.name = %s AND s.deleted_at IS NULL
             AND (m.expires_at IS NULL OR m.expires_at > now())""",
        (layer_name,),
    )
    return {u: (s, src) for u, s, src in sql.fetchall()}


def owners(sql, layer_name: str = "L") -> tuple[str, dict[int, str]]:
    sql.execute("SELECT id, salt FROM layers WHERE name = %s AND deleted_at IS NULL", (layer_name,))
    layer_id, salt = sql.fetchone()
    sql.execute(
        """SELECT lb.bucket, s.name FROM layer_buckets lb JOIN segments s ON s.id = lb.segment_id
           WHERE lb.layer_id = %s""",
        (layer_id,),
    )
    return salt, dict(sql.fetchall())


def test_create_layer_and_its_errors(client):
    body = layer(client)
    assert body["allocated"] == 0 and body["free"] == 10000 and body["segments"] == []
    assert client.post("/layers", json={"layer": "L"}).status_code == 409
    assert client.post("/layers", json={"layer": "a b"}).status_code == 400
    assert client.get("/layers/NOPE").status_code == 404
    assert [x["layer"] for x in client.get("/layers").json()["layers"]] == ["L"]
    r = client.post("/segments", json={"segment": "A", "layer": "NOPE", "auto_percent": 5})
    assert r.status_code == 404 and "NOPE" in r.json()["error"]
    assert client.get("/segments/A").status_code == 404  # nothing was created


def test_allocation_order_never_used_ascending_then_longest_released_first(client):
    layer(client)
    create(client, "A", 30)
    create(client, "B", 50)
    assert ranges(client) == {
        "A": [[0, 3000]],
        "B": [[3000, 8000]],
        "never_used": [[8000, 10000]],
        "released": [],
    }
    # Lowering gives back the most recently taken buckets.
    client.patch("/segments", json={"segment": "A", "auto_percent": 10})
    assert ranges(client)["released"] == [[1000, 3000]]
    create(client, "C", 30)  # never used first, then released ascending
    assert ranges(client)["C"] == [[1000, 2000], [8000, 10000]]
    client.request("DELETE", "/segments", json={"segment": "B"})  # released after [2000, 3000)
    create(client, "D", 20)
    assert ranges(client)["D"] == [[2000, 4000]]
    # C took [8000, 10000) then [1000, 2000): it gives back the latter, then the top.
    client.patch("/segments", json={"segment": "C", "auto_percent": 5})
    assert ranges(client)["C"] == [[8000, 8500]]
    create(client, "E", 45)  # B's rest [4000, 8000) first, then C's, ascending
    assert ranges(client)["E"] == [[1000, 1500], [4000, 8000]]
    assert ranges(client)["released"] == [[1500, 2000], [8500, 10000]]
    assert client.get("/layers/L").json()["free"] == 2000


def test_full_layer_is_a_409_naming_the_free_percent_and_changes_nothing(client, sql):
    layer(client)
    create(client, "A", 70)
    r = client.post("/segments", json={"segment": "B", "layer": "L", "auto_percent": 30.5})
    assert r.status_code == 409
    assert "30%" in r.json()["error"] and r.json()["details"]["free_percent"] == 30
    create(client, "B", 20)
    r = client.patch("/segments", json={"segment": "B", "auto_percent": 40.01})
    assert r.status_code == 409 and "10%" in r.json()["error"]
    assert client.get("/segments/B").json()["auto_percent"] == 20
    assert ranges(client)["B"] == [[7000, 9000]]
    r = client.request("DELETE", "/layers/L")
    assert r.status_code == 409 and r.json()["details"]["segments"] == ["A", "B"]


def test_auto_members_follow_the_layer_buckets_for_users_before_and_after(client, sql):
    add_users(sql, 1, 3000)
    layer(client)
    run_job(create(client, "A", 25)["job_id"])
    run_job(create(client, "B", 40)["job_id"])
    run_job(client.patch("/segments", json={"segment": "A", "auto_percent": 12.5}).json()["job_id"])
    run_job(create(client, "C", 30)["job_id"])
    run_job(client.patch("/segments", json={"segment": "B", "auto_percent": 47}).json()["job_id"])
    later = [client.post("/users", json={"id": uid}).json() for uid in range(3001, 3301)]
    salt, owner = owners(sql)
    expected = {
        uid: (owner[bucket(salt, uid)], "auto")
        for uid in range(1, 3301)
        if bucket(salt, uid) in owner
    }
    assert held(sql) == expected
    for user in later:  # POST /users answered with the layer's segment of its bucket
        assert user["segments"] == ([expected[user["id"]][0]] if user["id"] in expected else [])
    assert verify()["ok"]


def test_manual_add_of_a_sibling_is_a_409_naming_both_and_changes_nothing(client, sql):
    add_users(sql, 1, 3)
    layer(client)
    create(client, "A", 0)
    create(client, "B", 0)
    client.patch("/users", json={"id": 1, "segments": ["A"]})
    sql.execute("SELECT count(*) FROM history")
    before = sql.fetchone()
    r = client.patch("/users", json={"id": 1, "segments": ["B"]})
    assert r.status_code == 409
    assert "A" in r.json()["error"] and "B" in r.json()["error"]
    assert sorted(r.json()["details"]["segments"]) == ["A", "B"]
    r = client.post("/users/1/segments", json={"add": ["B"]})
    assert r.status_code == 409
    sql.execute("SELECT count(*) FROM history")
    assert sql.fetchone() == before
    assert held(sql) == {1: ("A", "manual")}


def test_move_true_moves_in_one_transaction_with_a_layer_move_event(client, sql):
    add_users(sql, 1, 3)
    layer(client)
    create(client, "A", 0)
    create(client, "B", 0)
    client.patch("/users", json={"id": 1, "segments": ["A"]})
    r = client.patch("/users", json={"id": 1, "segments": ["B"], "move": True})
    assert r.status_code == 200 and r.json()["segments"] == ["B"]
    assert held(sql) == {1: ("B", "manual")}
    sql.execute(
        """SELECT s.name, h.operation, h.reason, h.txid FROM history h
           JOIN segments s ON s.id = h.segment_id ORDER BY h.id"""
    )
    rows = sql.fetchall()
    assert [r[:3] for r in rows] == [
        ("A", "add", "manual"),
        ("A", "remove", "layer_move"),
        ("B", "add", "manual"),
    ]
    assert rows[1][3] == rows[2][3]  # one transaction
    sql.execute("SELECT extract(year FROM now())::int, extract(month FROM now())::int")
    year, month = sql.fetchone()
    report = client.get("/users/1/history", params={"year": year, "month": month}).text
    line = report.splitlines()[2]
    assert line.startswith("1;A;remove;") and line.endswith(";layer_move")


def test_two_segments_of_one_layer_in_one_request_is_a_400(client, sql):
    add_users(sql, 1, 1)
    layer(client)
    create(client, "A", 0)
    create(client, "B", 0)
    r = client.patch("/users", json={"id": 1, "segments": ["A", "B"]})
    assert r.status_code == 400 and r.json()["details"]["segments"] == ["A", "B"]
    r = client.post("/users/1/segments", json={"add": ["A", "B"], "move": True})
    assert r.status_code == 400
    assert held(sql) == {}
    # Removing one and adding its sibling in one request is an explicit move.
    client.patch("/users", json={"id": 1, "segments": ["A"]})
    r = client.post("/users/1/segments", json={"add": ["B"], "remove": ["A"]})
    assert r.status_code == 200 and held(sql) == {1: ("B", "manual")}


def test_import_skips_and_reports_conflicts_or_moves_them(client, sql):
    add_users(sql, 1, 10)
    layer(client)
    create(client, "A", 0)
    create(client, "B", 0)
    for uid in (2, 4, 6):
        client.patch("/users", json={"id": uid, "segments": ["A"]})
    r = client.post("/segments/B/users", json={"ids": [1, 2, 3, 4, 99]})
    job = run_job(r.json()["job_id"])
    assert job.result["conflicts"] == 2 and job.result["conflict_sample"] == [2, 4]
    assert job.result["added"] == 2 and job.result["unknown_users"] == 1
    assert {u: s for u, (s, _) in held(sql).items()} == {1: "B", 2: "A", 3: "B", 4: "A", 6: "A"}
    r = client.post("/segments/B/users?move=true", json={"ids": [2, 4, 5]})
    job = run_job(r.json()["job_id"])
    assert job.result["conflicts"] == 0 and job.result["moved"] == 2
    assert {u: s for u, (s, _) in held(sql).items()} == {
        1: "B",
        2: "B",
        3: "B",
        4: "B",
        5: "B",
        6: "A",
    }
    sql.execute("SELECT count(*) FROM history WHERE reason = 'layer_move'")
    assert sql.fetchone()[0] == 2
    assert client.post("/segments/B/users?move=maybe", json={"ids": [1]}).status_code == 400
    assert verify()["ok"]


def test_layer_user_says_why(client, sql):
    add_users(sql, 1, 200)
    layer(client)
    run_job(create(client, "A", 50)["job_id"])
    salt, owner = owners(sql)
    inside = next(u for u in range(1, 201) if bucket(salt, u) in owner)
    outside = next(u for u in range(1, 201) if bucket(salt, u) not in owner)
    r = client.get(f"/layers/L/users/{inside}").json()
    assert r == {
        "layer": "L",
        "id": inside,
        "bucket": bucket(salt, inside),
        "segment": "A",
        "source": "auto",
        "bucket_owner": "A",
    }
    r = client.get(f"/layers/L/users/{outside}").json()
    assert r["segment"] is None and r["source"] is None and r["bucket_owner"] is None
    assert client.get("/layers/L/users/0").status_code == 400
    assert client.get("/layers/L/users/5000").status_code == 404
    assert client.get("/layers/X/users/1").status_code == 404


def test_released_buckets_go_to_the_new_owner_before_the_old_rows_are_cleaned(client, sql):
    """A deleted segment's rows (cleanup not run yet), an expired unswept row and an
    auto row of a lowered segment (shrink not run yet) still hold the slot; the new
    owner's assignment ends them first, each with its own reason."""
    add_users(sql, 1, 400)
    layer(client)
    run_job(create(client, "A", 100)["job_id"])
    client.request("DELETE", "/segments", json={"segment": "A"})
    STUB_BROKER.flush_all()  # the cleanup job stays queued
    run_job(create(client, "B", 100)["job_id"])
    assert {s for s, _ in held(sql).values()} == {"B"} and len(held(sql)) == 400
    client.patch("/users", json={"id": 7, "segments": ["B"], "active_time": 60})
    sql.execute("UPDATE memberships SET expires_at = now() WHERE user_id = 7")
    client.patch("/segments", json={"segment": "B", "auto_percent": 50})
    STUB_BROKER.flush_all()  # the shrink job stays queued
    run_job(create(client, "C", 50)["job_id"])
    salt, owner = owners(sql)
    seven_to_c = owner[bucket(salt, 7)] == "C"  # else 7 left B at its expiry, for good
    assert held(sql) == {
        u: (owner[bucket(salt, u)], "auto") for u in range(1, 401) if u != 7 or seven_to_c
    }
    sql.execute("SELECT reason, count(*) FROM history WHERE operation = 'remove' GROUP BY 1")
    reasons = dict(sql.fetchall())
    assert reasons["segment_deleted"] == 400 and reasons["percent_change"] > 100
    assert reasons["ttl"] == 1  # the assignment ends the layer's expired rows it meets
    run_unfinished_jobs()
    report = verify()
    assert report["ok"], report


def test_delete_a_layer_once_its_segments_are_gone(client):
    layer(client)
    create(client, "A", 10)
    assert client.request("DELETE", "/layers/L").status_code == 409
    client.request("DELETE", "/segments", json={"segment": "A"})
    assert client.request("DELETE", "/layers/L").status_code == 200
    assert client.get("/layers/L").status_code == 404
    assert client.request("DELETE", "/layers/L").status_code == 404
    assert layer(client)["free"] == 10000  # the name is free again, with fresh buckets
