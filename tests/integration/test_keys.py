"""API keys in-process (API_TOKEN set): made, shown once, stored as a hash, scoped,
expired, revoked, rotated; bad input refused; guessing slowed down."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from tests.integration.keys import ROOT, bearer, make_key
from web.throttle import LIMIT


@pytest.fixture
def api(locked_client: TestClient) -> TestClient:
    return locked_client


def eventually(check: Callable[[], bool], within: float = 1.0) -> float:
    """Seconds until ``check`` holds; fails past ``within``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, "not within the bound"
        time.sleep(0.02)
    return time.monotonic() - started


def test_a_key_is_shown_once_and_stored_as_a_hash(api, sql):
    made = make_key(api, "checkout-service", "read")
    key = made["key"]
    assert key.startswith("sgk_") and len(key) >= 40 and made["prefix"] == key[:12]
    assert set(made) >= {"id", "name", "scope", "prefix", "created_at", "expires_at"}
    listed = api.get("/keys", headers=ROOT).json()["keys"]
    one = api.get(f"/keys/{made['id']}", headers=ROOT).json()
    assert "key" not in listed[0] and "key" not in one
    assert key not in api.get("/keys", headers=ROOT).text
    sql.execute("SELECT hash, prefix FROM api_keys")
    assert sql.fetchall() == [(hashlib.sha256(key.encode()).hexdigest(), key[:12])]
    sql.execute("SELECT count(*) FROM audit WHERE details::text LIKE %s", (f"%{key}%",))
    assert sql.fetchone()[0] == 0


def test_each_scope_opens_its_routes_only(api):
    reader = bearer(make_key(api, "reader", "read")["key"])
    writer = bearer(make_key(api, "writer", "write")["key"])
    admin = bearer(make_key(api, "admin", "admin")["key"])
    assert api.post("/segments", json={"segment": "A"}, headers=admin).status_code == 201
    assert api.post("/users", json={"id": 1}, headers=writer).status_code == 201
    assert api.patch("/users", json={"id": 1, "segments": ["A"]}, headers=writer).status_code == 200
    assert api.get("/users/1", headers=reader).json() == {"id": 1, "segments": ["A"]}
    assert api.post("/users/lookup", json={"ids": [1]}, headers=reader).status_code == 200
    assert api.head("/segments", headers=reader).status_code == 200
    refused = api.post("/users", json={"id": 2}, headers=reader)
    assert refused.status_code == 403 and "'write'" in refused.json()["error"]
    refused = api.post("/segments", json={"segment": "B"}, headers=writer)
    assert refused.status_code == 403 and "'admin'" in refused.json()["error"]
    assert api.get("/keys", headers=writer).status_code == 403
    assert api.get("/audit", headers=reader).status_code == 403
    assert api.get("/segments", headers=ROOT).status_code == 200
    assert api.get("/users/2", headers=ROOT).status_code == 404  # nothing was made


def test_missing_or_unknown_keys_are_401_with_the_scheme(api):
    for headers in ({}, bearer("sgk_" + "x" * 43), bearer("nope"), {"Authorization": "Basic x"}):
        answer = api.get("/segments", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
    key = make_key(api, "lower", "read")["key"]
    assert api.get("/segments", headers={"Authorization": f"bearer {key}"}).status_code == 200


def test_revoking_refuses_the_key_within_a_second(api):
    made = make_key(api, "leaked", "read")
    headers = bearer(made["key"])
    assert api.get("/segments", headers=headers).status_code == 200
    revoked = api.delete(f"/keys/{made['id']}", headers=ROOT)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    eventually(lambda: api.get("/segments", headers=headers).status_code == 401)
    again = api.delete(f"/keys/{made['id']}", headers=ROOT)
    assert again.status_code == 409 and "already revoked" in again.json()["error"]
    rotate = api.post(f"/keys/{made['id']}/rotate", json={}, headers=ROOT)
    assert rotate.status_code == 409
    assert api.delete("/keys/999", headers=ROOT).status_code == 404


def test_rotation_keeps_the_old_key_for_its_grace(api):
    old = make_key(api, "checkout", "write")
    rotated = api.post(f"/keys/{old['id']}/rotate", json={"grace_seconds": 60}, headers=ROOT)
    assert rotated.status_code == 201
    new = rotated.json()
    assert (new["name"], new["scope"]) == ("checkout", "write") and new["key"] != old["key"]
    assert api.get("/segments", headers=bearer(new["key"])).status_code == 200
    assert api.get("/segments", headers=bearer(old["key"])).status_code == 200
    twice = api.post(f"/keys/{old['id']}/rotate", json={}, headers=ROOT)
    assert twice.status_code == 409 and "successor" in twice.json()["error"]
    now = api.post(f"/keys/{new['id']}/rotate", json={"grace_seconds": 0}, headers=ROOT)
    assert now.status_code == 201
    eventually(lambda: api.get("/segments", headers=bearer(new["key"])).status_code == 401)
    assert api.get("/segments", headers=bearer(now.json()["key"])).status_code == 200


def test_a_key_stops_working_when_it_expires(api):
    soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    made = make_key(api, "temp", "read", expires_at=soon)
    assert api.get("/segments", headers=bearer(made["key"])).status_code == 200
    time.sleep(1.6)
    assert api.get("/segments", headers=bearer(made["key"])).status_code == 401


def test_last_use_is_kept_without_a_write_per_request(api):
    made = make_key(api, "used", "read")
    api.get("/segments", headers=bearer(made["key"]))
    assert api.get(f"/keys/{made['id']}", headers=ROOT).json()["last_used_at"] is None
    api.app.state.auth.keyring.flush()  # what the keyring does every few seconds
    assert api.get(f"/keys/{made['id']}", headers=ROOT).json()["last_used_at"] is not None


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": "x", "scope": "owner"}, "scope"),
        ({"name": "", "scope": "read"}, "name"),
        ({"name": " padded", "scope": "read"}, "name"),
        ({"scope": "read"}, "name"),
        ({"name": "x", "scope": "read", "expires_at": "2020-01-01T00:00:00Z"}, "future"),
        ({"name": "x", "scope": "read", "expires_at": "2099-01-01T00:00:00"}, "expires_at"),
        ({"name": "x", "scope": "read", "extra": 1}, "extra"),
    ],
)
def test_bad_key_requests_are_400_and_make_nothing(api, sql, body, says):
    answer = api.post("/keys", json=body, headers=ROOT)
    assert answer.status_code == 400 and says in answer.text, answer.text
    sql.execute("SELECT count(*) FROM api_keys")
    assert sql.fetchone()[0] == 0


def test_a_duplicate_looking_name_is_409(api, sql):
    make_key(api, "checkout", "read")
    answer = api.post("/keys", json={"name": "Checkout", "scope": "admin"}, headers=ROOT)
    assert answer.status_code == 409 and "revoke or rotate" in answer.json()["error"]
    sql.execute("SELECT count(*) FROM api_keys")
    assert sql.fetchone()[0] == 1


def test_a_key_in_the_query_string_is_refused(api):
    key = make_key(api, "q", "admin")["key"]
    for query in (f"api_key={key}", f"token={key}", f"x={key}"):
        answer = api.post(f"/segments?{query}", json={"segment": "Q"}, headers=bearer(key))
        assert answer.status_code == 400 and "Authorization header" in answer.json()["error"]
    assert api.get("/segments/Q", headers=ROOT).status_code == 404


def test_bad_grace_is_400(api):
    made = make_key(api, "g", "read")
    for body in ({"grace_seconds": -1}, {"grace_seconds": 10**9}, {"grace": 1}):
        assert api.post(f"/keys/{made['id']}/rotate", json=body, headers=ROOT).status_code == 400
    assert api.get(f"/keys/{made['id']}", headers=ROOT).json()["revoked_at"] is None


def test_without_api_token_keys_say_how_to_turn_auth_on(client):
    answer = client.post("/keys", json={"name": "x", "scope": "read"})
    assert answer.status_code == 409 and "API_TOKEN" in answer.json()["error"]
    assert client.get("/keys").status_code == 409
    assert client.get("/segments").status_code == 200  # still open


@pytest.fixture
def fresh_throttle(api) -> Iterator[None]:
    throttle = api.app.state.auth.throttle
    throttle._failures.clear()
    yield
    throttle._failures.clear()


def failures(reason: str) -> float:
    return REGISTRY.get_sample_value("segments_auth_failures_total", {"reason": reason}) or 0


def test_repeated_failures_from_one_address_are_slowed_down(api, fresh_throttle, caplog):
    wrong = "sgk_" + "w" * 43
    before = failures("unknown")
    with caplog.at_level(logging.WARNING, logger="web.auth"):
        for _ in range(LIMIT):
            assert api.get("/segments", headers=bearer(wrong)).status_code == 401
    assert failures("unknown") - before == LIMIT
    assert wrong not in caplog.text and "authentication refused (unknown)" in caplog.text
    blocked = api.get("/segments", headers=ROOT)  # even the right credential: no oracle
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    assert failures("throttled") >= 1
