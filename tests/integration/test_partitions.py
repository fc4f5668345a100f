"""History's monthly partitions: made ahead, filled from the default, dropped past
retention; what a dropped month means for the CSV report, the checker and the feed."""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime

import psycopg2
import pytest
from litestar.testing import TestClient

from models import history, partitions, webhooks
from models.infra.db import db, fetchall
from models.months import add_months, month_bounds, month_of
from models.partitions import partition_name
from models.verify import verify
from tests.integration.jobs import drain
from tests.integration.webhooks import wait_for_delivery
from workers.actors import maintain_history
from workers.scheduler import tick

TODAY = datetime.now(UTC).date()
CURRENT = month_of(TODAY)


def _partitions() -> list[date]:
    with db.connection_context():
        return partitions.monthly_partitions()


@pytest.fixture
def keep_partitions(clean_db):
    """Whatever partitions a test makes or drops, the next test finds the ones before."""
    before = _partitions()
    yield
    after = _partitions()
    for month in set(after) - set(before):
        partitions.drop_month(month)
    for month in set(before) - set(after):
        partitions.create_month(month)


@pytest.fixture
def user_in_a(client, keep_partitions, sql) -> int:
    """User 1 and segment A; returns A's id."""
    client.post("/segments", json={"segment": "A"})
    client.post("/users", json={"id": 1})
    sql.execute("SELECT id FROM segments WHERE name = 'A'")
    return sql.fetchone()[0]


def _event(sql, segment: int, at: datetime | str, operation: str = "add") -> tuple:
    """Write one event at ``at``; returns (id, txid, the table it landed in)."""
    sql.execute(
        """INSERT INTO history (user_id, segment_id, operation, reason, at)
           VALUES (1, %s, %s, 'manual', %s)
           RETURNING id, txid::text, tableoid::regclass::text""",
        (segment, operation, at),
    )
    return sql.fetchone()


def _where(sql, event_id: int) -> tuple:
    sql.execute(
        "SELECT id, txid::text, tableoid::regclass::text FROM history WHERE id = %s",
        (event_id,),
    )
    return sql.fetchone()


def _mid(month: date) -> datetime:
    return datetime(month.year, month.month, 15, 12, tzinfo=UTC)


def test_current_month_and_two_ahead_exist():
    assert {add_months(CURRENT, n) for n in range(3)} <= set(_partitions())


def test_an_event_past_the_partitions_lands_in_the_default_and_moves_when_its_month_is_made(
    user_in_a, sql
):
    ahead = add_months(CURRENT, 5)
    event_id, txid, table = _event(sql, user_in_a, _mid(ahead))
    assert table == "history_default"
    sql.execute("UPDATE history SET actor = 'key:mover' WHERE id = %s", (event_id,))
    far = _event(sql, user_in_a, "2300-01-01 00:00:00+00")  # no insert fails
    assert far[2] == "history_default"

    # Three months on, the scheduler makes that month (and those before it) ahead.
    done = partitions.maintain(add_months(TODAY, 3), None)
    assert done.created == [add_months(CURRENT, n) for n in (3, 4, 5)]
    assert done.moved == 1
    assert _where(sql, event_id) == (event_id, txid, partition_name(ahead))  # same id, txid
    sql.execute("SELECT actor FROM history WHERE id = %s", (event_id,))
    assert sql.fetchone() == ("key:mover",)  # and who made it
    assert _where(sql, far[0]) == far  # outside every partition made: stays
    sql.execute("SELECT count(*), count(DISTINCT id) FROM history")
    assert sql.fetchone() == (2, 2)
    # Nothing left to do: the next tick makes nothing.
    assert partitions.maintain(add_months(TODAY, 3), None).created == []


def test_an_earlier_month_with_events_waiting_in_the_default_is_made(user_in_a, sql):
    # Written while no partition covered their month (the scheduler was down).
    earlier = add_months(CURRENT, -2)
    event_id, _, table = _event(sql, user_in_a, _mid(earlier))
    assert table == "history_default"
    older = _event(sql, user_in_a, _mid(add_months(CURRENT, -9)))
    done = partitions.maintain(TODAY, None)
    assert done.created == [add_months(CURRENT, -9), earlier] and done.moved == 2
    assert _where(sql, event_id)[2] == partition_name(earlier)
    assert _where(sql, older[0])[2] == partition_name(add_months(CURRENT, -9))


def test_events_older_than_retention_stay_in_the_default(user_in_a, sql):
    old = _event(sql, user_in_a, _mid(add_months(CURRENT, -9)))
    assert partitions.maintain(TODAY, 6).created == []
    assert _where(sql, old[0]) == old


def test_the_scheduler_tick_makes_a_missing_month_through_a_worker(keep_partitions, stub_broker):
    partitions.drop_month(add_months(CURRENT, 2))
    assert add_months(CURRENT, 2) not in _partitions()
    tick(maintain_history)
    drain(queue="periodic")
    assert add_months(CURRENT, 2) in _partitions()


def test_a_months_report_reads_its_partition_only(client, keep_partitions):
    start, end = month_bounds(CURRENT.year, CURRENT.month)
    with db.connection_context():
        plan = "\n".join(
            r[0]
            for r in fetchall(
                f"EXPLAIN {history.BATCH_SQL}", history.batch_params(None, start, end)
            )
        )
    assert partition_name(CURRENT) in plan, plan
    others = {partition_name(m) for m in _partitions()} - {partition_name(CURRENT)}
    assert not any(name in plan for name in others | {"history_default"}), plan


@pytest.fixture
def old_months(user_in_a, sql) -> dict:
    """Partitions for 8, 7 and 6 months ago. User 1 was added to A 8 months ago, removed
    6 months ago, and added again now (and holds it)."""
    months = {n: add_months(CURRENT, -n) for n in (9, 8, 7, 6, 0)}
    for n in (8, 7, 6):
        partitions.create_month(months[n])
    events = {
        8: _event(sql, user_in_a, _mid(months[8]), "add"),
        6: _event(sql, user_in_a, _mid(months[6]), "remove"),
        0: _event(sql, user_in_a, datetime.now(UTC), "add"),
    }
    sql.execute(
        "INSERT INTO memberships (user_id, segment_id, source, added_at) "
        "VALUES (1, %s, 'manual', now())",
        (user_in_a,),
    )
    return {"months": months, "events": events, "segment": user_in_a}


def _query(month: date, path: str = "/history") -> str:
    return f"{path}?year={month.year}&month={month.month}"


def _csv(client: TestClient, month: date, path: str = "/history"):
    return client.get(_query(month, path))


def test_retention_drops_whole_months_and_their_reports_are_410(app_with, old_months, sql):
    months, events = old_months["months"], old_months["events"]
    # A month with no partition: its event is in the default.
    events[9] = _event(sql, old_months["segment"], _mid(months[9]), "remove")
    assert events[9][2] == "history_default"
    with TestClient(app=app_with(history_retention_months=6)) as client:
        for path in ("/history", "/users/1/history"):
            r = _csv(client, months[7], path)
            assert r.status_code == 410, r.text
            assert r.json() == {
                "status": 410,
                "error": f"history before {months[6]:%Y-%m} is not kept: "
                "HISTORY_RETENTION_MONTHS=6",
                "details": {"kept_from": f"{months[6]:%Y-%m}", "retention_months": 6},
            }
            assert client.head(_query(months[8], path)).status_code == 410
            assert _csv(client, months[6], path).status_code == 200
        assert len(_csv(client, months[6]).text.splitlines()) == 2  # header + the event

        done = partitions.maintain(TODAY, 6)
        assert done.dropped == [months[8], months[7]]
        assert months[8] not in _partitions() and months[7] not in _partitions()
        sql.execute("SELECT to_regclass(%s)", (partition_name(months[8]),))
        assert sql.fetchone()[0] is None  # dropped, not only detached
        sql.execute("SELECT id FROM history ORDER BY id")
        # The default is outside retention: its event 9 months old stays.
        assert [r[0] for r in sql.fetchall()] == sorted(events[n][0] for n in (9, 6, 0))
        assert _csv(client, months[8]).status_code == 410
        assert _csv(client, months[6]).status_code == 200
    # Without retention, the same request is an ordinary (now empty) report.
    with TestClient(app=app_with()) as client:
        assert _csv(client, months[8]).text == history.CSV_HEADER


def test_the_checker_knows_dropped_months_are_gone(old_months, sql):
    assert verify(None, TODAY)["ok"]
    # The remove 6 months ago is now the pair's first kept event. Without retention,
    # that is a broken history.
    partitions.maintain(TODAY, 6)
    assert verify(6, TODAY)["ok"], verify(6, TODAY)
    assert "events_out_of_order" in verify(None, TODAY)["violations"]


def test_the_checker_passes_a_membership_whose_add_event_was_dropped(user_in_a, sql):
    month = add_months(CURRENT, -8)
    partitions.create_month(month)
    _event(sql, user_in_a, _mid(month), "add")
    sql.execute(
        "INSERT INTO memberships (user_id, segment_id, source, added_at) "
        "VALUES (1, %s, 'manual', %s)",
        (user_in_a, _mid(month)),
    )
    assert verify()["ok"]
    assert partitions.maintain(TODAY, 6).dropped == [month]
    assert verify(6, TODAY)["ok"], verify(6, TODAY)
    assert "membership_without_add_event" in verify(None, TODAY)["violations"]
    # A membership added inside the kept months still needs its event.
    sql.execute("UPDATE memberships SET added_at = now()")
    assert "membership_without_add_event" in verify(6, TODAY)["violations"]


def test_the_webhook_feed_moves_on_past_a_dropped_month(user_in_a, sql):
    month = add_months(CURRENT, -8)
    partitions.create_month(month)
    hook = webhooks.create_webhook("http://127.0.0.1:9/hook", None, None)
    first = _event(sql, user_in_a, _mid(month))
    _event(sql, user_in_a, _mid(month))  # after the cursor, dropped before it is sent
    latest = _event(sql, user_in_a, datetime.now(UTC))
    # The cursor stands on an event of the month about to be dropped.
    sql.execute(
        "UPDATE webhooks SET cursor_txid = %s::xid8, cursor_id = %s WHERE id = %s",
        (first[1], first[0], hook.id),
    )
    assert partitions.maintain(TODAY, 6).dropped == [month]
    delivery = wait_for_delivery(hook.id)
    assert [e["id"] for e in delivery.events] == [latest[0]]
    webhooks.acknowledge(delivery)
    assert webhooks.claim_delivery(hook.id) is None


def test_maintenance_gives_up_on_a_busy_history_instead_of_queueing(keep_partitions):
    partitions.drop_month(add_months(CURRENT, 2))
    reader = psycopg2.connect(os.environ["DATABASE_DSN"])  # a long report, say
    try:
        reader.cursor().execute("LOCK TABLE history IN ACCESS SHARE MODE")
        started = time.monotonic()
        assert partitions.maintain(TODAY, None).created == []
        assert time.monotonic() - started < 10
    finally:
        reader.close()
    assert partitions.maintain(TODAY, None).created == [add_months(CURRENT, 2)]
