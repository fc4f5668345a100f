"""The web process on a primary with a real streaming replica (``streaming_pair``):
reads go to the replica, and to the primary while the replica lags or is down.

Which server ran a read is proved from the server itself: a pooled connection's last
statement, with its parameters inlined by psycopg2, is in ``pg_stat_activity``."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg2
import pytest

from tests.conftest import TEST_DB
from tests.e2e.conftest import wait_for

MAX_LAG_MS = 300


def _ran(dsn: str, fragment: str) -> bool:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE application_name = 'segments' AND query LIKE %s""",
                (f"%{fragment}%",),
            )
            return cur.fetchone()[0] > 0
    finally:
        conn.close()


class Sides:
    def __init__(self, pair) -> None:
        self.pair = pair
        self.primary = pair.dsn("primary", TEST_DB)
        self.replica = pair.dsn("replica", TEST_DB)

    def served_by(self, fragment: str) -> str:
        """The side whose backends ran ``fragment``, ``replica`` or ``primary`` (never both)."""
        on_replica, on_primary = _ran(self.replica, fragment), _ran(self.primary, fragment)
        assert on_replica != on_primary, (fragment, on_replica, on_primary)
        return "replica" if on_replica else "primary"

    def replica_sql(self, statement: str) -> None:
        conn = psycopg2.connect(self.replica)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
        conn.close()


@pytest.fixture
def web(make_stack, streaming_pair):
    sides = Sides(streaming_pair)
    stack = make_stack(
        "web",
        DATABASE_DSN=sides.primary,
        DATABASE_REPLICA_DSN=sides.replica,
        REPLICA_MAX_LAG_MS=str(MAX_LAG_MS),
        WEB_WORKERS="1",  # /ready and /metrics then speak for the one process
    )
    return stack, sides


def _serving(stack, side: str, timeout: float = 15) -> dict:
    def ready():
        body = stack.http.get("/ready").json()
        return body if body["replica"]["serving"] == side else None

    return wait_for(ready, timeout, f"reads served by the {side}")


def _gauge(stack, name: str) -> float:
    for line in stack.http.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no {name} in /metrics")


def _replica_in_use(stack) -> float:
    return _gauge(stack, "segments_replica_in_use")


def _member(stack, uid: int, segment: str) -> None:
    assert stack.http.post("/segments", json={"segment": segment}).status_code == 201
    assert stack.http.post("/users", json={"id": uid}).status_code == 201
    added = stack.http.post(f"/users/{uid}/segments", json={"add": [segment]})
    assert added.json()["added"] == [segment]


def test_reads_are_served_by_the_replica(web):
    stack, sides = web
    uid, name = 7_200_001, "REPLICA_READS"
    _member(stack, uid, name)
    body = _serving(stack, "replica")
    assert body["status"] == "ok" and body["replica"]["configured"] is True
    assert body["replica"]["lag_ms"] <= MAX_LAG_MS
    wait_for(lambda: stack.http.get(f"/users/{uid}").json()["segments"] == [name], 10, "replay")

    assert sides.served_by(f"read_user_segments({uid})") == "replica"
    found = stack.http.post("/users/lookup", json={"ids": [uid, 7_200_999]}).json()
    assert found == {"users": [{"id": uid, "segments": [name]}], "unknown": [7_200_999]}
    assert sides.served_by(f"ARRAY[{uid},7200999]") == "replica"
    held = stack.http.get(f"/users/{uid}/memberships").json()["memberships"]
    assert [m["segment"] for m in held] == [name]
    assert sides.served_by(f'"user_id" = {uid}') == "replica"
    now = datetime.now(UTC)
    report = stack.http.get(f"/users/{uid}/history?year={now.year}&month={now.month}")
    assert report.status_code == 200 and f"{uid};{name};add;" in report.text
    assert sides.served_by(f"h.user_id = {uid}") == "replica"

    listed = stack.http.get("/segments").json()["segments"]
    assert {"segment": name, "members": 1} in [
        {"segment": s["segment"], "members": s["members"]} for s in listed
    ]
    assert stack.http.get(f"/segments/{name}/users").json()["users"] == [uid]
    assert sides.served_by(f"\"name\" = '{name}'") == "replica"
    export = stack.http.get(f"/segments/{name}/users.csv")
    assert export.status_code == 200 and export.text.splitlines()[1].startswith(f"{uid};manual;")
    # Set by the lag checks: a check that caught the replica a moment behind the writes
    # above shows 0 until the next one.
    wait_for(
        lambda: (
            _replica_in_use(stack) == 1
            and 0 <= _gauge(stack, "segments_replica_lag_seconds") <= MAX_LAG_MS / 1000
        ),
        10,
        "the gauges to show the replica serving within the lag limit",
    )


def test_a_lagging_replica_hands_reads_to_the_primary(web):
    stack, sides = web
    uid, name = 7_200_101, "REPLICA_LAG"
    _member(stack, uid, name)
    _serving(stack, "replica")
    sides.replica_sql("SELECT pg_wal_replay_pause()")
    try:
        # The write's own answer comes from the primary, whatever the replica has.
        removed = stack.http.post(f"/users/{uid}/segments", json={"remove": [name]})
        assert removed.status_code == 200 and removed.json()["removed"] == [name]
        body = _serving(stack, "primary")
        assert body["status"] == "ok" and "> REPLICA_MAX_LAG_MS" in body["replica"]["reason"]
        assert stack.http.get(f"/users/{uid}").json()["segments"] == []
        assert sides.served_by(f"read_user_segments({uid})") == "primary"
        # The gauges are set by each lag check, so they may trail /ready (which adds the
        # time since the last check) by one check interval; on a loaded machine, longer.
        wait_for(
            lambda: (
                _replica_in_use(stack) == 0
                and _gauge(stack, "segments_replica_lag_seconds") > MAX_LAG_MS / 1000
            ),
            10,
            "the gauges to show the primary serving and the lag over the limit",
        )
    finally:
        sides.replica_sql("SELECT pg_wal_replay_resume()")
    _serving(stack, "replica")
    stack.http.post("/users/lookup", json={"ids": [uid, 7_200_102]})
    assert sides.served_by(f"ARRAY[{uid},7200102]") == "replica"


def test_a_stopped_replica_hands_reads_to_the_primary(web):
    stack, sides = web
    uid, name = 7_200_201, "REPLICA_DOWN"
    _member(stack, uid, name)
    _serving(stack, "replica")
    sides.pair.stop_replica()
    try:
        # Every read answers, including those between the stop and the next check.
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            got = stack.http.get(f"/users/{uid}")
            assert got.status_code == 200 and got.json()["segments"] == [name]
            assert stack.http.get(f"/users/{uid}/memberships").status_code == 200
        body = _serving(stack, "primary")
        assert stack.http.get("/ready").status_code == 200 and body["status"] == "ok"
        assert "replica unreachable" in body["replica"]["reason"]
        assert _ran(sides.primary, f"read_user_segments({uid})")
    finally:
        sides.pair.start_replica()
    _serving(stack, "replica")
    # An id of its own: the primary's connections still show their last reads of uid.
    assert stack.http.get("/users/7200202").status_code == 404
    assert sides.served_by("read_user_segments(7200202)") == "replica"


def test_ready_without_a_replica_says_so(web_only):
    body = web_only.http.get("/ready").json()
    assert body["replica"] == {
        "configured": False,
        "serving": "primary",
        "reason": "no replica configured",
        "lag_ms": None,
    }
    assert _replica_in_use(web_only) == 0
