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
        {"url": "https://example.com:99999/"},
        {"url": "https://example.com:0/"},
        {"url": "http://a:b:c/"},
        {"url": "http://[zz]/"},
        {"url": "http://256.1.1.1/"},
        {"url": "http://1.2.3/"},
        {"url": "http://-/"},
        {"url": "http://..../"},
        {"url": "http://a..b/"},
        {"url": "http://-a.example.com/"},
        {"url": "http://" + "a" * 64 + ".com/"},
    ],
)
def test_bad_webhooks_are_400(client, body):
    r = client.post("/webhooks", json=body)
    assert r.status_code == 400, (body, r.text)
    assert client.get("/webhooks").json()["webhooks"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]:8080/x",
        "https://1.2.3.4/",
        "https://hooks.example.com.:443/a",
        "http://hooks-1.internal:8000/",
        "http://localhost/",
    ],
)
def test_good_hosts_and_ports_are_taken(client, url):
    assert client.post("/webhooks", json={"url": url}).status_code == 201


def test_management_needs_the_token(locked_client):
    assert locked_client.get("/webhooks").status_code == 401
    r = locked_client.post("/webhooks", json={"url": "https://example.com/"})
    assert r.status_code == 401
    good = {"Authorization": "Bearer s3cret-token"}
    assert (
        locked_client.post("/webhooks", json={"url": "https://e.com/"}, headers=good).status_code
        == 201
    )


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(locked_client, scheme):
    # RFC 9110 (11.1): the scheme's name is case-insensitive; the token is not.
    good = {"Authorization": f"{scheme} s3cret-token"}
    assert locked_client.get("/webhooks", headers=good).status_code == 200
    wrong = {"Authorization": f"{scheme} S3CRET-TOKEN"}
    assert locked_client.get("/webhooks", headers=wrong).status_code == 401
    assert (
        locked_client.get("/webhooks", headers={"Authorization": "Basic s3cret-token"}).status_code
        == 401
    )
