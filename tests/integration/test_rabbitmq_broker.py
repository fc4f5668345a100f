"""The RabbitMQ broker on a real server: namespaced queues with their delay and
dead-letter queues, confirmed sends, and the /ready probe."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import dramatiq
import pika.exceptions
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from models.infra.settings import active
from tests import services
from tests.brokers import RABBITMQ_URL, rabbitmq_missing
from tests.conftest import STUB_BROKER
from workers.actors import enqueue_job
from workers.boot import bootstrap
from workers.broker import delete_queues, ping_broker

pytestmark = pytest.mark.slow

NAMESPACE = f"{active().queue_namespace}_unit"


@pytest.fixture
def rabbit() -> Iterator[RabbitmqBroker]:
    """The process booted on the test RabbitMQ, queues under a namespace of this test's
    own; they are deleted afterwards."""
    reason = rabbitmq_missing()
    if reason:
        services.missing(reason)
    settings = dataclasses.replace(active(), broker_url=RABBITMQ_URL, queue_namespace=NAMESPACE)
    before = active()
    broker = bootstrap(settings).broker
    assert isinstance(broker, RabbitmqBroker)
    try:
        yield broker
    finally:
        delete_queues(broker)
        broker.close()
        bootstrap(before, STUB_BROKER)


def test_a_job_message_lands_on_the_namespaced_queue(rabbit):
    assert enqueue_job(41) is True
    queued, delayed, dead = rabbit.get_queue_message_counts(f"{NAMESPACE}.jobs")
    assert (queued, delayed, dead) == (1, 0, 0)
    # Other namespaces (other deployments, other test runs) see nothing of it.
    assert rabbit.get_queue_message_counts(f"{NAMESPACE}.periodic") == (0, 0, 0)


def test_a_retry_waits_on_the_namespaced_delay_queue(rabbit):
    message = rabbit.get_actor("run_job").message(7)
    rabbit.enqueue(message, delay=60_000)
    assert rabbit.get_queue_message_counts(f"{NAMESPACE}.jobs") == (0, 1, 0)


def test_messages_a_worker_cannot_process_go_to_the_dead_letter_queue(rabbit):
    """A message that fails for good is nacked, and RabbitMQ routes it to the ``.XQ`` the
    queue was declared with (Dramatiq keeps it there for a week)."""
    rabbit.enqueue(dramatiq.Message(f"{NAMESPACE}.periodic", "no_such_actor", (), {}, {}))
    worker = dramatiq.Worker(rabbit, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        rabbit.join(f"{NAMESPACE}.periodic", timeout=20_000)
    finally:
        worker.stop()
    assert rabbit.get_queue_message_counts(f"{NAMESPACE}.periodic") == (0, 0, 1)


def test_ready_probe_answers_and_notices_a_dead_server(rabbit):
    ping_broker()
    dead = dataclasses.replace(active(), broker_url="amqp://guest:guest@127.0.0.1:1/%2F")
    bootstrap(dead)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        ping_broker()
