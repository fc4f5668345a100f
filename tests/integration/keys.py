"""Helpers the tests of API keys share: the root token's header, a key's header, making a
key."""

from __future__ import annotations

from litestar.testing import TestClient

ROOT = {"Authorization": "Bearer s3cret-token"}


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def make_key(api: TestClient, name: str, scope: str, **extra) -> dict:
    answer = api.post("/keys", json={"name": name, "scope": scope, **extra}, headers=ROOT)
    assert answer.status_code == 201, answer.text
    return answer.json()
