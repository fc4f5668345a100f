"""Several real web processes: a key made through one works on all at once, and a
revoked key is refused by every one within a second."""

from __future__ import annotations

import time

import httpx

TOKEN = "e2e-root-token"
ROOT = {"Authorization": f"Bearer {TOKEN}"}


def refused_within(clients: list[httpx.Client], key: str, bound: float) -> list[float]:
    """Seconds until each process refuses ``key``, polling all of them together."""
    started = time.monotonic()
    took: dict[int, float] = {}
    while len(took) < len(clients):
        for i, client in enumerate(clients):
            if i not in took and client.get("/segments", headers=bearer(key)).status_code == 401:
                took[i] = time.monotonic() - started
        assert time.monotonic() - started < bound, f"still accepted after {bound} s: {took}"
        time.sleep(0.01)
    return [took[i] for i in range(len(clients))]


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_revocation_reaches_every_web_process_within_a_second(make_stack):
    stacks = [make_stack("web", API_TOKEN=TOKEN, WEB_WORKERS="1") for _ in range(3)]
    clients = [s.http for s in stacks]
    made = clients[0].post("/keys", json={"name": "svc", "scope": "read"}, headers=ROOT).json()
    for client in clients:  # at once: no process waits for its next poll
        assert client.get("/segments", headers=bearer(made["key"])).status_code == 200
    assert clients[1].delete(f"/keys/{made['id']}", headers=ROOT).status_code == 200
    took = refused_within(clients, made["key"], bound=1.0)
    print(f"revocation seen after {[round(t, 3) for t in took]} s")


def test_a_rotated_key_works_everywhere_until_its_grace_ends(make_stack):
    stacks = [make_stack("web", API_TOKEN=TOKEN, WEB_WORKERS="1") for _ in range(2)]
    clients = [s.http for s in stacks]
    old = clients[0].post("/keys", json={"name": "svc", "scope": "read"}, headers=ROOT).json()
    rotated = clients[0].post(f"/keys/{old['id']}/rotate", json={"grace_seconds": 2}, headers=ROOT)
    new = rotated.json()["key"]
    for client in clients:
        assert client.get("/segments", headers=bearer(old["key"])).status_code == 200
        assert client.get("/segments", headers=bearer(new)).status_code == 200
    refused_within(clients, old["key"], bound=3.0)
    for client in clients:
        assert client.get("/segments", headers=bearer(new)).status_code == 200
