"""The read floor: a minimal Litestar app with no ORM serving GET /users/{id}.

Same SQL as the service (bench.common.READ_SQL), a psycopg2 ThreadedConnectionPool of
DB_POOL_SIZE connections, a sync handler with sync_to_thread=True on DB_POOL_SIZE anyio
threads, served by the server and settings ``python -m web`` uses (granian).

    SERVER_HOST=127.0.0.1:8090 DATABASE_DSN=... python -m bench.floor_app
"""

from __future__ import annotations

import anyio.to_thread
from litestar import Litestar, get
from litestar.exceptions import NotFoundException
from psycopg2.pool import ThreadedConnectionPool

from bench.common import READ_SQL
from models.infra.settings import load_settings
from web.__main__ import serve

settings = load_settings()
pool: ThreadedConnectionPool | None = None


@get("/users/{user_id:int}", sync_to_thread=True)
def read(user_id: int) -> dict:
    assert pool is not None
    conn = pool.getconn()
    if not conn.autocommit:  # as peewee's connections: autocommit, no BEGIN/ROLLBACK
        conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(READ_SQL, (user_id,))
            row = cur.fetchone()
    finally:
        pool.putconn(conn)
    if row is None:
        raise NotFoundException(f"user {user_id} not found")
    return {"id": user_id, "segments": row[0]}


@get("/health")
def health() -> dict:
    return {"status": "ok"}


def _startup() -> None:
    global pool
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.db_pool_size
    params = settings.connect_params()
    # minconn = maxconn: psycopg2's pool closes a returned connection whenever minconn
    # idle ones are already pooled, so a smaller minconn reconnects under load. peewee's
    # pool keeps its connections; so does this one.
    size = settings.db_pool_size
    pool = ThreadedConnectionPool(size, size, **params)


def create_app() -> Litestar:
    return Litestar(route_handlers=[read, health], on_startup=[_startup])


def main() -> None:
    serve("bench.floor_app:create_app")


if __name__ == "__main__":
    main()
