"""The one broker setup every process imports (web to send, worker and scheduler to run).

Importing this module creates the broker object and the database pool object; neither
connects until a message is sent or processed.
"""

from __future__ import annotations

import sys
import threading

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from models.db import db, init_db
from models.logs import configure_logging
from models.settings import ConfigError, Settings, load_settings


class DatabaseConnection(Middleware):
    """Borrow a pooled connection for each message, on the worker thread that runs it,
    and give it back afterwards, whatever the outcome."""

    def __init__(self) -> None:
        self._local = threading.local()

    def before_process_message(self, broker, message) -> None:
        self._local.ctx = db.connection_context()
        self._local.ctx.__enter__()

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        ctx = getattr(self._local, "ctx", None)
        if ctx is not None:
            self._local.ctx = None
            ctx.__exit__(None, None, None)

    after_skip_message = after_process_message


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")


settings = _settings()
configure_logging(settings)
init_db(settings)
# Short socket timeouts: the web tier sends after its commit and must not hang on a
# dead Redis; the job row stays queued and is re-sent later.
broker = RedisBroker(
    url=settings.redis_url,
    namespace=settings.queue_namespace,
    socket_connect_timeout=2,
    socket_timeout=5,
)
broker.add_middleware(DatabaseConnection())
dramatiq.set_broker(broker)
