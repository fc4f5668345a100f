"""/segments: create, delete, read, list, page members."""

from __future__ import annotations

import pytest
from dramatiq import Message

from tests.integration.jobs import run_job


def test_create_segment(client):
    r = client.post("/segments", json={"segment": "AVITO_VOICE_MESSAGES"})
    assert r.status_code == 201
    body = r.json()
    assert body["segment"] == "AVITO_VOICE_MESSAGES" and body["auto_percent"] == 0
    assert "job_id" not in body


def test_create_auto_segment_returns_job(client, stub_broker):
    r = client.post("/segments", json={"segment": "AUTO", "auto_percent": 12.5})
    assert r.status_code == 201
    assert r.json()["auto_percent"] == 12.5
    job_id = r.json()["job_id"]
    job = client.get(f"/jobs/{job_id}").json()
    # Recorded and sent, not run: no worker runs in-process until a test drains the queue.
    assert job["kind"] == "assign_auto" and job["state"] == "queued" and job["done"] == 0
    assert job["params"] == {"low": 0, "high": 1250, "reason": "auto"}
    sent = [Message.decode(m) for m in stub_broker.queues["jobs"].queue]
    assert [(m.actor_name, m.args) for m in sent] == [("run_job", (job_id,))]
    run_job(job_id)
    job = client.get(f"/jobs/{job_id}").json()
    assert job["state"] == "done" and job["attempts"] == 1 and job["error"] is None


def test_names_are_case_sensitive_and_unique_among_live(client):
    assert client.post("/segments", json={"segment": "a.b-c_D9"}).status_code == 201
    assert client.post("/segments", json={"segment": "A.B-C_D9"}).status_code == 201
    r = client.post("/segments", json={"segment": "a.b-c_D9"})
    assert r.status_code == 409 and r.json()["details"]["segment"] == "a.b-c_D9"


@pytest.mark.parametrize(
    "body",
    [
        {"segment": ""},
        {"segment": "x" * 65},
        {"segment": "with space"},
        {"segment": "semi;colon"},
        {"segment": "TRAILING_NEWLINE\n"},
        {"segment": "кириллица"},
        {"segment": 5},
        {"segment": "A", "auto_percent": -1},
        {"segment": "A", "auto_percent": 100.01},
        {"segment": "A", "auto_percent": 12.345},
        {"segment": "A", "auto_percent": "10"},
        {"segment": "A", "auto_percent": None},
        {"segment": "A", "percent": 10},
        {},
    ],
)
def test_create_segment_rejects_bad_input(client, sql, body):
    r = client.post("/segments", json=body)
    assert r.status_code == 400, r.text
    sql.execute("SELECT count(*) FROM segments")
    assert sql.fetchone()[0] == 0


def test_64_character_name_and_percent_bounds(client):
    assert client.post("/segments", json={"segment": "x" * 64}).status_code == 201
    assert client.post("/segments", json={"segment": "P0", "auto_percent": 0}).status_code == 201
    r = client.post("/segments", json={"segment": "P100", "auto_percent": 100})
    assert r.status_code == 201 and r.json()["auto_percent"] == 100


def test_delete_hides_segment_everywhere_at_once_and_frees_its_name(client, sql):
    client.post("/segments", json={"segment": "A"})
    client.post("/segments", json={"segment": "B"})
    client.post("/users", json={"id": 1})
    client.patch("/users", json={"id": 1, "segments": ["A", "B"]})
    r = client.request("DELETE", "/segments", json={"segment": "A"})
    assert r.status_code == 200 and r.json()["segment"] == "A"
    assert isinstance(r.json()["job_id"], int)
    assert client.get("/users/1").json()["segments"] == ["B"]
    assert client.get("/segments/A").status_code == 404
    assert [s["segment"] for s in client.get("/segments").json()["segments"]] == ["B"]
    assert client.patch("/users", json={"id": 1, "segments": ["A"]}).status_code == 404
    # The name is free again: a new, empty segment.
    assert client.post("/segments", json={"segment": "A"}).status_code == 201
    assert client.get("/segments/A").json()["members"] == 0
    assert client.get("/users/1").json()["segments"] == ["B"]


def test_delete_unknown_segment_is_404(client):
    r = client.request("DELETE", "/segments", json={"segment": "NOPE"})
    assert r.status_code == 404
    client.post("/segments", json={"segment": "ONCE"})
    client.request("DELETE", "/segments", json={"segment": "ONCE"})
    assert client.request("DELETE", "/segments", json={"segment": "ONCE"}).status_code == 404


def test_list_and_read_with_member_counts(client):
    for name in ("B", "A"):
        client.post("/segments", json={"segment": name})
    for uid in (1, 2, 3):
        client.post("/users", json={"id": uid})
        client.patch("/users", json={"id": uid, "segments": ["A"]})
    client.patch("/users", json={"id": 1, "segments": ["B"]})
    listed = client.get("/segments").json()["segments"]
    assert [(s["segment"], s["members"]) for s in listed] == [("A", 3), ("B", 1)]
    assert client.get("/segments/A").json()["members"] == 3
    assert client.get("/segments/bad%20name").status_code == 400


def test_members_are_paginated_by_user_id(client, sql):
    client.post("/segments", json={"segment": "A"})
    sql.execute("INSERT INTO users (id) SELECT g FROM generate_series(1, 25) g")
    sql.execute(
        "INSERT INTO memberships (user_id, segment_id, source) "
        "SELECT g, (SELECT id FROM segments), 'manual' FROM generate_series(1, 25) g"
    )
    seen, after = [], 0
    while True:
        page = client.get(f"/segments/A/users?after={after}&limit=10").json()
        seen += page["users"]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == list(range(1, 26))
    for bad in ("limit=0", "limit=10001", "after=-1", "limit=x"):
        assert client.get(f"/segments/A/users?{bad}").status_code == 400
    assert client.get("/segments/NOPE/users").status_code == 404


def test_unknown_job_is_404_and_bad_id_400(client):
    assert client.get("/jobs/999").status_code == 404
    assert client.get("/jobs/abc").status_code == 400


def test_openapi_document_and_docs_page(client):
    doc = client.get("/docs/openapi.json")
    assert doc.status_code == 200
    paths = doc.json()["paths"]
    for path in (
        "/segments",
        "/users",
        "/users/{user_id}",
        "/users/{user_id}/history",
        "/history",
        "/jobs/{job_id}",
        "/health",
        "/ready",
    ):
        assert path in paths, path
    assert client.get("/docs").status_code == 200
