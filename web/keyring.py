"""Each web process's copy of the live API keys, so checking a key costs a request no
database round trip (docs/keys.md, docs/decisions/0061).

A daemon thread on a connection of its own (never one a request waits for) reads the
keys' version every POLL seconds and reloads the keys when it moved: a revoked key is
refused by every process within about POLL. It also writes the keys' last use, batched,
every FLUSH seconds. A key this process does not know yet (made a moment ago through
another process) makes the request check the version at once (requests waiting
together share one check), so a new key works everywhere at once; a wrong key costs
one primary-key read of one row, and the throttle bounds how many an address sends.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time

import psycopg2

from models import keys
from models.infra.settings import Settings
from models.keys import LiveKey

POLL = 0.2
FLUSH = 5.0
log = logging.getLogger("web.keyring")


class Keyring:
    def __init__(self, settings: Settings) -> None:
        self._params = settings.connect_params()
        self._by_hash: dict[str, LiveKey] = {}
        self._version: int | None = None
        self._used: dict[int, float] = {}
        self._lock = threading.Lock()  # the connection and the version
        self._conn = None
        self._checked = 0.0
        self._flushed = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __deepcopy__(self, memo: dict) -> Keyring:
        # One per process: Litestar deep-copies the app's configuration (its state,
        # hooks and middleware), and every copy must share this one.
        return self

    def find(self, key: str) -> LiveKey | None:
        """The live key, if this process knows it and it has not expired."""
        digest = keys.digest(key)
        found = self._by_hash.get(digest)
        # The dict found it by the digest; compare it again in constant time anyway.
        if found is None or not hmac.compare_digest(found.hash, digest):
            return None
        if found.expires_at is not None and found.expires_at <= time.time():
            return None
        self._used[found.id] = time.time()
        return found

    def find_or_recheck(self, key: str) -> LiveKey | None:
        """``find``, and for an unknown key of the right form, once more after checking
        the version (blocking: run it off the event loop)."""
        asked = time.monotonic()
        found = self.find(key)
        if found is not None or not key.startswith(keys.KEY_START):
            return found
        self.refresh(unless_since=asked)
        return self.find(key)

    def refresh(self, unless_since: float | None = None) -> None:
        """Reload the keys if their version moved. Skipped when a check began after
        ``unless_since``: callers waiting together share one query."""
        with self._lock:
            if unless_since is not None and self._checked >= unless_since:
                return
            self._checked = time.monotonic()
            try:
                with self._cursor() as cur:
                    version = keys.key_version(cur)
                    if version != self._version:
                        live = keys.live_keys(cur)
                        self._by_hash = {k.hash: k for k in live}
                        self._version = version
            except psycopg2.Error as exc:
                # Keys stay as they were; the next poll tries a new connection.
                log.warning("could not read the API keys (%s); keeping the ones known", exc)
                self._drop_connection()

    def flush(self) -> None:
        """Write the keys' last use since the previous flush."""
        used, self._used = self._used, {}
        if not used:
            return
        with self._lock:
            try:
                with self._cursor() as cur:
                    keys.record_last_used(cur, used)
            except psycopg2.Error as exc:
                log.warning("could not record the keys' last use (%s)", exc)
                self._drop_connection()

    def _cursor(self):
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(
                **{**self._params, "application_name": "segments-keyring"}
            )
            self._conn.autocommit = True
        return self._conn.cursor()

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            self.refresh()
            if time.monotonic() - self._flushed >= FLUSH:
                self._flushed = time.monotonic()
                self.flush()

    def start(self) -> None:
        self.refresh()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="keyring", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.flush()
        with self._lock:
            self._drop_connection()
