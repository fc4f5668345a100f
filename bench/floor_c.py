"""Floor C, the read floor of the hot path: the least a Python service on this stack
needs to answer GET /users/{id}.

A minimal Litestar app; psycopg2 with one connection per process; the service's own read
(models/reads.py) as a server-side prepared statement (PREPARE once per connection,
EXECUTE per request); a sync handler run in the event loop (``sync_to_thread=False``);
served by granian with one process per core and uvloop. No pool, no middleware, no
metrics, no request id.

    SERVER_HOST=127.0.0.1:8091 DATABASE_DSN=... python -m bench.floor_c
"""

from __future__ import annotations

import os

import psycopg2
from granian import Granian
from granian.constants import HTTPModes, Interfaces, Loops
from granian.log import LogLevels
from litestar import Litestar, get
from litestar.exceptions import NotFoundException

from models.infra.settings import load_settings
from models.reads import STATEMENTS

_READ = "read_user_segments(bigint)"
_conn: list = []


@get("/users/{user_id:int}", sync_to_thread=False)
def read(user_id: int) -> dict:
    with _conn[0].cursor() as cur:
        cur.execute("EXECUTE read_user_segments(%s)", (user_id,))
        row = cur.fetchone()
    if row is None:
        raise NotFoundException(f"user {user_id} not found")
    return {"id": user_id, "segments": row[0]}


@get("/health", sync_to_thread=False)
def health() -> dict:
    return {"status": "ok"}


def _startup() -> None:
    conn = psycopg2.connect(**load_settings().connect_params())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"PREPARE {_READ} AS {STATEMENTS[_READ]}")
    _conn.append(conn)


def create_app() -> Litestar:
    return Litestar(route_handlers=[read, health], on_startup=[_startup])


def main() -> None:
    settings = load_settings()
    Granian(
        "bench.floor_c:create_app",
        factory=True,
        address=settings.server_host,
        port=settings.server_port,
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        workers=os.cpu_count() or 1,
        loop=Loops.uvloop,
        log_level=LogLevels.warning,
    ).serve()


if __name__ == "__main__":
    main()
