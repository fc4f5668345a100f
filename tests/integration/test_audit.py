"""Who did it: the actor on every change (history, memberships, jobs, webhook events,
CSV, console timeline) and the audit trail of configuration changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from litestar.testing import TestClient

from models import memberships
from tests.integration.jobs import drain
from tests.integration.keys import ROOT, bearer, make_key
from tests.integration.webhooks import wait_for_delivery


@pytest.fixture
def team(locked_client: TestClient) -> dict:
    """An admin key and a writer key, and a segment and a user to change."""
    admin = bearer(make_key(locked_client, "ops", "admin")["key"])
    writer = bearer(make_key(locked_client, "checkout", "write")["key"])
    locked_client.post("/segments", json={"segment": "A"}, headers=admin)
    locked_client.post("/users", json={"id": 7}, headers=ROOT)
    return {"admin": admin, "writer": writer}


def month_csv(client: TestClient, query: str = "") -> list[str]:
    now = datetime.now(UTC)
    answer = client.get(f"/users/7/history?year={now.year}&month={now.month}{query}", headers=ROOT)
    assert answer.status_code == 200, answer.text
    return answer.text.splitlines()


def test_a_change_records_who_made_it_everywhere(locked_client, team, sql):
    api = locked_client
    hook = api.post("/webhooks", json={"url": "https://example.com/h"}, headers=team["admin"])
    api.patch("/users", json={"id": 7, "segments": ["A"]}, headers=team["writer"])
    api.request("DELETE", "/users", json={"id": 7, "segments": ["A"]}, headers=ROOT)
    sql.execute("SELECT operation, actor FROM history ORDER BY id")
    assert sql.fetchall() == [("add", "key:checkout"), ("remove", "root")]
    api.patch("/users", json={"id": 7, "segments": ["A"]}, headers=team["writer"])
    held = api.get("/users/7/memberships", headers=ROOT).json()["memberships"]
    assert [(m["segment"], m["added_by"]) for m in held] == [("A", "key:checkout")]
    lines = month_csv(api)
    assert lines[0] == "user_id;segment;operation;timestamp;reason"
    assert len(lines[1].split(";")) == 5
    lines = month_csv(api, "&actor=true")
    assert lines[0].endswith(";reason;actor")
    assert [line.rsplit(";", 1)[1] for line in lines[1:]] == [
        "key:checkout",
        "root",
        "key:checkout",
    ]
    assert api.get("/users/7/history?year=2026&month=1&actor=yes", headers=ROOT).status_code == 400
    delivery = wait_for_delivery(hook.json()["id"])
    assert [e["actor"] for e in delivery.events] == ["key:checkout", "root", "key:checkout"]


def test_a_job_carries_its_starters_actor_and_the_sweep_is_system(locked_client, team, sql):
    api = locked_client
    api.post("/segments", json={"segment": "AUTO", "auto_percent": 100}, headers=team["admin"])
    drain()
    sql.execute("SELECT reason, actor FROM history WHERE reason = 'auto'")
    assert sql.fetchall() == [("auto", "key:ops")]
    sql.execute("SELECT actor FROM jobs")
    assert sql.fetchall() == [("key:ops",)]
    api.patch("/users", json={"id": 7, "segments": ["A"], "active_time": 1}, headers=ROOT)
    sql.execute(
        "UPDATE memberships SET expires_at = now() - interval '1 s' WHERE expires_at IS NOT NULL"
    )
    memberships.expire_memberships(100)
    sql.execute("SELECT actor FROM history WHERE reason = 'ttl'")
    assert sql.fetchall() == [("system",)]


def test_without_api_token_the_actor_is_anonymous(client, sql):
    client.post("/segments", json={"segment": "A"})
    client.post("/users", json={"id": 7})
    client.patch("/users", json={"id": 7, "segments": ["A"]})
    sql.execute("SELECT actor FROM history")
    assert sql.fetchall() == [("anonymous",)]
    entries = client.get("/audit").json()["entries"]
    assert [(e["actor"], e["action"]) for e in entries] == [("anonymous", "segment.create")]


def test_configuration_changes_are_audited_in_order(locked_client, team):
    api = locked_client
    admin = team["admin"]
    api.patch("/segments", json={"segment": "A", "auto_percent": 5}, headers=admin)
    made = api.post(
        "/webhooks", json={"url": "https://e.com/h", "secret": "hush-hush-hush-hush"}, headers=admin
    )
    api.delete(f"/webhooks/{made.json()['id']}", headers=admin)
    api.request("DELETE", "/segments", json={"segment": "A"}, headers=admin)
    assert api.post("/segments", json={"segment": "B"}, headers=ROOT).status_code == 201
    assert api.post("/segments", json={"segment": "B"}, headers=ROOT).status_code == 409
    page = api.get("/audit", headers=ROOT).json()
    got = [(e["actor"], e["action"], e["target"]) for e in page["entries"]]
    assert got == [
        ("root", "key.create", "key:1"),
        ("root", "key.create", "key:2"),
        ("key:ops", "segment.create", "A"),
        ("key:ops", "segment.percent", "A"),
        ("key:ops", "webhook.create", "webhook:1"),
        ("key:ops", "webhook.delete", "webhook:1"),
        ("key:ops", "segment.delete", "A"),
        ("root", "segment.create", "B"),  # the 409 wrote nothing
    ]
    percent = page["entries"][3]["details"]
    assert percent == {"before": {"auto_percent": "0.00"}, "after": {"auto_percent": "5.00"}}
    assert "hush-hush" not in api.get("/audit", headers=ROOT).text
    assert all(e["request_id"] for e in page["entries"])
    assert page["next"] is None


def test_audit_filters_and_pages(locked_client, team):
    api = locked_client
    for name in ("C", "D", "E"):
        api.post("/segments", json={"segment": name}, headers=team["admin"])
    first = api.get("/audit?action=segment.create&limit=2", headers=ROOT).json()
    assert [e["target"] for e in first["entries"]] == ["A", "C"] and first["next"]
    rest = api.get(f"/audit?action=segment.create&after={first['next']}", headers=ROOT).json()
    assert [e["target"] for e in rest["entries"]] == ["D", "E"] and rest["next"] is None
    mine = api.get("/audit?actor=root", headers=ROOT).json()["entries"]
    assert {e["action"] for e in mine} == {"key.create"}
    for query in ("limit=0", "limit=1001", "after=-1", "action=segment.explode"):
        assert api.get(f"/audit?{query}", headers=ROOT).status_code == 400, query


def test_an_import_is_audited_and_its_events_carry_the_importer(locked_client, team, sql):
    api = locked_client
    started = api.post(
        "/segments/A/users",
        content=b"7\n",
        headers={**team["writer"], "Content-Type": "text/plain"},
    )
    assert started.status_code == 202, started.text
    drain()
    sql.execute("SELECT reason, actor FROM history")
    assert sql.fetchall() == [("import", "key:checkout")]
    sql.execute("SELECT actor, target, details->>'job_id' FROM audit WHERE action = 'import.start'")
    assert sql.fetchall() == [("key:checkout", "A", str(started.json()["job_id"]))]
