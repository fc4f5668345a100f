"""Every setting of every process, read from the environment in one place.

A bad value raises ``ConfigError`` with one line that names the variable; the entry
points print that line and exit, so an operator never sees a traceback for a typo.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

import psycopg2.extensions


class ConfigError(Exception):
    """A setting has a value the service cannot run with."""


# Used only when neither the environment nor the dev launcher gives a database.
DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres sslmode=disable"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DAY = 86_400
# libpq settings every connection gets unless the DSN sets them (docs/failover.md): a
# host that does not answer costs CONNECT_TIMEOUT before the next one of a multi-host
# DSN is tried; a peer that vanished (power, network) is noticed by the keepalives when
# idle and by tcp_user_timeout while data waits for its acknowledgement. A server that
# is alive to TCP but silent is models/infra/watchdog.py's.
CONNECTION_DEFAULTS = {
    "connect_timeout": "3",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "3",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
}


class BrokerKind(StrEnum):
    REDIS = "redis"
    RABBITMQ = "rabbitmq"


BROKER_SCHEMES = {
    "redis": BrokerKind.REDIS,
    "rediss": BrokerKind.REDIS,
    "unix": BrokerKind.REDIS,
    "amqp": BrokerKind.RABBITMQ,
    "amqps": BrokerKind.RABBITMQ,
}


@dataclass(frozen=True)
class Settings:
    database_dsn: str
    database_password: str | None
    server_host: str
    server_port: int
    log_file_path: str | None
    broker_url: str
    queue_namespace: str
    db_pool_size: int
    db_pool_timeout: float
    web_workers: int
    sweep_interval: float
    requeue_interval: float
    job_lease_seconds: int
    batch_size: int
    sweep_batch_size: int
    job_batch_pause: float
    api_token: str | None
    access_log: bool
    webhook_interval: float
    webhook_deny_private: bool
    worker_threads: int
    job_chunk_time: float
    header_read_timeout: float
    body_read_timeout: float
    database_replica_dsn: str | None
    replica_max_lag_ms: int
    history_retention_months: int | None  # None: history is kept forever
    console_session_hours: float
    import_max_uploads: int = 4  # uploads at once in one web process
    import_max_uploads_total: int = 16  # uploads at once across every web process
    schedule_interval: float = 1.0  # how often the scheduler looks for due schedule steps

    def connect_params(self) -> dict[str, str]:
        """libpq keywords for psycopg2, with the password merged in (never logged)."""
        return self._params(self.database_dsn)

    def replica_connect_params(self) -> dict[str, str] | None:
        """The same for the read replica (a streaming replica has the primary's roles and
        passwords); ``None`` when no replica is configured."""
        dsn = self.database_replica_dsn
        return None if dsn is None else self._params(dsn)

    def _params(self, dsn: str) -> dict[str, str]:
        params = {**CONNECTION_DEFAULTS, **psycopg2.extensions.parse_dsn(dsn)}
        if self.database_password:
            params["password"] = self.database_password
        return params

    @property
    def broker_kind(self) -> BrokerKind:
        return BROKER_SCHEMES[urlsplit(self.broker_url).scheme]


def parse_server_host(value: str) -> tuple[str, int]:
    """``host:port`` or ``:port`` (the seed's format) into a bindable pair."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"SERVER_HOST={value!r}: expected 'host:port' or ':port'")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def _check_dsn(dsn: str, name: str = "DATABASE_DSN") -> str:
    try:
        psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{name} is not a valid connection string: {first_line}") from None
    return dsn


def _check_redis_url(url: str) -> str:
    if BROKER_SCHEMES.get(urlsplit(url).scheme) is not BrokerKind.REDIS:
        raise ConfigError(f"REDIS_URL={url!r}: expected a redis://, rediss:// or unix:// URL")
    return url


def _broker_url(env: dict[str, str]) -> str:
    """BROKER_URL, else REDIS_URL (the seed's one broker setting)."""
    url = env.get("BROKER_URL")
    if not url:
        return _check_redis_url(env.get("REDIS_URL") or DEFAULT_REDIS_URL)
    scheme = urlsplit(url).scheme
    if scheme not in BROKER_SCHEMES:
        # The scheme alone: the rest of the URL may hold a password.
        raise ConfigError(
            f"BROKER_URL has scheme {scheme!r}: expected redis://, rediss://, unix:// "
            "(Redis) or amqp://, amqps:// (RabbitMQ)"
        )
    return url


def _number(
    env: dict[str, str],
    name: str,
    default: float,
    kind: type = int,
    low: float = 1,
    high: float = 10**9,
):
    """A finite number in [low, high]; anything else is one line naming the variable."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return kind(default)
    what = "a whole number" if kind is int else "a number"
    try:
        value = kind(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected {what}") from None
    # float() accepts "nan", "inf" and "1e400" (which is inf): none is a usable setting.
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r}: expected a finite number")
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r}: must be from {low:g} to {high:,.0f}")
    return value


def _optional_number(env: dict[str, str], name: str, **limits) -> int | None:
    """Like ``_number`` for a whole number, but unset (or empty) means None."""
    if (env.get(name) or "").strip() == "":
        return None
    return _number(env, name, 0, **limits)


def _flag(env: dict[str, str], name: str) -> bool:
    raw = (env.get(name) or "0").strip().lower()
    if raw not in {"0", "1", "true", "false", "yes", "no", "on", "off"}:
        raise ConfigError(f"{name}={raw!r}: expected 1/0, true/false, yes/no or on/off")
    return raw in {"1", "true", "yes", "on"}


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    host, port = parse_server_host(env.get("SERVER_HOST") or ":8080")
    # One web process per core, and about eight pooled connections per core shared among
    # them: with four, writes at 32 connections queued for threads up to a p99 of
    # seconds (docs/benchmarks.md).
    cores = os.cpu_count() or 1
    web_workers = _number(env, "WEB_WORKERS", cores, high=256)
    replica = (env.get("DATABASE_REPLICA_DSN") or "").strip()
    return Settings(
        database_dsn=_check_dsn(env.get("DATABASE_DSN") or DEFAULT_DSN),
        database_password=env.get("DATABASE_PASSWORD") or None,
        server_host=host,
        server_port=port,
        log_file_path=env.get("LOG_FILE_PATH") or None,
        broker_url=_broker_url(env),
        queue_namespace=env.get("QUEUE_NAMESPACE") or "dramatiq",
        db_pool_size=_number(env, "DB_POOL_SIZE", max(8, 8 * cores // web_workers), high=1000),
        db_pool_timeout=_number(env, "DB_POOL_TIMEOUT", 5.0, float, low=0.1, high=3600),
        web_workers=web_workers,
        sweep_interval=_number(env, "SWEEP_INTERVAL", 5.0, float, low=0.1, high=DAY),
        requeue_interval=_number(env, "REQUEUE_INTERVAL", 15.0, float, low=0.1, high=DAY),
        job_lease_seconds=_number(env, "JOB_LEASE_SECONDS", 30, high=DAY),
        batch_size=_number(env, "BATCH_SIZE", 5000, high=10**6),
        sweep_batch_size=_number(env, "SWEEP_BATCH_SIZE", 20000, high=10**6),
        job_batch_pause=_number(env, "JOB_BATCH_PAUSE_MS", 0, float, low=0, high=60_000) / 1000,
        api_token=env.get("API_TOKEN") or None,
        access_log=_flag(env, "ACCESS_LOG"),
        webhook_interval=_number(env, "WEBHOOK_INTERVAL", 1.0, float, low=0.1, high=DAY),
        webhook_deny_private=_flag(env, "WEBHOOK_DENY_PRIVATE"),
        # The Procfile passes it to dramatiq; the worker reads it to keep threads free.
        worker_threads=_number(env, "WORKER_THREADS", 4, high=256),
        job_chunk_time=_number(env, "JOB_CHUNK_TIME_MS", 50, float, low=1, high=60_000) / 1000,
        header_read_timeout=_number(env, "HEADER_READ_TIMEOUT", 10, float, low=0.001, high=DAY),
        body_read_timeout=_number(env, "BODY_READ_TIMEOUT", 60, float, low=0.001, high=DAY),
        database_replica_dsn=_check_dsn(replica, "DATABASE_REPLICA_DSN") if replica else None,
        # The lag check runs every max/4 (at most every 200 ms): below 100 ms it would
        # poll the replica too often to be cheap.
        replica_max_lag_ms=_number(env, "REPLICA_MAX_LAG_MS", 1000, low=100, high=DAY * 1000),
        history_retention_months=_optional_number(env, "HISTORY_RETENTION_MONTHS", high=1200),
        console_session_hours=_number(
            env, "CONSOLE_SESSION_HOURS", 12, float, low=0.01, high=24 * 90
        ),
        # Each upload holds a database connection while the client sends.
        import_max_uploads=_number(env, "IMPORT_MAX_UPLOADS", 4, high=1000),
        import_max_uploads_total=_number(env, "IMPORT_MAX_UPLOADS_TOTAL", 16, high=10_000),
        schedule_interval=_number(env, "SCHEDULE_INTERVAL", 1.0, float, low=0.1, high=3600),
    )


_active: Settings | None = None


def activate(settings: Settings) -> None:
    """Make ``settings`` the process's own; called by the boot (workers/boot.py) only."""
    global _active
    _active = settings


def active() -> Settings:
    """The settings the process booted with; code that runs after the boot (actors,
    handlers) reads them here instead of the environment."""
    if _active is None:
        raise RuntimeError("the process is not booted: call workers.boot.bootstrap first")
    return _active
