"""BROKER_URL: which Dramatiq broker it builds, with which options and queue names."""

from __future__ import annotations

import dataclasses

import fakeredis
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from models.infra.settings import BrokerKind, ConfigError, load_settings
from workers.broker import build_broker, declare_actors, queue_prefix, rabbitmq_url

AMQP = "amqp://guest:s3cret@rabbit.example:5672/%2F"


def test_broker_url_defaults_to_redis_url():
    s = load_settings({"REDIS_URL": "redis://cache:6379/2"})
    assert s.broker_url == "redis://cache:6379/2" and s.broker_kind is BrokerKind.REDIS
    assert load_settings({}).broker_url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("url", "kind", "cls"),
    [
        ("redis://127.0.0.1:6379/0", BrokerKind.REDIS, RedisBroker),
        ("rediss://cache:6380/0", BrokerKind.REDIS, RedisBroker),
        ("unix:///tmp/redis.sock?db=3", BrokerKind.REDIS, RedisBroker),
        (AMQP, BrokerKind.RABBITMQ, RabbitmqBroker),
        ("amqps://u:p@rabbit.example:5671/prod", BrokerKind.RABBITMQ, RabbitmqBroker),
    ],
)
def test_the_scheme_picks_the_broker(url, kind, cls):
    # REDIS_URL is not looked at when BROKER_URL is set, not even checked.
    settings = load_settings({"BROKER_URL": url, "REDIS_URL": "not a url"})
    assert settings.broker_kind is kind
    assert type(build_broker(settings)) is cls


@pytest.mark.parametrize("url", ["http://u:s3cret@host/", "kafka://h:9092", "localhost:5672"])
def test_an_unknown_scheme_is_one_line_naming_broker_url_without_the_password(url):
    with pytest.raises(ConfigError) as info:
        load_settings({"BROKER_URL": url})
    message = str(info.value)
    assert message.startswith("BROKER_URL") and "\n" not in message
    assert "s3cret" not in message and "amqp://" in message


def test_rabbitmq_sends_are_confirmed_with_bounded_connection_timeouts():
    broker = build_broker(load_settings({"BROKER_URL": AMQP + "?heartbeat=30"}))
    assert broker.confirm_delivery is True
    params = broker.parameters
    assert (params.host, params.port, params.credentials.password) == (
        "rabbit.example",
        5672,
        "s3cret",
    )
    # The URL's own value wins over ours; ours fill in the rest.
    assert params.heartbeat == 30
    assert (params.socket_timeout, params.stack_timeout) == (2, 5)
    assert params.blocked_connection_timeout == 10 and params.connection_attempts == 1


def test_each_of_several_rabbitmq_urls_gets_the_defaults():
    urls = rabbitmq_url("amqp://a:5672/%2F;amqp://b:5672/%2F?socket_timeout=7").split(";")
    assert len(urls) == 2
    assert "socket_timeout=2" in urls[0] and "socket_timeout=7" in urls[1]
    assert all("heartbeat=10" in url for url in urls)


def test_queue_namespace_prefixes_rabbitmq_queue_names():
    settings = load_settings({"BROKER_URL": AMQP, "QUEUE_NAMESPACE": "staging"})
    broker = build_broker(settings)  # connects lazily: nothing is opened here
    declare_actors(broker, queue_prefix(broker, settings))
    assert broker.get_actor("run_job").queue_name == "staging.jobs"
    assert broker.get_actor("sweep_expired").queue_name == "staging.periodic"
    assert broker.get_declared_queues() == {"staging.jobs", "staging.periodic", "staging.webhooks"}
    assert broker.get_declared_delay_queues() == {
        "staging.jobs.DQ",
        "staging.periodic.DQ",
        "staging.webhooks.DQ",
    }


def test_redis_namespaces_its_keys_and_keeps_the_queue_names():
    settings = dataclasses.replace(load_settings({}), queue_namespace="staging")
    broker = RedisBroker(client=fakeredis.FakeRedis(), namespace="staging")
    assert queue_prefix(broker, settings) == ""
    declare_actors(broker, queue_prefix(broker, settings))
    assert broker.get_actor("run_job").queue_name == "jobs"
    assert build_broker(settings).namespace == "staging"
