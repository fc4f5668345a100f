"""A local webhook receiver for the e2e tests and the benchmark: records every batch it
acknowledges (headers, body, event ids, when), answers the status it is told to, or
(``drip``) trickles its answer a byte at a time, as a stuck or hostile receiver would."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self) -> None:
        self.posts: list[tuple[dict, bytes]] = []  # (headers, body)
        self.ids: set[int] = set()  # every event id acknowledged
        self.last = 0.0  # perf_counter() of the last acknowledged batch
        self.status = 200
        self.drip = 0.0  # seconds to trickle the answer for, one byte every 0.5 s
        self.dripping = 0  # POSTs being trickled right now
        self.closing = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.drip:
                    self.trickle(receiver.drip)
                    return
                with receiver.lock:
                    status = receiver.status
                    if 200 <= status < 300:
                        receiver.posts.append((dict(self.headers), body))
                        receiver.ids.update(e["id"] for e in json.loads(body)["events"])
                        receiver.last = time.perf_counter()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def trickle(self, seconds: float) -> None:
                """A status line, then a header a byte every 0.5 s: never idle long enough
                for a per-read timeout, never done. Nothing is acknowledged."""
                with receiver.lock:
                    receiver.dripping += 1
                try:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
                    end = time.monotonic() + seconds
                    while time.monotonic() < end and not receiver.closing.is_set():
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.5)
                except OSError:
                    pass  # the sender gave up
                finally:
                    self.close_connection = True
                    with receiver.lock:
                        receiver.dripping -= 1

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        with self.lock:
            return [e for _, body in self.posts for e in json.loads(body)["events"]]

    def wait_events(self, n: int, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.events()
            if len(got) >= n:
                return got
            time.sleep(0.05)
        raise AssertionError(f"received {len(self.events())} events, expected {n}")

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
