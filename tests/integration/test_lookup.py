"""POST /users/lookup: the live segments of many users in one request (SPEC round 2)."""

from __future__ import annotations

import pytest


@pytest.fixture
def people(client, sql):
    for name in ("B", "a1", "A2", "_z", "-x", "Gone", "Old"):
        assert client.post("/segments", json={"segment": name}).status_code == 201
    for uid in (3, 1, 2):
        assert client.post("/users", json={"id": uid}).status_code == 201
    client.patch("/users", json={"id": 1, "segments": ["B", "a1", "A2", "_z", "-x", "Gone"]})
    client.patch("/users", json={"id": 2, "segments": ["Old"]})
    # The live rule of GET /users/{id}: an expired membership and a deleted segment are gone.
    sql.execute(
        "UPDATE memberships SET expires_at = now() - interval '1 second' "
        "WHERE segment_id = (SELECT id FROM segments WHERE name = 'Old')"
    )
    assert client.request("DELETE", "/segments", json={"segment": "Gone"}).status_code == 200


def test_lookup_answers_known_users_in_id_order_and_lists_unknown(client, people):
    r = client.post("/users/lookup", json={"ids": [3, 99, 1, 2, 1, 99, 7]})
    assert r.status_code == 200
    assert r.json() == {
        "users": [
            # Byte order, as Python sorts, whatever the database's collation.
            {"id": 1, "segments": ["-x", "A2", "B", "_z", "a1"]},
            {"id": 2, "segments": []},
            {"id": 3, "segments": []},
        ],
        "unknown": [7, 99],
    }


def test_lookup_agrees_with_single_reads(client, people):
    r = client.post("/users/lookup", json={"ids": [1, 2, 3]})
    for user in r.json()["users"]:
        assert client.get(f"/users/{user['id']}").json() == user


def test_lookup_of_1000_ids(client, people):
    ids = list(range(1, 1001))
    r = client.post("/users/lookup", json={"ids": ids})
    assert r.status_code == 200
    assert [u["id"] for u in r.json()["users"]] == [1, 2, 3]
    assert r.json()["unknown"] == list(range(4, 1001))


@pytest.mark.parametrize(
    "body",
    [
        {"ids": []},
        {"ids": list(range(1, 1002))},
        {"ids": ["1"]},
        {"ids": [1.0]},
        {"ids": [0]},
        {"ids": [2**63]},
        {"ids": [True]},
        {"ids": 1},
        {},
        {"ids": [1], "extra": 1},
        [1],
    ],
)
def test_bad_lookup_is_400(client, people, body):
    r = client.post("/users/lookup", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == 400


def test_lookup_body_not_json_is_400(client):
    r = client.post("/users/lookup", content=b"ids=1", headers={"content-type": "text/plain"})
    assert r.status_code == 400
