"""Hostile input, size limits, access control, request ids and metrics."""

from __future__ import annotations

import logging

import pytest
from litestar.testing import TestClient


def assert_nothing_changed(sql):
    sql.execute("SELECT (SELECT count(*) FROM memberships), (SELECT count(*) FROM history)")
    assert sql.fetchone() == (0, 0)


def test_body_over_one_mib_is_413(seeded, sql):
    body = b'{"id": 1, "segments": ["' + b"A" * (1024 * 1024) + b'"]}'
    r = seeded.patch("/users", content=body)
    assert r.status_code == 413
    assert r.json()["status"] == 413
    assert_nothing_changed(sql)


def test_more_than_1000_names_is_400(seeded, sql):
    r = seeded.patch("/users", json={"id": 1, "segments": [f"S{i}" for i in range(1001)]})
    assert r.status_code == 400
    assert_nothing_changed(sql)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"id": 1, "segments": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"id": 1, "segments": ["A\\u0000"]}',
        b'{"id": 1, "segments": ["A\x00"]}',
        b'{"id": 1, "segments": ["A\'; DROP TABLE users; --"]}',
        b'{"id": 1, "segments": ["A", {"$gt": ""}]}',
        b'{"id": 1e400, "segments": ["A"]}',
        b'{"id": 99999999999999999999999999, "segments": ["A"]}',
        b'{"id": 1, "segments": ["A"], "active_time": 1e308}',
        b'{"id": 1, "segments": ["A"], "active_time": 9223372036854775807}',
        b'{"id": 1, "id": 2, "segments": ["A"]}',
        '\ufeff{"id": 1}'.encode(),
    ],
)
def test_hostile_bodies_get_a_clear_4xx_and_change_nothing(seeded, sql, body):
    r = seeded.patch("/users", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["status"] == r.status_code
    assert "Traceback" not in r.text and "psycopg2" not in r.text
    if r.status_code != 200:
        assert_nothing_changed(sql)


@pytest.mark.parametrize(
    "path",
    [
        "/users/1%00",
        "/segments/A%00B",
        "/segments/" + "x" * 5000,
        "/history?year=2023&month=8&" + "x=1&" * 2000,
        "/users/1/history?year=2023%00&month=8",
        "/segments/A/users?limit=1;DROP",
    ],
)
def test_hostile_paths_and_queries(seeded, path):
    r = seeded.get(path)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["status"] == r.status_code


def test_token_required_everywhere_but_health_and_ready(locked_client, caplog):
    c = locked_client
    assert c.get("/health").status_code == 200
    assert c.get("/ready").status_code == 200
    for method, path in [
        ("GET", "/users/1"),
        ("POST", "/users"),
        ("GET", "/segments"),
        ("GET", "/history?year=2023&month=1"),
        ("GET", "/metrics"),
        ("GET", "/docs/openapi.json"),
        ("GET", "/jobs/1"),
    ]:
        r = c.request(method, path, json={"id": 1} if method == "POST" else None)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["status"] == 401
    wrong = {"Authorization": "Bearer s3cret-tokeN"}
    assert c.get("/segments", headers=wrong).status_code == 401
    assert c.get("/segments", headers={"Authorization": "s3cret-token"}).status_code == 401
    good = {"Authorization": "Bearer s3cret-token"}
    assert c.post("/users", json={"id": 1}, headers=good).status_code == 201
    assert c.get("/users/1", headers=good).status_code == 200
    assert "s3cret-token" not in caplog.text


def test_open_mode_is_announced(app_with, caplog):
    with caplog.at_level(logging.WARNING):
        app_with(api_token=None)
    assert "API_TOKEN not set" in caplog.text


def test_password_never_reaches_a_client_or_the_log(clean_db, app_with, caplog):
    app = app_with(
        database_dsn="host=127.0.0.1 port=1 user=nobody dbname=x",
        database_password="hunter2-secret",
        db_pool_timeout=0.5,
    )
    with TestClient(app=app) as c:
        r = c.get("/users/1")
        assert r.status_code == 503
        ready = c.get("/ready")
        assert ready.status_code == 503
    assert "database unavailable" in caplog.text
    for text in (r.text, ready.text, caplog.text):
        assert "hunter2-secret" not in text


def test_request_id_is_echoed_or_made_up(client):
    r = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    made_up = {client.get("/health").headers["x-request-id"] for _ in range(3)}
    assert len(made_up) == 3 and all(len(rid) > 12 for rid in made_up)
    evil = client.get("/health", headers={"X-Request-ID": 'a b"<' * 30})
    assert evil.headers["x-request-id"] != 'a b"<' * 30


def test_metrics(client):
    client.post("/segments", json={"segment": "M", "auto_percent": 5})
    client.get("/users/1")
    text = client.get("/metrics").text
    assert 'segments_jobs{kind="assign_auto"' in text
    assert "segments_queue_lag_seconds" in text
    assert "segments_http_request_duration_seconds_bucket" in text
    # Labelled by route template, so ids in paths never multiply the series.
    assert 'route="/users/{user_id}",status="404"' in text
    assert 'route="/users/1"' not in text


def test_ready_names_the_broker_and_keeps_the_old_redis_key(client):
    # On Redis (the test settings) the broker's check is also under "redis", as before
    # BROKER_URL; on RabbitMQ there is no such key (tests/e2e/test_devservices_restart.py).
    assert client.get("/ready").json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "redis": "ok"},
        "broker": "redis",
        "replica": {
            "configured": False,
            "serving": "primary",
            "reason": "no replica configured",
            "lag_ms": None,
        },
    }
