"""What the console's pages take from their links: a month within what history keeps,
and nothing echoed from the query string."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from litestar.testing import TestClient

from models.months import add_months


@pytest.fixture
def kept_six(clean_db: None, app_with):
    with TestClient(app=app_with(history_retention_months=6)) as client:
        client.post("/users", json={"id": 7})
        yield client


def _month(n: int) -> str:
    today = datetime.now(UTC).date().replace(day=1)
    return f"{add_months(today, n):%Y-%m}"


def test_a_month_retention_dropped_is_410_and_not_linked(kept_six):
    gone = kept_six.get(f"/console/users/7?month={_month(-7)}")
    assert gone.status_code == 410, gone.text
    assert "not kept" in gone.text and "Traceback" not in gone.text
    oldest = kept_six.get(f"/console/users/7?month={_month(-6)}")
    assert oldest.status_code == 200
    assert 'rel="prev"' not in oldest.text and 'rel="next"' in oldest.text


@pytest.mark.parametrize(
    ("month", "prev", "next"), [("1970-01", False, True), ("9999-12", True, False)]
)
def test_no_month_links_outside_1970_to_9999(client, month, prev, next):
    client.post("/users", json={"id": 7})
    page = client.get(f"/console/users/7?month={month}")
    assert page.status_code == 200, page.text
    assert ('rel="prev"' in page.text) is prev and ('rel="next"' in page.text) is next


def test_the_deleted_banner_echoes_nothing_from_the_link(client):
    client.post("/segments", json={"segment": "LIVE"})
    for forged in ("Your account is suspended", "1", "LIVE", "99999999999999999999"):
        page = client.get("/console", params={"deleted": forged})
        assert page.status_code == 200 and "was deleted" not in page.text
        assert "suspended" not in page.text
