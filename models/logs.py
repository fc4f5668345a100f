"""Logging for every process: to LOG_FILE_PATH when set, else stderr."""

from __future__ import annotations

import logging
import sys

from models.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    handler: logging.Handler = (
        logging.FileHandler(settings.log_file_path)
        if settings.log_file_path
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # peewee logs every statement at DEBUG; httpx every request at INFO.
    for noisy in ("peewee", "httpx", "apscheduler", "peewee_migrate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
