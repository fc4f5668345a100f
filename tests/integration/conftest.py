from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from tests import services
from tests.conftest import STUB_BROKER
from web.app import create_app


def pytest_configure(config: pytest.Config) -> None:
    # Before this directory's test modules are imported: they may read the settings.
    services.start(config)


@pytest.fixture(scope="session")
def app_client() -> Iterator[TestClient]:
    with TestClient(app=create_app(broker=STUB_BROKER)) as client:
        yield client


@pytest.fixture
def client(app_client: TestClient, clean_db: None, stub_broker) -> TestClient:
    """The app in-process, on the real test database, emptied before each test; its job
    messages go to the test's own StubBroker (tests/integration/jobs.py runs them)."""
    return app_client


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    """The client, with segments A and B and user 1 (in neither)."""
    for name in ("A", "B"):
        client.post("/segments", json={"segment": name})
    client.post("/users", json={"id": 1})
    return client


@pytest.fixture
def locked_client(clean_db: None, app_with) -> Iterator[TestClient]:
    """The app with API_TOKEN=s3cret-token."""
    with TestClient(app=app_with(api_token="s3cret-token")) as client:
        yield client
