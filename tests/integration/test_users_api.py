"""/users: every success and error path of the seed endpoints and the atomic method."""

from __future__ import annotations

import os
import threading

import psycopg2
import pytest

MAX_ID = 2**63 - 1


@pytest.fixture
def segments(client):
    for name in ("A", "B", "C"):
        assert client.post("/segments", json={"segment": name}).status_code == 201


def events(sql, user_id):
    sql.execute(
        "SELECT s.name, h.operation, h.reason FROM history h JOIN segments s "
        "ON s.id = h.segment_id WHERE h.user_id = %s ORDER BY h.id",
        (user_id,),
    )
    return sql.fetchall()


def test_create_user(client):
    r = client.post("/users", json={"id": 1000})
    assert r.status_code == 201
    assert r.json() == {"id": 1000, "segments": []}
    assert client.get("/users/1000").json() == {"id": 1000, "segments": []}


def test_create_user_max_id(client):
    assert client.post("/users", json={"id": MAX_ID}).status_code == 201
    assert client.get(f"/users/{MAX_ID}").json()["id"] == MAX_ID


def test_create_existing_user_is_409(client):
    client.post("/users", json={"id": 5})
    r = client.post("/users", json={"id": 5})
    assert r.status_code == 409
    assert r.json()["status"] == 409 and "exists" in r.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"id": 0},
        {"id": -1},
        {"id": MAX_ID + 1},
        {"id": "1"},
        {"id": 1.5},
        {"id": True},
        {"id": None},
        {},
        {"id": 1, "extra": 1},
        [1],
    ],
)
def test_create_user_rejects_bad_input(client, sql, body):
    r = client.post("/users", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == 400 and r.json()["error"]
    sql.execute("SELECT count(*) FROM users")
    assert sql.fetchone()[0] == 0


def test_unknown_field_is_named(client):
    client.post("/users", json={"id": 1})
    r = client.patch("/users", json={"id": 1, "segmnets": ["A"]})
    assert r.status_code == 400
    assert "segmnets" in r.json()["error"]


@pytest.mark.parametrize("raw", [b"{", b"", b"null", b'{"id": 1,}', b"\xff\xfe"])
def test_malformed_json_is_400(client, raw):
    r = client.post("/users", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_json_body_without_or_with_wrong_content_type(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post("/users", content=b'{"id": 7}', headers=headers)
    assert r.status_code == 201, r.text
    assert r.json() == {"id": 7, "segments": []}


def test_add_segments(client, segments, sql):
    client.post("/users", json={"id": 1})
    r = client.patch("/users", json={"id": 1, "segments": ["B", "A", "A"]})
    assert r.status_code == 200
    assert r.json() == {"id": 1, "segments": ["A", "B"]}
    assert client.get("/users/1").json() == {"id": 1, "segments": ["A", "B"]}
    assert events(sql, 1) == [("A", "add", "manual"), ("B", "add", "manual")]


def test_readding_a_held_segment_writes_no_event(client, segments, sql):
    client.post("/users", json={"id": 1})
    client.patch("/users", json={"id": 1, "segments": ["A"]})
    r = client.patch("/users", json={"id": 1, "segments": ["A"]})
    assert r.status_code == 200 and r.json()["segments"] == ["A"]
    assert events(sql, 1) == [("A", "add", "manual")]


def test_readding_sets_expiry_from_this_request(client, segments, sql):
    client.post("/users", json={"id": 1})
    client.patch("/users", json={"id": 1, "segments": ["A"], "active_time": 3600})
    sql.execute("SELECT expires_at IS NOT NULL FROM memberships")
    assert sql.fetchone()[0] is True
    client.patch("/users", json={"id": 1, "segments": ["A"]})
    sql.execute("SELECT expires_at FROM memberships")
    assert sql.fetchone()[0] is None


def test_active_time_sets_expiry(client, segments, sql):
    client.post("/users", json={"id": 1})
    client.patch("/users", json={"id": 1, "segments": ["A"], "active_time": 172800})
    sql.execute("SELECT extract(epoch FROM expires_at - added_at) FROM memberships")
    assert round(float(sql.fetchone()[0])) == 172800


def test_expired_membership_is_hidden_at_once(client, segments, sql):
    client.post("/users", json={"id": 1})
    client.patch("/users", json={"id": 1, "segments": ["A", "B"], "active_time": 60})
    sql.execute(
        "UPDATE memberships SET expires_at = now() - interval '1 second' "
        "WHERE segment_id = (SELECT id FROM segments WHERE name = 'A')"
    )
    assert client.get("/users/1").json()["segments"] == ["B"]
    assert client.get("/segments/A").json()["members"] == 0


def test_readding_an_expired_unswept_membership_records_both_events(client, segments, sql):
    client.post("/users", json={"id": 1})
    client.patch("/users", json={"id": 1, "segments": ["A"], "active_time": 60})
    sql.execute("UPDATE memberships SET expires_at = now() - interval '10 seconds'")
    client.patch("/users", json={"id": 1, "segments": ["A"]})
    assert events(sql, 1) == [
        ("A", "add", "manual"),
        ("A", "remove", "ttl"),
        ("A", "add", "manual"),
    ]
    sql.execute("SELECT at FROM history WHERE reason = 'ttl'")
    ttl_at = sql.fetchone()[0]
    sql.execute("SELECT now() - %s", (ttl_at,))
    assert sql.fetchone()[0].total_seconds() >= 9


@pytest.mark.parametrize("active_time", [0, -5, 1.5, "10", True])
def test_bad_active_time(client, segments, active_time):
    client.post("/users", json={"id": 1})
    r = client.patch("/users", json={"id": 1, "segments": ["A"], "active_time": active_time})
    assert r.status_code == 400


def test_add_to_unknown_user_is_404(client, segments):
    r = client.patch("/users", json={"id": 404, "segments": ["A"]})
    assert r.status_code == 404
    assert "404" in r.json()["error"]


def test_unknown_segments_are_all_named_and_nothing_changes(client, segments, sql):
    client.post("/users", json={"id": 1})
    r = client.patch("/users", json={"id": 1, "segments": ["A", "NOPE", "ALSO_NOPE"]})
    assert r.status_code == 404
    assert r.json()["details"]["segments"] == ["ALSO_NOPE", "NOPE"]
    assert client.get("/users/1").json()["segments"] == []
    assert events(sql, 1) == []


@pytest.mark.parametrize(
    "segs",
    [[], ["bad name"], ["x" * 65], [""], ["Ж"], ["A;B"], [1], "A", [f"S{i}" for i in range(1001)]],
)
def test_bad_segment_lists_are_400(client, segments, segs):
    client.post("/users", json={"id": 1})
    r = client.patch("/users", json={"id": 1, "segments": segs})
    assert r.status_code == 400, r.text


def test_remove_segments_returns_what_was_removed(client, segments, sql):
    client.post("/users", json={"id": 1})
    client.patch("/users", json={"id": 1, "segments": ["A", "B"]})
    r = client.request("DELETE", "/users", json={"id": 1, "segments": ["A", "C"]})
    assert r.status_code == 200
    assert r.json() == {"id": 1, "segments": ["A"]}
    assert client.get("/users/1").json()["segments"] == ["B"]
    assert events(sql, 1)[-1] == ("A", "remove", "manual")
    r = client.request("DELETE", "/users", json={"id": 1, "segments": ["A"]})
    assert r.json() == {"id": 1, "segments": []}
    assert len(events(sql, 1)) == 3


def test_remove_errors(client, segments):
    r = client.request("DELETE", "/users", json={"id": 9, "segments": ["A"]})
    assert r.status_code == 404
    client.post("/users", json={"id": 9})
    r = client.request("DELETE", "/users", json={"id": 9, "segments": ["A", "ZZ"]})
    assert r.status_code == 404 and r.json()["details"]["segments"] == ["ZZ"]


@pytest.mark.parametrize(
    "raw", ["abc", "0", "-1", str(MAX_ID + 1), "1.5", "1e3", "%20", "1%0A", "%201"]
)
def test_get_user_bad_id_is_400(client, raw):
    r = client.get(f"/users/{raw}")
    assert r.status_code == 400, r.text


def test_get_unknown_user_is_404(client):
    assert client.get("/users/12345").status_code == 404


def test_atomic_add_and_remove(client, segments, sql):
    client.post("/users", json={"id": 1})
    client.patch("/users", json={"id": 1, "segments": ["A"]})
    r = client.post(
        "/users/1/segments", json={"add": ["B", "C"], "remove": ["A"], "active_time": 60}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"id": 1, "added": ["B", "C"], "removed": ["A"]}
    assert client.get("/users/1").json()["segments"] == ["B", "C"]


def test_atomic_method_rejects_overlap_and_empty(client, segments):
    client.post("/users", json={"id": 1})
    r = client.post("/users/1/segments", json={"add": ["A"], "remove": ["A"]})
    assert r.status_code == 400 and r.json()["details"]["segments"] == ["A"]
    assert client.post("/users/1/segments", json={}).status_code == 400


def test_atomic_method_is_all_or_nothing(client, segments, sql):
    client.post("/users", json={"id": 1})
    client.patch("/users", json={"id": 1, "segments": ["A"]})
    r = client.post("/users/1/segments", json={"add": ["B"], "remove": ["A", "MISSING"]})
    assert r.status_code == 404
    assert client.get("/users/1").json()["segments"] == ["A"]
    assert len(events(sql, 1)) == 1


def test_errors_are_json_without_internals(client):
    for r in (
        client.get("/nope"),
        client.put("/users", json={"id": 1}),
        client.get("/users/x"),
        client.post("/users", content=b"{{{"),
    ):
        assert 400 <= r.status_code < 500
        body = r.json()
        assert body["status"] == r.status_code and isinstance(body["error"], str)
        assert "Traceback" not in r.text and "psycopg2" not in r.text


def test_expiry_is_counted_from_the_add_not_from_a_lock_wait(client, segments, sql):
    """The add waits 1.5 s on another transaction's row; a 1 s TTL still ends after
    the add event, never before it."""
    client.post("/users", json={"id": 1})
    holder = psycopg2.connect(os.environ["DATABASE_DSN"])
    with holder.cursor() as cur:  # an uncommitted insert of the same membership
        cur.execute(
            "INSERT INTO memberships (user_id, segment_id, source) "
            "SELECT 1, id, 'manual' FROM segments WHERE name = 'A'"
        )
    release = threading.Timer(1.5, holder.rollback)
    release.start()
    r = client.patch("/users", json={"id": 1, "segments": ["A"], "active_time": 1})
    assert r.status_code == 200
    release.join()
    holder.close()
    sql.execute(
        "SELECT m.expires_at - h.at FROM memberships m JOIN history h "
        "USING (user_id, segment_id) WHERE h.operation = 'add'"
    )
    assert sql.fetchone()[0].total_seconds() >= 1
