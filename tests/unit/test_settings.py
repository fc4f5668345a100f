import pytest

from models.infra.settings import ConfigError, load_settings, parse_server_host


def test_defaults():
    s = load_settings({})
    assert (s.server_host, s.server_port) == ("0.0.0.0", 8080)
    assert s.log_file_path is None and s.database_password is None
    assert s.database_replica_dsn is None and s.replica_connect_params() is None
    assert s.replica_max_lag_ms == 1000
    assert s.worker_threads == 4


def test_replica_gets_the_password_too():
    s = load_settings(
        {
            "DATABASE_REPLICA_DSN": "postgresql://app@replica:5433/segments",
            "DATABASE_PASSWORD": "pw",
            "REPLICA_MAX_LAG_MS": "250",
        }
    )
    params = s.replica_connect_params()
    assert (params["host"], params["port"], params["password"]) == ("replica", "5433", "pw")
    assert s.replica_max_lag_ms == 250


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (":8080", ("0.0.0.0", 8080)),
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("[::1]:81", ("::1", 81)),
    ],
)
def test_server_host(value, expected):
    assert parse_server_host(value) == expected


@pytest.mark.parametrize(
    "env",
    [
        {"SERVER_HOST": "8080"},
        {"SERVER_HOST": ":http"},
        {"SERVER_HOST": ":70000"},
        {"DATABASE_DSN": "host=db user"},
        {"REDIS_URL": "http://localhost"},
        {"DB_POOL_SIZE": "many"},
        {"DB_POOL_SIZE": "0"},
        {"SWEEP_INTERVAL": "-1"},
        {"SWEEP_INTERVAL": "nan"},
        {"SWEEP_INTERVAL": "inf"},
        {"SWEEP_INTERVAL": "-inf"},
        {"SWEEP_INTERVAL": "1e400"},
        {"SWEEP_INTERVAL": "0"},
        {"REQUEUE_INTERVAL": "nan"},
        {"DB_POOL_TIMEOUT": "NaN"},
        {"JOB_BATCH_PAUSE_MS": "inf"},
        {"JOB_BATCH_PAUSE_MS": "-5"},
        {"BATCH_SIZE": "1e3"},
        {"BATCH_SIZE": "0"},
        {"BATCH_SIZE": "99999999999999999999"},
        {"SWEEP_BATCH_SIZE": "-1"},
        {"JOB_LEASE_SECONDS": "0"},
        {"WEB_WORKERS": "100000"},
        {"WORKER_THREADS": "0"},
        {"WORKER_THREADS": "four"},
        {"DATABASE_REPLICA_DSN": "host=replica user"},
        {"REPLICA_MAX_LAG_MS": "soon"},
        {"REPLICA_MAX_LAG_MS": "0"},
        {"REPLICA_MAX_LAG_MS": "1.5"},
        {"REPLICA_MAX_LAG_MS": "-1000"},
        {"HISTORY_RETENTION_MONTHS": "0"},
        {"HISTORY_RETENTION_MONTHS": "-3"},
        {"HISTORY_RETENTION_MONTHS": "1.5"},
        {"HISTORY_RETENTION_MONTHS": "six"},
    ],
)
def test_bad_values_fail_with_one_line_naming_the_variable(env):
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert "\n" not in message and next(iter(env)) in message


def test_history_retention_is_kept_forever_unless_set():
    assert load_settings({}).history_retention_months is None
    assert load_settings({"HISTORY_RETENTION_MONTHS": ""}).history_retention_months is None
    assert load_settings({"HISTORY_RETENTION_MONTHS": "6"}).history_retention_months == 6


def test_password_is_merged_into_connect_params_only():
    s = load_settings(
        {"DATABASE_DSN": "postgresql://app@db:5432/segments", "DATABASE_PASSWORD": "s3cret"}
    )
    params = s.connect_params()
    assert params["password"] == "s3cret" and params["dbname"] == "segments"
    assert "s3cret" not in s.database_dsn
