"""Defaults that follow the machine (issue 10), and the new timing settings."""

from __future__ import annotations

import os

import pytest

from models.infra.settings import ConfigError, load_settings


def test_web_processes_and_pool_follow_the_cpu_count():
    cores = os.cpu_count() or 1
    s = load_settings({})
    assert s.web_workers == cores
    # About eight connections per core over all web processes, at least 8 per process.
    assert s.db_pool_size == 8
    one = load_settings({"WEB_WORKERS": "1"})
    assert one.db_pool_size == max(8, 8 * cores)
    assert load_settings({"DB_POOL_SIZE": "3"}).db_pool_size == 3


def test_timing_defaults_and_units():
    s = load_settings({})
    assert s.job_chunk_time == pytest.approx(0.05)
    assert (s.header_read_timeout, s.body_read_timeout) == (10, 60)
    s = load_settings({"JOB_CHUNK_TIME_MS": "200", "BODY_READ_TIMEOUT": "1.5"})
    assert s.job_chunk_time == pytest.approx(0.2)
    assert s.body_read_timeout == 1.5


@pytest.mark.parametrize(
    "env",
    [
        {"JOB_CHUNK_TIME_MS": "0"},
        {"JOB_CHUNK_TIME_MS": "fast"},
        {"HEADER_READ_TIMEOUT": "0"},
        {"BODY_READ_TIMEOUT": "-1"},
        {"WEB_WORKERS": "0"},
    ],
)
def test_bad_values_are_one_line_errors(env):
    with pytest.raises(ConfigError, match=next(iter(env))):
        load_settings(env)
