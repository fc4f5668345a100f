"""Writes: the PATCH/DELETE mix and POST /users with auto segments (no floor)."""

from __future__ import annotations

import time

import psycopg2.errors

from bench import generate
from bench.common import RUN_PREFIX, progress


def run(b) -> tuple[dict, list[str]]:
    s, n = b.seconds, b.users
    names = [f"{RUN_PREFIX}W{i}" for i in range(10)]
    for name in names:
        b.http.post("/segments", json={"segment": name}).raise_for_status()
    # 3 live auto segments, inserted directly (their assignment jobs would only add
    # background load; POST /users computes the new user's buckets itself).
    for i, p in enumerate((10, 30, 50)):
        b.sql(
            "INSERT INTO segments (name, salt, auto_percent) VALUES (%s, md5(random()::text), %s)",
            (f"{RUN_PREFIX}AUTO{i}_{p}", p),
        )
    out: dict = {}
    for c in [int(x) for x in b.args.write_levels.split(",")]:
        progress(f"writes: PATCH+DELETE mix, {c} connections, {s}s")
        out[f"mix_c{c}"] = b.load.run(
            b.url, c, s, "writes.lua", ["mix", str(n), ",".join(names), "0"]
        )
        progress(f"writes: POST /users (new ids, 3 auto segments), {c} connections, {s}s")
        base = str(n + 10_000_000 + c * 100_000_000)
        out[f"create_c{c}"] = b.load.run(b.url, c, s, "writes.lua", ["create", str(n), "", base])
    # Back to the generated data (no extra users for the bulk job to assign). Requests
    # wrk gave up on may still be running in the server: retry until they are done.
    progress("writes: removing what the write step added")
    for attempt in range(30):
        try:
            generate.reset(b.dsn)
            break
        except psycopg2.errors.ForeignKeyViolation:
            if attempt == 29:
                raise
            time.sleep(1)
    return out, [
        f"| writes {k} | {v['rps']:,.0f} req/s, p50 {v['p50_ms']:.2f} ms, "
        f"p99 {v['p99_ms']:.2f} ms, errors {v['errors']} | - | - | - |"
        for k, v in out.items()
    ]
