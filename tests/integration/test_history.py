"""The CSV history reports."""

from __future__ import annotations

import pytest

from models import history

HEADER = "user_id;segment;operation;timestamp;reason"


@pytest.fixture
def events(client, sql):
    """User 1 and 2 with events around the August/September 2023 boundary."""
    client.post("/segments", json={"segment": "AVITO_VOICE_MESSAGES"})
    for uid in (1, 2):
        client.post("/users", json={"id": uid})
    sql.execute(
        """INSERT INTO history (user_id, segment_id, operation, reason, at)
           SELECT u, (SELECT id FROM segments), op, reason, at::timestamptz FROM (VALUES
             (1, 'add', 'manual', '2023-07-31 23:59:59.999999+00'),
             (1, 'add', 'manual', '2023-08-01 00:00:00+00'),
             (2, 'add', 'auto',   '2023-08-15 12:30:00+00'),
             (1, 'remove', 'ttl', '2023-08-31 23:59:59+00'),
             (1, 'add', 'manual', '2023-09-01 00:00:00+00')
           ) AS v(u, op, reason, at)"""
    )


def test_user_history_csv(client, events):
    r = client.get("/users/1/history?year=2023&month=8")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.text.splitlines() == [
        HEADER,
        "1;AVITO_VOICE_MESSAGES;add;2023-08-01T00:00:00Z;manual",
        "1;AVITO_VOICE_MESSAGES;remove;2023-08-31T23:59:59Z;ttl",
    ]


def test_all_users_history_csv(client, events):
    r = client.get("/history?year=2023&month=8")
    assert r.status_code == 200
    assert r.text.splitlines() == [
        HEADER,
        "1;AVITO_VOICE_MESSAGES;add;2023-08-01T00:00:00Z;manual",
        "2;AVITO_VOICE_MESSAGES;add;2023-08-15T12:30:00Z;auto",
        "1;AVITO_VOICE_MESSAGES;remove;2023-08-31T23:59:59Z;ttl",
    ]


def test_december_rolls_over_to_next_year(client, sql, events):
    sql.execute("UPDATE history SET at = at + interval '4 months'")
    lines = client.get("/history?year=2023&month=12").text.splitlines()
    assert len(lines) == 4 and lines[-1].endswith("2023-12-31T23:59:59Z;ttl")


def test_empty_month_has_only_the_header(client, events):
    assert client.get("/users/2/history?year=2020&month=1").text == HEADER + "\n"


@pytest.mark.parametrize(
    "query",
    [
        "",
        "year=2023",
        "month=8",
        "year=2023&month=0",
        "year=2023&month=13",
        "year=abc&month=8",
        "year=2023&month=8.5",
        "year=99999&month=1",
        "year=&month=",
    ],
)
def test_bad_year_or_month_is_400(client, events, query):
    for path in ("/users/1/history", "/history"):
        r = client.get(f"{path}?{query}")
        assert r.status_code == 400, (path, query, r.text)
        assert r.json()["status"] == 400


def test_unknown_user_is_404_and_bad_id_400(client, events):
    assert client.get("/users/999/history?year=2023&month=8").status_code == 404
    assert client.get("/users/0/history?year=2023&month=8").status_code == 400


def test_report_streams_in_keyset_batches_in_time_order(client, sql):
    client.post("/segments", json={"segment": "S"})
    client.post("/users", json={"id": 1})
    n = history.BATCH * 2 + 7
    # Many events share a timestamp: order and paging must still be exact (by id).
    sql.execute(
        """INSERT INTO history (user_id, segment_id, operation, reason, at)
           SELECT 1, (SELECT id FROM segments), 'add', 'manual',
                  '2024-02-01'::timestamptz + (g / 3) * interval '1 second'
           FROM generate_series(%s, 1, -1) g""",
        (n,),
    )
    lines = client.get("/history?year=2024&month=2").text.splitlines()
    assert lines[0] == HEADER
    assert len(lines) == n + 1
    # Exactly the rows in (at, id) order: a row skipped or repeated at a batch boundary
    # would shift the run of equal timestamps it belongs to.
    sql.execute(
        """SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
           FROM history ORDER BY at, id"""
    )
    assert [line.split(";")[3] for line in lines[1:]] == [r[0] for r in sql.fetchall()]


def test_segment_name_in_history_survives_deletion_and_reuse(client, sql):
    client.post("/segments", json={"segment": "X"})
    client.post("/users", json={"id": 1})
    client.patch("/users", json={"id": 1, "segments": ["X"]})
    client.request("DELETE", "/segments", json={"segment": "X"})
    client.post("/segments", json={"segment": "X"})
    sql.execute("SELECT extract(year FROM now()), extract(month FROM now())")
    year, month = (int(v) for v in sql.fetchone())
    lines = client.get(f"/users/1/history?year={year}&month={month}").text.splitlines()
    assert lines[1].startswith("1;X;add;")


def test_last_representable_month_is_served(client):
    r = client.get("/history?year=9999&month=12")
    assert r.status_code == 200 and r.text == HEADER + "\n"
