"""The soak harness, 20 seconds: zero 5xx, bounded connections, the checker passing."""

from __future__ import annotations

import os

import pytest

from bench.soak import soak

pytestmark = pytest.mark.e2e


def test_twenty_second_soak(clean_db):
    result = soak(os.environ["DATABASE_DSN"], duration=20, threads=6, users=2000, fresh=False)
    assert result["requests"] > 500, result
    assert result["errors_5xx"] == 0, result["by_status"]
    assert set(result["by_status"]) <= {"200", "201"}, result["by_status"]
    assert result["auto_percent_job"] == "done"
    assert result["checker"]["ok"], result["checker"]
    # web pool (16) + worker threads (4) + the harness's own connection
    assert result["max_connections"] <= 16 + 4 + 2, result
    assert result["end"]["web_rss_mb"] - result["start"]["web_rss_mb"] < 100, result
