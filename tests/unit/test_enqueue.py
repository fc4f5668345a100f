"""enqueue_job: the message reaches the "jobs" queue; a dead broker (Redis or RabbitMQ) is
reported, not raised."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
import fakeredis
import pytest
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from models.infra.settings import load_settings
from workers.actors import enqueue_job
from workers.broker import build_broker, declare_actors

# dramatiq's RedisBroker enqueues through a Lua script; fakeredis runs Lua only with lupa
# (the fakeredis[lua] extra).
pytest.importorskip("lupa", reason="fakeredis needs lupa (fakeredis[lua]) to run dramatiq's Lua")


@contextmanager
def _booted_with(broker: dramatiq.Broker) -> Iterator[dramatiq.Broker]:
    """``broker``, with the actors declared, as the process's for the block (no other
    service: the unit tests run with none)."""
    before = dramatiq.broker.global_broker
    declare_actors(broker)
    dramatiq.set_broker(broker)
    try:
        yield broker
    finally:
        dramatiq.broker.global_broker = before


def _dead() -> RedisBroker:
    # Nothing listens on port 1: every connection attempt is refused at once.
    return RedisBroker(url="redis://127.0.0.1:1/0", socket_connect_timeout=1, socket_timeout=1)


def _dead_rabbitmq() -> dramatiq.Broker:
    url = "amqp://guest:guest@127.0.0.1:1/%2F"
    return build_broker(load_settings({"BROKER_URL": url}))


@pytest.fixture
def fake_broker() -> Iterator[RedisBroker]:
    with _booted_with(RedisBroker(client=fakeredis.FakeRedis())) as broker:
        yield broker


@pytest.fixture(params=["redis", "rabbitmq"])
def dead_broker(request: pytest.FixtureRequest) -> Iterator[dramatiq.Broker]:
    dead = _dead() if request.param == "redis" else _dead_rabbitmq()
    with _booted_with(dead) as broker:
        yield broker


def _queued(broker: RedisBroker, queue: str) -> list[Message]:
    client = broker.client
    ids = client.lrange(f"{broker.namespace}:{queue}", 0, -1)
    return [Message.decode(client.hget(f"{broker.namespace}:{queue}.msgs", i)) for i in ids]


def test_enqueue_job_puts_one_message_on_the_jobs_queue(fake_broker):
    assert _queued(fake_broker, "jobs") == []
    assert enqueue_job(42) is True
    messages = _queued(fake_broker, "jobs")
    assert len(messages) == 1
    (msg,) = messages
    assert msg.queue_name == "jobs"
    assert msg.actor_name == "run_job"
    assert list(msg.args) == [42]
    assert msg.kwargs == {}
    # Nothing went anywhere else (no periodic queue, no delay queue).
    assert _queued(fake_broker, "periodic") == []
    assert _queued(fake_broker, "jobs.DQ") == []


def test_enqueue_job_each_call_is_its_own_message(fake_broker):
    assert enqueue_job(1) and enqueue_job(2) and enqueue_job(1)
    assert [list(m.args) for m in _queued(fake_broker, "jobs")] == [[1], [2], [1]]


def test_enqueue_job_returns_false_when_the_broker_is_unreachable(dead_broker):
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    log = logging.getLogger("workers.actors")
    log.addHandler(handler)
    started = time.monotonic()
    try:
        assert enqueue_job(7) is False
    finally:
        log.removeHandler(handler)
    assert time.monotonic() - started < 5
    assert any("job 7" in r.getMessage() for r in records)


def test_enqueue_job_works_again_after_a_failed_send(fake_broker):
    with _booted_with(_dead()):
        assert enqueue_job(9) is False
    assert enqueue_job(9) is True
    assert [list(m.args) for m in _queued(fake_broker, "jobs")] == [[9]]
