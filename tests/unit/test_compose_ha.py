"""docker-compose.yml's `ha` profile, read as YAML (no Docker here): etcd and two
Patroni nodes, only under the profile, and the service able to point at them."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_ha_profile_runs_etcd_and_two_patroni_nodes_in_synchronous_mode():
    services = _compose()["services"]
    ha = {name for name, s in services.items() if "ha" in s.get("profiles", [])}
    assert ha == {"etcd", "pg-a", "pg-b"}
    for name in ("pg-a", "pg-b"):
        node = services[name]
        assert node["build"] == "docker/patroni"
        assert node["environment"]["PATRONI_NAME"] == name
        assert node["environment"]["PATRONI_POSTGRESQL_CONNECT_ADDRESS"] == f"{name}:5432"
        assert node["depends_on"]["etcd"]["condition"] == "service_healthy"
    patroni = yaml.safe_load((ROOT / "docker/patroni/patroni.yml").read_text())
    assert patroni["bootstrap"]["dcs"]["synchronous_mode"] is True
    assert patroni["etcd"]["hosts"] == "etcd:2379"
    assert "--enable-v2" in services["etcd"]["command"]
    assert (ROOT / "docker/patroni/Dockerfile").read_text().count("patroni") >= 2


def test_the_service_takes_its_dsn_from_the_environment_with_the_plain_db_as_default():
    dsn = _compose()["x-app"]["environment"]["DATABASE_DSN"]
    assert dsn == "${DATABASE_DSN:-host=db user=postgres dbname=postgres sslmode=disable}"
    # The profile's own instructions name the multi-host DSN.
    assert "host=pg-a,pg-b" in (ROOT / "docker-compose.yml").read_text()
