# Developer entry points. Everything runs from the project's own venv (.venv).

PY := .venv/bin/python
STAMP := .venv/.installed
PYTEST_ARGS ?=
BENCH_ARGS ?=
# Compose v1 ships as docker-compose; v2 as the `docker compose` plugin.
COMPOSE ?= $(shell command -v docker-compose >/dev/null 2>&1 && echo docker-compose || echo docker compose)
SOURCES := $(wildcard web workers models scripts bench tests)

.DEFAULT_GOAL := help
.PHONY: help venv run test test-fast test-rest build lint migrate bench docker clean distclean

help:
	@echo "make venv      create .venv and install the project with its dev extra"
	@echo "make run       web, worker and scheduler (embedded PostgreSQL/Redis unless"
	@echo "               DATABASE_DSN / REDIS_URL are set; no Redis with BROKER_URL=amqp://...)"
	@echo "make test      pytest (PYTEST_ARGS='-k name' to pass options); worker tests run"
	@echo "               on Redis and on RabbitMQ (TEST_RABBITMQ_URL), skipped ones listed"
	@echo "make test-fast unit tests (no services) and in-process integration tests not marked slow"
	@echo "make test-rest everything test-fast leaves out: slow integration tests and e2e"
	@echo "make build     byte-compile and ruff check"
	@echo "make lint      ruff check and ruff format --check"
	@echo "make migrate   apply migrations to the database make run would use"
	@echo "make bench     python -m bench.run (BENCH_ARGS to pass options)"
	@echo "make docker    docker-compose up --build server"
	@echo "make clean     remove caches and build output (distclean: also .venv, .data)"

venv: $(STAMP)

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -e '.[dev]'
	touch $@

run: venv
	$(PY) -m scripts.devservices run

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -q -m "not slow" tests/unit tests/integration $(PYTEST_ARGS)

test-rest: venv
	$(PY) -m pytest -q -m slow tests/integration $(PYTEST_ARGS)
	$(PY) -m pytest -q tests/e2e $(PYTEST_ARGS)

build: venv
	$(PY) -m compileall -q $(SOURCES)
	$(PY) -m ruff check .

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

migrate: venv
	$(PY) -m scripts.devservices exec -- python -m models.infra.migrate

bench: venv
	$(PY) -m bench.run $(BENCH_ARGS)

docker:
	$(COMPOSE) up --build server

clean:
	find . \( -path ./.venv -o -path ./.data -o -path ./.git \) -prune -o \
		\( -name __pycache__ -o -name '*.egg-info' \) -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache .mypy_cache .hypothesis build dist

distclean: clean
	-test ! -x $(PY) || $(PY) -m scripts.devservices stop
	rm -rf .venv .data
