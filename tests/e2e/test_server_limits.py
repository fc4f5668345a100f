"""The web process as clients meet it: several processes that agree on /metrics, a
request id and a count for every response (unknown routes too), slow clients cut off,
and a client that hangs up mid-body is not a server error."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def web(make_stack, tmp_path: Path):
    metrics_dir = tmp_path / "metrics"
    s = make_stack(
        "web",
        WEB_WORKERS="2",
        HEADER_READ_TIMEOUT="1",
        BODY_READ_TIMEOUT="1",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    s.metrics_dir = metrics_dir
    return s


def scrape(url: str) -> str:
    # A new connection per scrape, so scrapes land on different processes.
    return httpx.get(f"{url}/metrics", headers={"Connection": "close"}).text


def count(text: str, route: str, status: str) -> float:
    pattern = (
        r'segments_http_request_duration_seconds_count\{method="(?:GET|POST)",'
        rf'route="{re.escape(route)}",status="{status}"\}} ([0-9.e+]+)'
    )
    m = re.search(pattern, text)
    return float(m.group(1)) if m else 0.0


def test_two_processes_answer_the_same_totals(web):
    before = count(scrape(web.url), "/health", "200")  # the start-up probes
    for _ in range(40):
        assert httpx.get(f"{web.url}/health", headers={"Connection": "close"}).status_code == 200
    # Both processes served some of them (each writes its own file).
    assert len({p.name.rsplit("_", 1)[-1] for p in web.metrics_dir.glob("*.db")}) >= 2
    counts = {count(scrape(web.url), "/health", "200") for _ in range(8)}
    assert counts == {before + 40}


def test_unknown_route_gets_a_request_id_and_is_counted(web):
    r = httpx.get(f"{web.url}/no/such/route")
    assert r.status_code == 404
    assert r.headers["x-request-id"]
    r = httpx.get(f"{web.url}/no/such/route", headers={"X-Request-ID": "given-1"})
    assert r.headers["x-request-id"] == "given-1"
    assert count(scrape(web.url), "unmatched", "404") == 2


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    data = b""
    sock.settimeout(limit)
    while chunk := sock.recv(4096):
        data += chunk
    return data, time.monotonic() - started


def test_trickled_headers_are_cut_off(web):
    sock = _connect(web.url)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    try:
        # One header line every 0.3 s, never finishing: the server must not wait forever.
        while time.monotonic() - started < 8:
            sock.sendall(b"X-Slow: 1\r\n")
            time.sleep(0.3)
        pytest.fail("the server kept a trickling header open for 8 s")
    except OSError:
        pass  # reset or broken pipe: the server closed the connection
    finally:
        sock.close()
    assert time.monotonic() - started < 4


def test_trickled_body_is_408(web):
    sock = _connect(web.url)
    sock.sendall(
        b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 40\r\n\r\n{"
    )
    started = time.monotonic()
    sock.settimeout(0.3)
    data = b""
    while time.monotonic() - started < 8 and b"\r\n\r\n" not in data:
        try:
            sock.sendall(b" ")
            data += sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            break
    sock.close()
    assert data.startswith(b"HTTP/1.1 408"), data
    assert time.monotonic() - started < 4


def test_client_hanging_up_mid_body_is_not_a_500(web):
    for _ in range(3):
        sock = _connect(web.url)
        sock.sendall(
            b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"id": 12'
        )
        time.sleep(0.1)
        sock.close()

    def counted() -> str | None:
        text = scrape(web.url)
        return text if count(text, "/users", "499") == 3 else None

    text = wait_for(counted, 10, "three 499s counted")
    assert count(text, "/users", "500") == 0
    log = web.log("web")
    assert "client disconnected" in log
    assert '"level": "error"' not in log and "Traceback" not in log
