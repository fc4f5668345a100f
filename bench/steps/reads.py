"""Reads: GET /users/{id} against floor C and the floor app, alternating, several rounds;
POST /users/lookup at 100 ids; the SQL alone (psycopg2 loop, pgbench)."""

from __future__ import annotations

import random
import re
import shutil
import statistics
import subprocess
import time

from bench.common import READ_SQL, connect, dbname, load_note, progress, psql_args
from bench.load import lat_stats, pct
from scripts.procs import free_port

# name -> command; each floor is started next to the service and measured in turn.
FLOORS = {"floor_c": "python -m bench.floor_c", "floor_app": "python -m bench.floor_app"}
LOOKUP_IDS = 100


def run(b) -> tuple[dict, list[str]]:
    n, s = b.users, b.seconds
    levels = [int(x) for x in b.args.levels.split(",")]
    urls = {"service": b.url}
    for name, command in FLOORS.items():
        port = free_port()
        urls[name] = f"http://127.0.0.1:{port}"
        b.start(name, COMMAND=command, SERVER_HOST=f"127.0.0.1:{port}").wait_http(urls[name])
    out: dict = {"rounds": b.args.rounds, "levels": {str(c): {k: [] for k in urls} for c in levels}}
    try:
        for name, url in urls.items():
            progress(f"reads: warm-up {name}")
            b.load.run(url, 8, min(3, s), "reads.lua", [str(n)])
        order = list(urls)
        for rnd in range(b.args.rounds):
            for c in levels:
                # Rotate who goes first, so a drift in the machine's load hits all alike.
                for name in order[rnd % 3 :] + order[: rnd % 3]:
                    progress(f"reads: round {rnd + 1}, {name}, {c} connections, {s}s")
                    r = b.load.run(urls[name], c, s, "reads.lua", [str(n)])
                    r["load"] = load_note()
                    out["levels"][str(c)][name].append(r)
        out["lookup"] = lookup(b, levels, out)
    finally:
        for name in FLOORS:
            b.stop(name)
    for level in out["levels"].values():
        level["summary"] = summarise(level)
    progress(f"reads: bare psycopg2 loop, 1 connection, {s}s")
    out["psycopg2_1conn"] = psycopg2_loop(b, s)
    if shutil.which("pgbench"):
        c = 32 if 32 in levels else max(levels)
        for mode in ("prepared", "simple"):
            progress(f"reads: pgbench -M {mode}, {c} clients, {s}s")
            out[f"pgbench_{mode}_{c}"] = pgbench(b, c, s, mode)
    return out, rows(out)


def lookup(b, levels: list[int], out: dict) -> dict:
    """POST /users/lookup with 100 ids at 32 connections (or the nearest level below),
    once per round; users served per second against the single reads of the same level."""
    c = max([x for x in levels if x <= 32] or levels)
    runs = []
    for rnd in range(b.args.rounds):
        progress(f"reads: round {rnd + 1}, POST /users/lookup x{LOOKUP_IDS}, {c} connections")
        r = b.load.run(b.url, c, b.seconds, "lookup.lua", [str(b.users), str(LOOKUP_IDS)])
        r["users_per_s"] = round(r["rps"] * LOOKUP_IDS)
        r["load"] = load_note()
        runs.append(r)
    single = statistics.median(r["rps"] for r in out["levels"][str(c)]["service"])
    users = statistics.median(r["users_per_s"] for r in runs)
    return {"connections": c, "ids": LOOKUP_IDS, "runs": runs, "users_per_s": users,
            "ratio_vs_single_reads": round(users / single, 2)}  # fmt: skip


def summarise(level: dict) -> dict:
    """Medians over rounds, and service/floor ratios per round (min, median, max)."""
    med = {
        name: {
            "rps": statistics.median(r["rps"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        }
        for name, runs in level.items()
        if isinstance(runs, list) and runs
    }
    summary: dict = {"median": med}
    for floor in FLOORS:
        pairs = list(zip(level["service"], level[floor], strict=True))
        rps = sorted(sv["rps"] / fl["rps"] for sv, fl in pairs)
        p99 = sorted(sv["p99_ms"] / max(fl["p99_ms"], 1e-3) for sv, fl in pairs)
        summary[f"vs_{floor}"] = {
            "rps": [round(rps[0], 2), round(statistics.median(rps), 2), round(rps[-1], 2)],
            "p99": [round(p99[0], 2), round(statistics.median(p99), 2), round(p99[-1], 2)],
        }
    return summary


def psycopg2_loop(b, seconds: float) -> dict:
    conn = connect(b.dsn)
    rng = random.Random(1)
    lat = []
    deadline = time.perf_counter() + seconds
    with conn.cursor() as cur:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            cur.execute(READ_SQL, (rng.randint(1, b.users),))
            cur.fetchone()
            lat.append(time.perf_counter() - t)
    conn.close()
    r = lat_stats(lat, seconds, 0, "psycopg2")
    r["qps"] = r.pop("rps")
    return r


def pgbench(b, clients: int, seconds: float, mode: str) -> dict:
    script = b.tmp / "read.sql"
    body = " ".join(READ_SQL.replace("%s", ":uid").split())
    script.write_text(f"\\set uid random(1, {b.users})\n{body};\n")
    logdir = b.tmp / "pgbench"
    logdir.mkdir(exist_ok=True)
    cmd = ["pgbench", *psql_args(b.dsn), "-n", "-M", mode, "-f", str(script),
           "-c", str(clients), "-j", "2", "-T", str(max(1, round(seconds))), "-l",
           "--log-prefix", str(logdir / "pgb"), dbname(b.dsn)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=b.tmp).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    lat = []
    for f in logdir.glob("pgb*"):
        for line in f.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                lat.append(int(parts[2]) / 1e6)
        f.unlink()
    return {
        "tps": round(tps, 1),
        "p50_ms": round(pct(lat, 50) * 1000, 3),
        "p99_ms": round(pct(lat, 99) * 1000, 3),
        "clients": clients,
        "mode": mode,
    }


def _span(triple: list[float]) -> str:
    return f"**{triple[1]}** ({triple[0]} to {triple[2]})"


def rows(out: dict) -> list[str]:
    lines = []
    for c, level in out["levels"].items():
        m, sm = level["summary"]["median"], level["summary"]
        sv, fc, fa = m["service"], m["floor_c"], m["floor_app"]
        lines.append(
            f"| GET /users/{{id}} c={c}, median of {out['rounds']} | {sv['rps']:,.0f} req/s, "
            f"p99 {sv['p99_ms']:.1f} ms | floor C {fc['rps']:,.0f} req/s, p99 "
            f"{fc['p99_ms']:.1f} ms; floor app {fa['rps']:,.0f}, p99 {fa['p99_ms']:.1f} ms | "
            f"vs C: req/s {_span(sm['vs_floor_c']['rps'])}, p99 {_span(sm['vs_floor_c']['p99'])};"
            f" vs app: req/s {_span(sm['vs_floor_app']['rps'])} | "
            + ("≥ 0.9 req/s, p99 ≤ 1.5 |" if c == "32" else "- |")
        )
    lk = out.get("lookup")
    if lk:
        lines.append(
            f"| POST /users/lookup x{lk['ids']} c={lk['connections']} | "
            f"{lk['users_per_s']:,.0f} users/s | single reads of the same run | "
            f"{lk['ratio_vs_single_reads']} | ≥ 10 |"
        )
    pg = out["psycopg2_1conn"]
    lines.append(
        f"| read SQL, bare psycopg2, 1 conn | {pg['qps']:,.0f} q/s, p50 {pg['p50_ms']:.3f} ms, "
        f"p99 {pg['p99_ms']:.3f} ms | - | - | - |"
    )
    for k, v in out.items():
        if k.startswith("pgbench"):
            lines.append(
                f"| read SQL, pgbench -M {v['mode']} -c {v['clients']} -j 2 | {v['tps']:,.0f} tps, "
                f"p50 {v['p50_ms']:.2f} ms, p99 {v['p99_ms']:.2f} ms | - | - | - |"
            )
    return lines
