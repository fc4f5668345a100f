"""Helpers the tests of auto segments share: their rows read straight from the database
(users, segments, memberships, history) and the API calls that make and change them."""

from __future__ import annotations


def add_users(sql, first: int, last: int) -> None:
    sql.execute("INSERT INTO users (id) SELECT g FROM generate_series(%s, %s) g", (first, last))


def segment(sql, name: str) -> tuple[int, str]:
    sql.execute("SELECT id, salt FROM segments WHERE name = %s AND deleted_at IS NULL", (name,))
    row = sql.fetchone()
    assert row is not None, name
    return row


def members(sql, segment_id: int) -> set[int]:
    sql.execute("SELECT user_id FROM memberships WHERE segment_id = %s", (segment_id,))
    return {r[0] for r in sql.fetchall()}


def events(sql, segment_id: int) -> list[tuple]:
    """(user_id, operation, reason, at) for the segment, oldest first."""
    sql.execute(
        "SELECT user_id, operation, reason, at FROM history WHERE segment_id = %s ORDER BY id",
        (segment_id,),
    )
    return sql.fetchall()


def create_auto(client, name: str, percent: float) -> int:
    r = client.post("/segments", json={"segment": name, "auto_percent": percent})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["segment"] == name and body["auto_percent"] == percent
    return body["job_id"]


def change_percent(client, name: str, percent: float) -> int:
    r = client.patch("/segments", json={"segment": name, "auto_percent": percent})
    assert r.status_code == 200, r.text
    assert r.json()["auto_percent"] == percent
    return r.json()["job_id"]


def page_all(client, name: str) -> list[int]:
    out: list[int] = []
    after = 0
    while True:
        body = client.get(f"/segments/{name}/users", params={"after": after, "limit": 700}).json()
        out += body["users"]
        if body["next_after"] is None:
            return out
        after = body["next_after"]
