"""The invariant checker passes on states the service makes and fails on broken ones."""

from __future__ import annotations

import subprocess
import sys

import pytest

from models.verify import verify


@pytest.fixture
def state(client, sql):
    """Manual, TTL and deleted-segment activity, all through the API and the sweep."""
    for name in ("A", "B", "C"):
        client.post("/segments", json={"segment": name})
    for uid in range(1, 6):
        client.post("/users", json={"id": uid})
        client.patch("/users", json={"id": uid, "segments": ["A", "B"], "active_time": 60})
    client.request("DELETE", "/users", json={"id": 1, "segments": ["A"]})
    client.patch("/users", json={"id": 1, "segments": ["A", "C"]})
    sql.execute("UPDATE memberships SET expires_at = now() - interval '1 second' WHERE user_id = 2")
    client.request("DELETE", "/segments", json={"segment": "C"})


def test_consistent_state_passes(state):
    report = verify()
    assert report["ok"], report
    assert report["memberships"] > 0


def test_cli_exit_code(state, sql):
    ok = subprocess.run([sys.executable, "-m", "models.verify"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    sql.execute("DELETE FROM history WHERE id = (SELECT max(id) FROM history)")
    bad = subprocess.run([sys.executable, "-m", "models.verify"], capture_output=True, text=True)
    assert bad.returncode == 1 and '"ok": false' in bad.stdout


@pytest.mark.parametrize(
    ("corruption", "violation"),
    [
        ("DELETE FROM history WHERE operation = 'remove'", "events_out_of_order"),
        (
            "INSERT INTO memberships (user_id, segment_id, source) "
            "VALUES (5, (SELECT id FROM segments WHERE name = 'C'), 'manual')",
            "membership_without_add_event",
        ),
        ("DELETE FROM memberships WHERE user_id = 3", "add_event_without_membership"),
        (
            "INSERT INTO history (user_id, segment_id, operation, reason, at) "
            "SELECT user_id, segment_id, 'add', 'manual', now() FROM memberships LIMIT 1",
            "events_out_of_order",
        ),
        ("UPDATE memberships SET source = 'auto' WHERE user_id = 4", "auto_member_outside_bucket"),
        (
            "WITH j AS (INSERT INTO jobs (kind, segment_id, state, params) "
            """SELECT 'import', id, 'done', '{"upload": 1}' FROM segments LIMIT 1) """
            "INSERT INTO import_staging (upload_id, user_id) VALUES (1, 1)",
            "staged_ids_of_an_ended_job",
        ),
    ],
)
def test_broken_states_are_caught(state, sql, corruption, violation):
    if violation == "auto_member_outside_bucket":
        # Make the bucket rule exclude everyone; no job is unfinished in this state.
        sql.execute("UPDATE jobs SET state = 'done'")
    sql.execute(corruption)
    report = verify()
    assert not report["ok"]
    assert violation in report["violations"], report
