"""The broker, built from settings at boot, with every actor declared on it.

``BROKER_URL`` picks Dramatiq's Redis broker or its RabbitMQ broker; the actors, their
retries and the outbox (models/jobs.py) behave the same on both.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import dramatiq
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name, xq_name

from models.infra.settings import BrokerKind, Settings
from workers.actors import ACTORS

# pika's connection parameters, unless BROKER_URL's query sets them. Short connect
# timeouts for the same reason as Redis's below. A confirmed send has no timeout of its
# own: a silent server is noticed by the heartbeat (10 s, so within about 30 s), one that
# blocks publishers (memory or disk alarm) after 10 s; the send then fails and the
# outbox re-sends the job later. An idle sender's connection is closed by the server
# for missed heartbeats; Dramatiq opens a new one at the next send.
RABBITMQ_DEFAULTS = {
    "connection_attempts": "1",
    "socket_timeout": "2",
    "stack_timeout": "5",
    "blocked_connection_timeout": "10",
    "heartbeat": "10",
}


def build_broker(settings: Settings) -> dramatiq.Broker:
    if settings.broker_kind is BrokerKind.RABBITMQ:
        # confirm_delivery: a send returns once RabbitMQ holds the message, and raises
        # when it cannot (server down, queue gone), so the job's row stays queued.
        return RabbitmqBroker(url=rabbitmq_url(settings.broker_url), confirm_delivery=True)
    # Short socket timeouts: the web tier sends after its commit and must not hang on a
    # dead Redis; the job row stays queued and is re-sent later.
    return RedisBroker(
        url=settings.broker_url,
        namespace=settings.queue_namespace,
        socket_connect_timeout=2,
        socket_timeout=5,
    )


def rabbitmq_url(url: str) -> str:
    """``url`` (or each of several, ``;``-separated) with RABBITMQ_DEFAULTS added to its
    query where it does not set them."""
    parts = []
    for one in url.split(";"):
        split = urlsplit(one)
        query = {**RABBITMQ_DEFAULTS, **dict(parse_qsl(split.query))}
        parts.append(split._replace(query=urlencode(query)).geturl())
    return ";".join(parts)


def queue_prefix(broker: dramatiq.Broker, settings: Settings) -> str:
    """What QUEUE_NAMESPACE puts before each queue name. Redis prefixes its keys itself;
    a RabbitMQ virtual host has one flat set of queue names, so there the namespace is
    part of the name (``dramatiq.jobs``, with its ``.DQ`` and ``.XQ``)."""
    return f"{settings.queue_namespace}." if isinstance(broker, RabbitmqBroker) else ""


def declare_actors(broker: dramatiq.Broker, prefix: str = "") -> None:
    """Bind every actor of workers/actors.py to ``broker`` (once per broker), each on
    its queue with ``prefix`` before the name. On RabbitMQ the queues themselves (with
    their delay and dead-letter queues) are created by the first send or consume."""
    for fn, options in ACTORS:
        if fn.__name__ not in broker.actors:
            queue_name = prefix + options["queue_name"]
            dramatiq.actor(fn, broker=broker, **{**options, "queue_name": queue_name})


def ping_broker() -> None:
    """Raise unless the booted broker's server answers (for /ready)."""
    broker = dramatiq.broker.global_broker
    if broker is None:
        raise RuntimeError("no broker: the process is not booted")
    if isinstance(broker, RabbitmqBroker):
        _ping_rabbitmq(broker)
        return
    client = getattr(broker, "client", None)
    if client is not None:  # Redis; Dramatiq's StubBroker in tests has no server
        client.ping()


def _ping_rabbitmq(broker: RabbitmqBroker) -> None:
    # The connection is this thread's own (Dramatiq keeps one per thread). An idle one
    # may have been closed by the server's heartbeat check: then one fresh try decides.
    try:
        broker.connection.process_data_events(time_limit=0)
    except pika.exceptions.AMQPError:
        del broker.connection
        broker.connection.process_data_events(time_limit=0)


def delete_queues(broker: RabbitmqBroker) -> None:
    """Delete the broker's queues, with their delay and dead-letter queues, from the
    server (tests and benchmarks leave nothing behind on a shared RabbitMQ)."""
    for queue in broker.get_declared_queues():
        for name in (queue, dq_name(queue), xq_name(queue)):
            broker.channel.queue_delete(name)
