"""GET /users/{id}/memberships and GET /segments/{name}/users.csv."""

from __future__ import annotations

import re

from models import segments

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def test_memberships_show_source_and_times_of_live_ones_only(client, sql):
    for name in ("B", "A", "GONE", "OLD"):
        client.post("/segments", json={"segment": name})
    client.post("/users", json={"id": 7})
    client.patch("/users", json={"id": 7, "segments": ["B", "GONE", "OLD"]})
    client.patch("/users", json={"id": 7, "segments": ["A"], "active_time": 3600})
    sql.execute("UPDATE memberships SET source = 'auto' WHERE segment_id = 1")  # B
    sql.execute(
        "UPDATE memberships SET expires_at = now() - interval '1 second' "
        "WHERE segment_id = (SELECT id FROM segments WHERE name = 'OLD')"
    )
    client.request("DELETE", "/segments", json={"segment": "GONE"})

    r = client.get("/users/7/memberships")
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == 7
    got = body["memberships"]
    assert [(m["segment"], m["source"]) for m in got] == [("A", "manual"), ("B", "auto")]
    assert all(STAMP.match(m["added_at"]) for m in got)
    assert STAMP.match(got[0]["expires_at"]) and got[1]["expires_at"] is None
    assert got[0]["expires_at"] > got[0]["added_at"]


def test_memberships_of_unknown_user_is_404_and_bad_id_400(client):
    assert client.get("/users/5/memberships").status_code == 404
    assert client.get("/users/0/memberships").status_code == 400
    client.post("/users", json={"id": 5})
    assert client.get("/users/5/memberships").json() == {"id": 5, "memberships": []}


def test_members_csv_streams_live_members_by_user_id(client, sql, monkeypatch):
    # Batches of 3, so the keyset paging crosses several batch boundaries.
    monkeypatch.setattr(segments, "MEMBERS_CSV_BATCH", 3)
    client.post("/segments", json={"segment": "S"})
    client.post("/segments", json={"segment": "OTHER"})
    for uid in (12, 3, 9, 1, 5, 7, 11, 2):
        client.post("/users", json={"id": uid})
        client.patch("/users", json={"id": uid, "segments": ["S", "OTHER"]})
    client.patch("/users", json={"id": 9, "segments": ["S"], "active_time": 60})
    sql.execute(
        "UPDATE memberships SET expires_at = now() - interval '1 second' "
        "WHERE user_id = 5 AND segment_id = (SELECT id FROM segments WHERE name = 'S')"
    )
    r = client.get("/segments/S/users.csv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="segment-S-users.csv"' in r.headers["content-disposition"]
    lines = r.text.splitlines()
    assert lines[0] == "user_id;source;added_at;expires_at"
    rows = [line.split(";") for line in lines[1:]]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 7, 9, 11, 12]
    assert all(r[1] == "manual" and STAMP.match(r[2]) for r in rows)
    assert [bool(r[3]) for r in rows] == [False, False, False, False, True, False, False]


def test_members_csv_of_unknown_segment_is_a_json_404(client):
    r = client.get("/segments/NOPE/users.csv")
    assert r.status_code == 404 and r.json()["details"]["segment"] == "NOPE"
    assert client.get("/segments/..x%00/users.csv").status_code == 400
    client.post("/segments", json={"segment": "EMPTY"})
    assert client.get("/segments/EMPTY/users.csv").text == "user_id;source;added_at;expires_at\n"
