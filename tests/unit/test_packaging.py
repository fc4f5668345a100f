"""What ships is the service: the wheel and the Docker image hold web, workers and models,
not the benchmarks or the developer scripts (make run uses those from the checkout)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_packages_only_the_service():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(found) == ["models*", "web*", "workers*"]
    data = project["tool"]["setuptools"]["package-data"]
    assert not any("vendor" in pattern for patterns in data.values() for pattern in patterns)


def test_the_docker_image_leaves_out_bench_scripts_and_tests():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {"bench", "scripts", "tests", "docs"} <= ignored


def test_nothing_is_vendored_into_the_web_package():
    assert not (ROOT / "web" / "vendor").exists()
