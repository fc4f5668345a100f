"""The one boot of every process: settings, logging, the database pool and the broker.

Importing any module of ``web``, ``workers`` or ``models`` reads no settings and opens
nothing; each process calls ``bootstrap`` once at start:

- web: ``web.app.create_app`` (uvicorn's factory),
- worker: ``dramatiq workers.boot:boot_worker`` (Dramatiq calls it in each process),
- scheduler: ``workers.scheduler.main``,
- command-line tools (``models.infra.migrate``, ``models.verify``, bench) boot what they use.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import dramatiq

from models import outbox
from models.infra.db import init_db
from models.infra.logs import configure_logging
from models.infra.settings import ConfigError, Settings, activate, load_settings
from models.reads import prepare_hot_reads
from workers.actors import enqueue_job
from workers.broker import build_broker, declare_actors, queue_prefix


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    broker: dramatiq.Broker


def bootstrap(settings: Settings, broker: dramatiq.Broker | None = None) -> Runtime:
    """Set this process up for ``settings``. ``broker`` replaces the one the settings
    name (tests pass Dramatiq's StubBroker). Calling it again re-boots: tests do that
    to run under other settings, and boot back afterwards."""
    configure_logging(settings)
    init_db(settings)
    prepare_hot_reads()
    broker = broker or build_broker(settings)
    declare_actors(broker, queue_prefix(broker, settings))
    dramatiq.set_broker(broker)
    outbox.connect(enqueue_job)  # jobs recorded from now on are sent after their commit
    activate(settings)
    return Runtime(settings, broker)


def settings_or_exit() -> Settings:
    """The environment's settings, or exit with one line naming the bad variable."""
    try:
        return load_settings()
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")


def boot_worker() -> None:
    """The worker's boot, named on the Procfile's worker line."""
    bootstrap(settings_or_exit())
