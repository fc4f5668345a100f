"""CPU per request of an app, without a server or a load generator:
``python -m bench.cpu_per_request service|service+key|floor_c [N]``.

``service+key`` runs the service with API_TOKEN set and every request carrying a read
key (docs/keys.md). Ids are drawn from 1..BENCH_USERS (default 1,000,000).

Calls the ASGI app directly with GET /users/{random id} scopes, one after another, and
prints process CPU time and wall time per request. On a shared machine this is steadier
than throughput under wrk; it is how the per-request costs in docs/benchmarks.md were
compared. Needs the benchmark database (BENCH_DATABASE_DSN or segments_bench).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import sys
import time

from bench.common import bench_dsn

USERS = int(os.environ.get("BENCH_USERS", "1000000"))
HEADERS = [(b"host", b"bench")]


def _scope(uid: int) -> dict:
    path = f"/users/{uid}"
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "headers": list(HEADERS),
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}  # fmt: skip


async def _measure(app, n: int) -> tuple[float, float]:
    startup: asyncio.Queue = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})

    async def ignore(message: dict) -> None:
        pass

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    lifespan = asyncio.create_task(app({"type": "lifespan"}, startup.get, ignore))
    await asyncio.sleep(0.5)
    rng = random.Random(1)
    for _ in range(500):  # warm-up: connections, prepared statements, caches
        await app(_scope(rng.randint(1, USERS)), receive, ignore)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        await app(_scope(rng.randint(1, USERS)), receive, ignore)
    lifespan.cancel()
    return (time.process_time() - cpu) / n, (time.perf_counter() - wall) / n


def main() -> None:
    which, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4000
    os.environ["DATABASE_DSN"] = bench_dsn(None)
    if which.startswith("service"):
        from web.app import create_app
    else:
        from bench.floor_c import create_app
    if which == "service+key":
        os.environ["API_TOKEN"] = secrets.token_urlsafe(24)
    app = create_app()
    if which == "service+key":
        from models import keys
        from models.tables import Scope

        made = keys.create_key(f"bench-cpu-{secrets.token_hex(4)}", Scope.READ, None)
        HEADERS.append((b"authorization", f"Bearer {made.key}".encode()))
    cpu, wall = asyncio.run(_measure(app, n))
    print(f"{which}: {cpu * 1000:.3f} ms CPU, {wall * 1000:.3f} ms wall per request")


if __name__ == "__main__":
    main()
