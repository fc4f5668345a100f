"""One webhook POST has one deadline (workers/delivery.py), whatever part of it the
receiver is slow at: the answer (trickled a byte at a time) or the body (read slowly).
Against the local receiver of the e2e tests, over real sockets."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from models.webhooks import Delivery
from scripts.receiver import Receiver
from workers.delivery import TIMEOUT, DeliveryError, post_batch

EVENT = {
    "id": 1,
    "user_id": 1000,
    "segment": "A_SEGMENT_WITH_A_LONGER_NAME",
    "operation": "add",
    "reason": "import",
    "at": "2026-11-27T04:24:53.483580Z",
}


def batch(url: str, events: int, pad: int = 0) -> Delivery:
    """``events`` events; ``pad`` bytes more in each (in the segment name), for a body
    bigger than the sockets' buffers can hold (Linux grows a sender's to 4 MiB)."""
    rows = [dict(EVENT, id=i, segment=EVENT["segment"] + "x" * pad) for i in range(events)]
    return Delivery(1, url, "s" * 20, rows, ("1", 1), False)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def timed_failure(delivery: Delivery) -> tuple[float, str]:
    started = time.monotonic()
    with pytest.raises(DeliveryError) as info:
        post_batch(delivery, deny_private=False)
    return time.monotonic() - started, str(info.value)


def test_a_receiver_that_reads_the_body_slowly_is_cut_off_at_the_deadline(receiver):
    # 20 MB at 2 MiB/s: about 8 s in all, while no single send waits long for room
    # (a per-send timeout never fires).
    receiver.slow_read = 1024 * 1024
    seconds, error = timed_failure(batch(receiver.url, 1000, pad=20_000))
    assert TIMEOUT - 0.5 < seconds < TIMEOUT + 1.5, seconds
    assert error == f"no answer within {TIMEOUT:g} s from 127.0.0.1"


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_deadline(receiver):
    receiver.drip = 60
    seconds, error = timed_failure(batch(receiver.url, 5))
    assert TIMEOUT - 0.5 < seconds < TIMEOUT + 1.5, seconds
    assert "no answer within" in error


def test_a_prompt_receiver_gets_the_whole_batch(receiver):
    post_batch(batch(receiver.url, 1000), deny_private=False)
    assert len(receiver.events()) == 1000


def test_a_host_name_that_takes_long_to_resolve_is_cut_off_at_the_deadline(monkeypatch):
    """The system resolver has its own timeouts (often 10-30 s for a silent name server);
    the lookup counts against the same 5 s. Stands in for such a server: a getaddrinfo
    that does not answer until the test ends."""
    resolve, answer = socket.getaddrinfo, threading.Event()

    def silent(host, *args, **kwargs):
        if host == "silent.example":
            answer.wait(60)
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", silent)
    try:
        seconds, error = timed_failure(batch("http://silent.example/hook", 5))
    finally:
        answer.set()
    assert TIMEOUT - 0.5 < seconds < TIMEOUT + 1.5, seconds
    assert error == f"cannot resolve silent.example within {TIMEOUT:g} s"
