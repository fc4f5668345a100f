"""/webhooks management: validation, the secret shown once, the token."""

from __future__ import annotations

import pytest


def test_create_list_read_delete(client):
    r = client.post("/webhooks", json={"url": "https://hooks.example.com/a?x=1"})
    assert r.status_code == 201, r.text
    hook = r.json()
    assert len(hook["secret"]) >= 32 and hook["segments"] is None and hook["cursor"] == 0
    listed = client.get("/webhooks").json()["webhooks"]
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    one = client.get(f"/webhooks/{hook['id']}").json()
    assert one["pending"] == 0 and one["failures"] == 0 and "secret" not in one
    assert client.delete(f"/webhooks/{hook['id']}").status_code == 200
    assert client.delete(f"/webhooks/{hook['id']}").status_code == 404
    assert client.get("/webhooks/0").status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/x"},
        {"url": "file:///etc/passwd"},
        {"url": "javascript:alert(1)"},
        {"url": "http://"},
        {"url": "http://user:pw@example.com/"},
        {"url": "https://example.com/" + "x" * 2100},
        {"url": "https://example.com/", "secret": "short"},
        {"url": "https://example.com/", "segments": []},
        {"url": "https://example.com/", "segments": ["bad name"]},
        {"url": "https://example.com/", "extra": 1},
    ],
)
def test_bad_webhooks_are_400(client, body):
    r = client.post("/webhooks", json=body)
    assert r.status_code == 400, (body, r.text)
    assert client.get("/webhooks").json()["webhooks"] == []


def test_management_needs_the_token(locked_client):
    assert locked_client.get("/webhooks").status_code == 401
    r = locked_client.post("/webhooks", json={"url": "https://example.com/"})
    assert r.status_code == 401
    good = {"Authorization": "Bearer s3cret-token"}
    assert (
        locked_client.post("/webhooks", json={"url": "https://e.com/"}, headers=good).status_code
        == 201
    )
