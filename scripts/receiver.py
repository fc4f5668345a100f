"""A local webhook receiver for the e2e tests and the benchmark: records every batch it
acknowledges (headers, body, event ids, when), answers the status it is told to, or
(``drip``) trickles its answer a byte at a time, as a stuck or hostile receiver would."""

from __future__ import annotations

import json
import socket
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
        self.slow_read = 0  # read the body this many bytes every 0.5 s (0: at once)
        self.dripping = 0  # POSTs being trickled right now
        self.arrivals: list[float] = []  # monotonic() as each POST's head came in
        self.closing = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                with receiver.lock:
                    receiver.arrivals.append(time.monotonic())
                length = int(self.headers["Content-Length"])
                if receiver.slow_read:
                    self.read_slowly(length)
                    return
                body = self.rfile.read(length)
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

            def read_slowly(self, length: int) -> None:
                """Take the body ``slow_read`` bytes every 0.5 s: the sender's writes
                block once the socket buffers are full, each for less than 0.5 s.
                Nothing is acknowledged."""
                try:
                    while length > 0 and not receiver.closing.is_set():
                        chunk = self.rfile.read(min(receiver.slow_read, length))
                        if not chunk:
                            return
                        length -= len(chunk)
                        time.sleep(0.5)
                except OSError:
                    pass
                self.close_connection = True

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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        # Small receive buffers (accepted sockets inherit them), so a slow reader fills
        # them after a few KiB, as a receiver far away or overloaded would.
        self.server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.server.server_bind()
        self.server.server_activate()
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
