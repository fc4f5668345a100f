"""The benchmark harness at tiny N, so it cannot rot. Asserts numbers exist, never speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_bench_harness_runs_at_tiny_n(tmp_path: Path, clean_db: None) -> None:
    # The test database (tests/conftest.py) and this run's Redis namespace; the harness
    # generates its data there, starts the Procfile's web and worker, and measures.
    cmd = [
        sys.executable, "-m", "bench.run",
        "--users", "2000",
        "--duration", "1",
        "--levels", "1,8",
        "--rounds", "1",
        "--write-levels", "4",
        "--database", os.environ["DATABASE_DSN"],
        "--namespace", os.environ["QUEUE_NAMESPACE"],
        "--results-dir", str(tmp_path),
    ]  # fmt: skip
    # Without wrk the load steps use the harness's Python client instead.
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=55)
    assert out.returncode == 0, out.stderr[-3000:]
    (path,) = tmp_path.glob("*-2000.json")
    doc = json.loads(path.read_text())
    r = doc["results"]
    assert doc["config"]["data"]["users"] == "2000"

    reads = r["reads"]
    for level in ("1", "8"):
        medians = reads["levels"][level]["summary"]["median"]
        for server in ("service", "floor_c", "floor_app"):
            assert medians[server]["rps"] > 0
    assert reads["lookup"]["users_per_s"] > 0
    assert reads["psycopg2_1conn"]["qps"] > 0
    for k in ("mix_c4", "create_c4"):
        assert r["writes"][k]["requests"] > 0

    bulk = r["bulk"]
    assert bulk["assign_job_state"] == "done"
    assert bulk["assign_job_members"] > 0 and bulk["assign_floor_members"] > 0
    assert bulk["assign_floor_s"] > 0 and bulk["assign_job_s"] > 0
    assert bulk["ttl_sweep_s"] > 0 and bulk["ttl_floor_s"] > 0

    csv = r["csv"]
    assert csv["rows"] > 0 and csv["service"]["http_status"] == 200
    assert csv["service"]["bytes"] > 0 and csv["floor_copy"]["bytes"] > 0
    imports = r["imports"]
    assert imports["ids"] == 2000 and imports["service"]["job"]["state"] == "done"
    assert imports["service"]["job"]["result"]["added"] == 2000 and imports["floor_seconds"] > 0
    webhooks = r["webhooks"]
    assert webhooks["events"] > 0 and webhooks["received"] == webhooks["events"]
    assert "| measurement |" in out.stdout
