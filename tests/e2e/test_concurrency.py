"""Concurrent requests against the real web process."""

from __future__ import annotations

import itertools
import random
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from models.verify import verify

pytestmark = pytest.mark.e2e


def test_parallel_adds_of_different_segments_all_stick(web_only, sql):
    http = web_only.http
    names = [f"SEG_{i}" for i in range(20)]
    for name in names:
        http.post("/segments", json={"segment": name})
    http.post("/users", json={"id": 1})

    def add(name: str) -> int:
        with httpx.Client(base_url=web_only.url, timeout=30) as c:
            return c.patch("/users", json={"id": 1, "segments": [name]}).status_code

    with ThreadPoolExecutor(20) as pool:
        assert list(pool.map(add, names)) == [200] * 20
    assert http.get("/users/1").json()["segments"] == sorted(names)
    sql.execute("SELECT count(*) FROM history WHERE operation = 'add'")
    assert sql.fetchone()[0] == 20


def test_parallel_add_and_remove_of_one_membership(web_only, sql):
    http = web_only.http
    http.post("/segments", json={"segment": "HOT"})
    http.post("/segments", json={"segment": "OTHER"})
    http.post("/users", json={"id": 7})

    def hammer(seed: int) -> list[int]:
        rnd = random.Random(seed)
        codes = []
        with httpx.Client(base_url=web_only.url, timeout=30) as c:
            for _ in range(25):
                if rnd.random() < 0.5:
                    r = c.patch("/users", json={"id": 7, "segments": ["HOT", "OTHER"]})
                else:
                    r = c.request("DELETE", "/users", json={"id": 7, "segments": ["OTHER", "HOT"]})
                codes.append(r.status_code)
        return codes

    with ThreadPoolExecutor(16) as pool:
        codes = [c for batch in pool.map(hammer, range(16)) for c in batch]
    assert set(codes) == {200}
    # Per membership the events alternate add, remove, add...: never two in a row.
    for segment in ("HOT", "OTHER"):
        sql.execute(
            "SELECT h.operation FROM history h JOIN segments s ON s.id = h.segment_id "
            "WHERE s.name = %s ORDER BY h.id",
            (segment,),
        )
        ops = [r[0] for r in sql.fetchall()]
        assert ops, segment
        assert all(a != b for a, b in itertools.pairwise(ops)), ops
        assert ops[0] == "add"
        held = segment in http.get("/users/7").json()["segments"]
        assert (ops[-1] == "add") == held


def test_parallel_creation_of_the_same_user_and_segment(web_only):
    def create(_: int) -> tuple[int, int]:
        with httpx.Client(base_url=web_only.url, timeout=30) as c:
            return (
                c.post("/users", json={"id": 42}).status_code,
                c.post("/segments", json={"segment": "SAME"}).status_code,
            )

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(create, range(12)))
    assert sorted(u for u, _ in results) == [201] + [409] * 11
    assert sorted(s for _, s in results) == [201] + [409] * 11


def test_crossed_add_and_remove_on_one_user_never_deadlock(web_only, sql):
    """add S1 remove S2 against add S2 remove S1, many times at once: requests for one
    user are serialised on the user row, so none fails."""
    http = web_only.http
    for name in ("S1", "S2"):
        http.post("/segments", json={"segment": name})
    http.post("/users", json={"id": 5})

    def flip(n: int) -> list[int]:
        a, b = ("S1", "S2") if n % 2 else ("S2", "S1")
        with httpx.Client(base_url=web_only.url, timeout=30) as c:
            return [
                c.post("/users/5/segments", json={"add": [a], "remove": [b]}).status_code
                for _ in range(15)
            ]

    with ThreadPoolExecutor(8) as pool:
        codes = [c for batch in pool.map(flip, range(8)) for c in batch]
    assert set(codes) == {200}
    assert verify()["ok"]
