"""The broker, built from settings at boot, with every actor declared on it."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from models.settings import Settings
from workers.actors import ACTORS


def build_broker(settings: Settings) -> dramatiq.Broker:
    # Short socket timeouts: the web tier sends after its commit and must not hang on a
    # dead Redis; the job row stays queued and is re-sent later.
    return RedisBroker(
        url=settings.redis_url,
        namespace=settings.queue_namespace,
        socket_connect_timeout=2,
        socket_timeout=5,
    )


def declare_actors(broker: dramatiq.Broker) -> None:
    """Bind every actor of workers/actors.py to ``broker`` (once per broker)."""
    for fn, options in ACTORS:
        if fn.__name__ not in broker.actors:
            dramatiq.actor(fn, broker=broker, **options)


def ping_broker() -> None:
    """Raise unless the booted broker's server answers (for /ready)."""
    broker = dramatiq.broker.global_broker
    if broker is None:
        raise RuntimeError("no broker: the process is not booted")
    client = getattr(broker, "client", None)
    if client is not None:  # Redis; Dramatiq's StubBroker in tests has no server
        client.ping()
