"""CSV: GET /history for the generated month, and for the fixed-size probe month, against
COPY (the same SELECT) TO STDOUT, and the web processes' memory growth while it streams."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx

from bench.common import RssSampler, dbname, progress, psql_args


def run(b) -> tuple[dict, list[str]]:
    months = b.args.csv_months.split(",")
    out: dict = _month(b, b.meta["month"]) if "main" in months else {}
    rows = [_row(out)] if out else []
    if "probe" in months and "probe_month" in b.meta:
        # The same 1M events at every N: its time should not grow with the other months.
        out["probe"] = _month(b, b.meta["probe_month"])
        rows.append(_row(out["probe"]))
    return out, rows


def _row(out: dict) -> str:
    sv, fl = out["service"], out["floor_copy"]
    return (
        f"| GET /history {out['month']} ({out['rows']:,} rows) | {sv['seconds']} s, "
        f"{sv['rows_per_s']:,} rows/s, {sv['mb_per_s']} MB/s, RSS +{sv['rss_growth_mb']} MB "
        f"| {fl['seconds']} s, {fl['rows_per_s']:,} rows/s, {fl['mb_per_s']} MB/s "
        f"| {out['ratio_throughput']} | ≥ 0.5, RSS < +50 MB |"
    )


def _month(b, label: str) -> dict:
    year, month = (int(x) for x in label.split("-"))
    start = f"{year:04d}-{month:02d}-01"
    end = f"{year + month // 12:04d}-{month % 12 + 1:02d}-01"
    (rows,) = b.sql(
        "SELECT count(*) FROM history WHERE at >= %s::timestamptz AND at < %s::timestamptz",
        (start + " UTC", end + " UTC"),
    )[0]
    out: dict = {"month": label, "rows": rows}
    sampler = RssSampler(b.procs["web"].pid)
    progress(f"csv: GET /history?year={year}&month={month} ({rows:,} rows)")
    t0 = time.perf_counter()
    url = f"{b.url}/history?year={year}&month={month}"
    if shutil.which("curl"):
        res = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        code, size = res.stdout.split()
        nbytes = int(size)
    else:
        nbytes = 0
        with httpx.stream("GET", url, timeout=600) as r:
            code = str(r.status_code)
            for chunk in r.iter_raw():
                nbytes += len(chunk)
    elapsed = time.perf_counter() - t0
    growth = sampler.stop()
    out["service"] = {
        "http_status": int(code),
        "seconds": round(elapsed, 3),
        "bytes": nbytes,
        "rows_per_s": round(rows / elapsed),
        "mb_per_s": round(nbytes / elapsed / 1e6, 1),
        "rss_base_mb": round(sampler.base / 2**20, 1),
        "rss_peak_mb": round(sampler.peak / 2**20, 1),
        "rss_growth_mb": growth,
    }
    progress("csv: floor (COPY (same SELECT) TO STDOUT through psql)")
    select = f"""SELECT h.user_id || ';' || s.name || ';' || h.operation || ';'
              || to_char(h.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
              || ';' || h.reason
       FROM history h JOIN segments s ON s.id = h.segment_id
       WHERE h.at >= '{start} UTC' AND h.at < '{end} UTC'
       ORDER BY h.at, h.id"""
    cmd = ["psql", *psql_args(b.dsn), "-d", dbname(b.dsn), "-X", "-q",
           "-c", f"COPY ({select}) TO STDOUT"]  # fmt: skip
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    fbytes = 0
    while chunk := p.stdout.read(1 << 20):
        fbytes += len(chunk)
    p.wait()
    felapsed = time.perf_counter() - t0
    out["floor_copy"] = {
        "seconds": round(felapsed, 3),
        "bytes": fbytes,
        "rows_per_s": round(rows / felapsed),
        "mb_per_s": round(fbytes / felapsed / 1e6, 1),
    }
    out["ratio_throughput"] = round(felapsed / elapsed, 3)
    return out
