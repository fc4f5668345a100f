"""Logging for every process: one JSON object a line, to LOG_FILE_PATH or stderr.

The web tier sets ``request_id`` for each request; every record logged while serving it
(on any thread: anyio copies the context into its worker threads) carries it.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

from models.infra.settings import Settings

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(settings: Settings) -> None:
    handler: logging.Handler = (
        logging.FileHandler(settings.log_file_path)
        if settings.log_file_path
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    # Replace plain console/file handlers (ours from an earlier call, or a CLI's default
    # setup such as Dramatiq's), but keep specialised ones such as pytest's log capture.
    plain = (logging.StreamHandler, logging.FileHandler)
    root.handlers[:] = [h for h in root.handlers if type(h) not in plain] + [handler]
    root.setLevel(logging.INFO)
    # peewee logs every statement at DEBUG; httpx every request at INFO.
    for noisy in ("peewee", "httpx", "apscheduler", "peewee_migrate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pika (RabbitMQ) logs each connection at INFO, and with a traceback at ERROR each one
    # the server closed for missed heartbeats (an idle sender's, every few minutes).
    # Dramatiq reconnects, or raises ConnectionClosed, which the caller logs.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
