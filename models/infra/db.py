"""The one database object every model is bound to, and its wiring.

Nothing connects at import time: processes call ``init_db`` once at start, and each unit
of work (a transaction: ``unit_of_work``; a read: ``read_only``) borrows a pooled
connection on the thread that runs it and returns it when done
(``db.connection_context()``).
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar, Token
from typing import Any, ParamSpec, TypeVar

import peewee
import psycopg2.errors
from playhouse.pool import PooledPostgresqlDatabase

from models.infra.settings import Settings
from models.infra.watchdog import Connection

SYSTEM = "system"


class Pool(PooledPostgresqlDatabase):
    # Private hook, no public one exists: peewee is pinned to 4.5.x in pyproject.toml.
    def _is_closed(self, conn) -> bool:
        # peewee pings every connection it hands out with SELECT 1, holding the database
        # lock for that round trip: requests queue behind each other's pings. Check the
        # driver's flag instead; a connection the server dropped fails on first use: a
        # read runs once more on a new one (read_on); a write answers 503, as a COMMIT
        # lost on the way may have happened; both drop the pool's idle connections.
        return bool(conn.closed)

    def begin(self) -> None:
        # Who causes this transaction's changes (docs/keys.md): set in the BEGIN's own
        # round trip, so recording the actor costs a write nothing extra.
        actor = _actor.get()
        if actor is None:
            super().begin()
            return
        with peewee.__exception_wrapper__:
            self.cursor().execute("BEGIN; SELECT set_config('segments.actor', %s, true)", (actor,))

    def prepare_on_connect(self, statements: Mapping[str, str]) -> None:
        """``PREPARE name AS sql`` for each statement on every connection the pool makes,
        so hot reads can ``EXECUTE`` them without planning (models/reads.py registers
        them at boot, ``prepare_hot_reads``). Kept across ``init_db``."""
        self._statements = dict(statements)
        self._prepared: weakref.WeakSet = weakref.WeakSet()

    def _initialize_connection(self, conn) -> None:
        # peewee calls this on every checkout; prepare once per physical connection.
        statements = getattr(self, "_statements", None)
        if not statements or conn in self._prepared:
            return
        try:
            with conn.cursor() as cur:
                cur.execute("DEALLOCATE ALL")  # a half-prepared set from an earlier try
                for name, sql in statements.items():
                    cur.execute(f"PREPARE {name} AS {sql}")
        except psycopg2.errors.UndefinedTable:
            # Not migrated yet (the migration itself runs on this pool): try again at the
            # next checkout.
            conn.rollback()
            return
        if not conn.autocommit:
            conn.commit()
        self._prepared.add(conn)


# autoconnect=False: a query run without a borrowed connection is a bug, and should fail
# loudly instead of silently pinning a pooled connection to a thread forever.
db = Pool(None, autoconnect=False, autorollback=False)
# The streaming replica (DATABASE_REPLICA_DSN), for the reads models/infra/replica.py routes to
# it; left uninitialised without one.
replica = Pool(None, autoconnect=False, autorollback=False)

# The database the current unit of work reads from: the replica inside a read routed
# there (models/infra/replica.py), else the primary.
_reading: ContextVar[Pool] = ContextVar("reading", default=db)


# Who the current unit of work acts for ('root', 'key:<name>', 'anonymous'; a job's
# starter); None: the system (the actor columns' default).
_actor: ContextVar[str | None] = ContextVar("actor", default=None)


def current_actor() -> str:
    return _actor.get() or SYSTEM


def set_actor(actor: str | None) -> Token:
    """Act for ``actor`` from now on in this context (the caller's: a web request, a
    job's run)."""
    return _actor.set(actor)


def reset_actor(token: Token) -> None:
    _actor.reset(token)


class _WriteScope:
    """Whether a read-your-writes scope has run a unit of work; one object per scope,
    shared by every copy of its context (anyio copies it into each worker-thread call)."""

    __slots__ = ("wrote",)

    def __init__(self) -> None:
        self.wrote = False


_write_scope: ContextVar[_WriteScope | None] = ContextVar("write_scope", default=None)

# What the outermost unit of work on this thread runs once it has committed and given its
# connection back (``after_commit``); None outside one.
_after_commit: ContextVar[list[Callable[[], object]] | None] = ContextVar(
    "after_commit", default=None
)

P = ParamSpec("P")
R = TypeVar("R")


def _init_pool(pool: Pool, params: dict[str, str], settings: Settings) -> None:
    dbname = params.pop("dbname", "postgres")
    if not pool.deferred:
        pool.close_all()  # re-initialised: pooled connections belong to the old settings
    pool.init(
        dbname,
        max_connections=settings.db_pool_size,
        # Without a timeout peewee's pool raises at once when exhausted; wait a little
        # instead, and report 503 if it is still exhausted after that.
        timeout=settings.db_pool_timeout,
        stale_timeout=300,
        application_name=params.pop("application_name", "segments"),
        connection_factory=Connection,  # a silent server's calls are cut (watchdog.py)
        **params,
    )


def init_db(settings: Settings) -> Pool:
    _init_pool(db, settings.connect_params(), settings)
    replica_params = settings.replica_connect_params()
    if replica_params is not None:
        _init_pool(replica, replica_params, settings)
    elif not replica.deferred:
        replica.close_all()
        replica.init(None)
    return db


def close_pools() -> None:
    for pool in (db, replica):
        if not pool.deferred:
            pool.close_all()


def reader() -> Pool:
    """The database this unit of work reads from (the primary unless routed)."""
    return _reading.get()


@contextlib.contextmanager
def reading_from(pool: Pool) -> Iterator[None]:
    """Borrow a connection of ``pool`` and make it what this unit of work reads from."""
    token = _reading.set(pool)
    try:
        with pool.connection_context():
            yield
    finally:
        _reading.reset(token)


# What a statement on a connection the server has dropped may raise: mostly
# OperationalError, but some losses (an SSL record, libpq's "no message") surface as a
# plain DatabaseError. Wide on purpose: connection_lost() decides. Peewee wraps the
# driver's errors; the hot read runs on the driver's cursor directly.
DISCONNECTED = (
    peewee.DatabaseError,
    peewee.InterfaceError,
    psycopg2.DatabaseError,
    psycopg2.InterfaceError,
)


def connection_lost(pool: Pool) -> bool:
    """After an error: whether the connection this thread holds of ``pool`` is gone (the
    driver marks it closed), rather than the statement failing (a timeout, a conflict)."""
    return not pool.is_closed() and bool(pool.connection().closed)


def read_on(
    pool: Pool,
    fn: Callable[P, R],
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """``fn`` on a connection borrowed from ``pool`` and made what it reads from.

    A pooled connection the server dropped since its last use (a restart, a failover,
    an administrator) fails on first use: a read then runs once more on a new connection
    instead of costing the client a 503, and the pool's idle connections, which died
    with it, are closed. A read that nests in a caller's connection is not re-run: it
    cannot get another one. ``fn`` must be safe to repeat (reads only): a query killed
    while it ran (``pg_terminate_backend`` of a runaway report) runs once more too.
    """
    owned = pool.is_closed()
    with reading_from(pool):
        try:
            return fn(*args, **kwargs)
        except DISCONNECTED:
            if not (owned and connection_lost(pool)):
                raise
    # The dead connection went back to the pool, which closed it (its transaction
    # status is unknown, so peewee's _can_reuse refuses it).
    pool.close_idle()
    with reading_from(pool):
        return fn(*args, **kwargs)


def begin_read_your_writes() -> Token:
    """Open a read-your-writes scope in this context: once a unit of work has run in
    it, its later reads stay on the primary (``wrote_in_scope``). The caller says what
    a scope spans and ends it with the token (``end_read_your_writes``)."""
    return _write_scope.set(_WriteScope())


def end_read_your_writes(token: Token) -> None:
    _write_scope.reset(token)


def wrote_in_scope() -> bool:
    """Whether the current read-your-writes scope has run a unit of work: its later
    reads then stay on the primary, so they see its writes."""
    scope = _write_scope.get()
    return scope is not None and scope.wrote


class BaseModel(peewee.Model):
    class Meta:
        database = db
        legacy_table_names = False


def unit_of_work(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` in one transaction on a connection borrowed for the call.

    Nested calls share the outer connection and transaction (peewee keeps a per-thread
    stack), so a caller that already holds a connection keeps it. What the transaction
    registered with ``after_commit`` runs once the outermost call has committed and
    given the connection back; a rollback drops it.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        scope = _write_scope.get()
        if scope is not None:
            scope.wrote = True
        if _after_commit.get() is not None or db.transaction_depth():
            # Nested: the transaction's owner commits, and runs the hooks.
            with db.connection_context(), db.atomic():
                return fn(*args, **kwargs)
        hooks: list[Callable[[], object]] = []
        token = _after_commit.set(hooks)
        try:
            with db.connection_context(), db.atomic():
                result = fn(*args, **kwargs)
        finally:
            _after_commit.reset(token)
        for hook in hooks:
            hook()
        return result

    return wrapper


def after_commit(hook: Callable[[], object]) -> None:
    """Run ``hook`` once the current transaction has committed (never if it rolls back):
    after the outermost ``unit_of_work`` has given its connection back, or by peewee's
    own hook inside a bare ``db.atomic()``; at once outside any transaction. Hooks must
    not raise (a send that fails is logged and retried by the outbox pass)."""
    hooks = _after_commit.get()
    if hooks is not None:
        hooks.append(hook)
    else:
        db.after_commit(hook)


def walk_in_key_order() -> None:
    """Say to the planner, for this batch's transaction, that the batch walks an index
    from its checkpoint, ``size`` keys at a time. On a table loaded since its last
    ANALYZE it guesses a few dozen rows, and then prefers a bitmap scan of everything
    after the checkpoint and a sort, or a nested loop over a whole segment, per batch:
    quadratic in the table (30,000 members in 125 s). The index's order is right
    whatever the statistics say."""
    db.execute_sql("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")


def read_only(fn: Callable[P, R]) -> Callable[P, R]:
    """Like ``unit_of_work`` for reads: no BEGIN/COMMIT round trips. Each statement sees
    its own snapshot; use it where statements need not agree with each other. Re-run
    once on a new connection if the borrowed one was dead (``read_on``): reads only."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return read_on(db, fn, *args, **kwargs)

    return wrapper


def fetchall(sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple]:
    return reader().execute_sql(sql, params).fetchall()


def fetchone(sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> tuple | None:
    return reader().execute_sql(sql, params).fetchone()
