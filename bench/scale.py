"""The scale run: ``python -m bench.scale [--sizes 1000000,10000000]``.

Runs ``bench.run`` (reads, bulk, csv on the probe month) once per database size, in the
order small, large, large, small with ``--repeat 2`` so that a drift in the machine's
load hits both sizes alike, and prints one table: read latency against size, the
assignment job's time against size (linear means the ratio equals the size ratio), and
the probe month's CSV time (the same 1M events at every size).

Each size has its own database: ``segments_bench`` for 1,000,000 users (the default
bench database), ``segments_bench_<N>`` otherwise (``segments_bench_10m`` for 10M),
generated on first use (about 64 s per million users on a quiet machine, and 1.6 GB per
million users on disk).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import progress


def database(users: int) -> str:
    if users == 1_000_000:
        name = "segments_bench"
    elif users % 1_000_000 == 0:
        name = f"segments_bench_{users // 1_000_000}m"
    else:
        name = f"segments_bench_{users}"
    return f"host=127.0.0.1 port=5432 user=postgres dbname={name}"


def one_run(users: int, args, results: Path) -> dict:
    out = results / str(users)
    out.mkdir(exist_ok=True)
    cmd = [
        sys.executable, "-m", "bench.run", "--users", str(users),
        "--database", database(users), "--only", "reads,bulk,csv", "--levels", "8,32",
        "--rounds", str(args.rounds), "--duration", str(args.duration),
        "--csv-months", "probe", "--results-dir", str(out),
    ]  # fmt: skip
    progress(f"scale: {users:,} users: {' '.join(cmd[1:])}")
    before = set(out.glob("*.json"))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    (path,) = set(out.glob("*.json")) - before
    return json.loads(path.read_text())


def figures(doc: dict) -> dict[str, float]:
    res = doc["results"]
    fig = {}
    for c in ("8", "32"):
        rounds = res["reads"]["levels"][c]["service"]
        for key, label in (("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("rps", "req/s")):
            fig[f"GET /users/{{id}} c={c} {label}"] = statistics.median(r[key] for r in rounds)
    bulk = res["bulk"]
    fig["auto_percent=10 job s (POST to done)"] = bulk["assign_job_s"]
    fig["auto_percent=10 floor s (one INSERT ... SELECT)"] = bulk["assign_floor_s"]
    fig["auto_percent=10 job under reads at 8 conn. s"] = bulk["assign_under_reads_s"]
    fig["read p99 at 8 conn. during that job ms"] = bulk["reads_during_job_c8"]["p99_ms"]
    probe = res["csv"]["probe"]
    fig["probe month events"] = probe["rows"]
    fig["CSV of the probe month s"] = probe["service"]["seconds"]
    fig["COPY of the probe month s"] = probe["floor_copy"]["seconds"]
    fig["loadavg 1m at the end of the csv step"] = res["csv"]["load"]["loadavg_1m"]
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--repeat", type=int, default=2, help="runs per size, interleaved")
    ap.add_argument("--rounds", type=int, default=2, help="read rounds per run")
    ap.add_argument("--duration", type=float, default=8, help="seconds per load step")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    order = [s for i in range(args.repeat) for s in (sizes if i % 2 == 0 else sizes[::-1])]
    runs: dict[int, list[dict[str, float]]] = {s: [] for s in sizes}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for users in order:
            runs[users].append(figures(one_run(users, args, Path(tmp))))
    small, large = sizes[0], sizes[-1]
    print(f"| measurement (median of {args.repeat}) | {small:,} users | {large:,} users "
          f"| ratio |")  # fmt: skip
    print("|---|---|---|---|")
    for key in runs[small][0]:
        a = statistics.median(r[key] for r in runs[small])
        z = statistics.median(r[key] for r in runs[large])
        print(f"| {key} | {a:,.2f} | {z:,.2f} | {z / a if a else float('nan'):.2f} |")
    print(f"\nper run: {json.dumps(runs)}")


if __name__ == "__main__":
    main()
