"""The load a failover is measured under (bench/failover.py): writers whose every
acknowledged write is remembered, readers, and a TTL feeder, each a thread with its own
HTTP client, every answer recorded with its time."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

SEEDED = 20_000  # users 1..SEEDED exist before the load starts
REQUEST_TIMEOUT = 30.0
PAUSE = 0.05  # between a refused write and its retry (a client would honour Retry-After)


@dataclass(frozen=True)
class Answer:
    kind: str  # "write", "read"
    started: float  # monotonic
    ended: float
    status: int  # 0: no HTTP answer (timeout, refused)
    retry_after: bool


@dataclass
class Record:
    answers: list[Answer] = field(default_factory=list)
    created: set[int] = field(default_factory=set)  # POST /users answered 201 (or 409)
    added: set[int] = field(default_factory=set)  # PATCH /users FW answered 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str, started: float, answer: httpx.Response | None) -> int:
        status = 0 if answer is None else answer.status_code
        retry_after = answer is not None and "retry-after" in answer.headers
        with self.lock:
            self.answers.append(Answer(kind, started, time.monotonic(), status, retry_after))
        return status

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> Counter:
        return Counter(f"{a.kind} {a.status}" for a in self.answers if since <= a.ended <= until)

    def unexpected(self) -> list[Answer]:
        """Answers outside the contract: anything but 2xx, a 409, or a 503 with
        Retry-After (a read of a seeded user is never a 404)."""
        return [
            a
            for a in self.answers
            if not (200 <= a.status < 300 or a.status == 409 or (a.status == 503 and a.retry_after))
        ]


def _call(client: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response | None:
    try:
        return client.request(method, path, **kwargs)
    except httpx.TransportError:
        return None


def _until_done(client, record: Record, stop: threading.Event, method, path, ok, **kw) -> bool:
    """One write, retried after each refusal until it is answered ``ok`` (or the load
    stops: then it counts as not acknowledged)."""
    while not stop.is_set():
        started = time.monotonic()
        status = record.note("write", started, _call(client, method, path, **kw))
        if status in ok:
            return True
        time.sleep(PAUSE)
    return False


def writer(url: str, record: Record, stop: threading.Event, first_id: int) -> None:
    """New users, each then added to FW; an acknowledged write is remembered."""
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        uid = first_id
        while not stop.is_set():
            # 409 after a refused try: that try's COMMIT landed (the user exists).
            if _until_done(client, record, stop, "POST", "/users", {201, 409}, json={"id": uid}):
                with record.lock:
                    record.created.add(uid)
                body = {"id": uid, "segments": ["FW"]}
                if _until_done(client, record, stop, "PATCH", "/users", {200}, json=body):
                    with record.lock:
                        record.added.add(uid)
            uid += 1


def reader(url: str, record: Record, stop: threading.Event, seed: int) -> None:
    """Single reads (the event loop's kept connection) and batch lookups of seeded users."""
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        i = seed
        while not stop.is_set():
            uid = i * 7919 % SEEDED + 1
            started = time.monotonic()
            if i % 2:
                answer = _call(client, "GET", f"/users/{uid}")
            else:
                ids = [uid, uid % SEEDED + 1, (uid + 1) % SEEDED + 1]
                answer = _call(client, "POST", "/users/lookup", json={"ids": ids})
            if record.note("read", started, answer) != 200:
                time.sleep(PAUSE)
            i += 1


def ttl_feeder(url: str, record: Record, stop: threading.Event) -> None:
    """Memberships of FT that expire a second later, for the TTL sweep to remove."""
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        i = 0
        while not stop.is_set():
            body = {"id": i % SEEDED + 1, "segments": ["FT"], "active_time": 1}
            started = time.monotonic()
            record.note("write", started, _call(client, "PATCH", "/users", json=body))
            time.sleep(0.1)
            i += 1


class Load:
    """``start()`` the threads, ``stop()`` them; ``record`` holds what they saw."""

    def __init__(self, url: str, writers: int = 3, readers: int = 2) -> None:
        self.record = Record()
        self._stop = threading.Event()
        targets = [(writer, (SEEDED + 1 + n * 1_000_000,)) for n in range(writers)]
        targets += [(reader, (n,)) for n in range(readers)]
        targets.append((ttl_feeder, ()))
        self._threads = [
            threading.Thread(target=fn, args=(url, self.record, self._stop, *args), daemon=True)
            for fn, args in targets
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT + 5)
