"""Slows down guessing: an address with LIMIT refused credentials within WINDOW seconds
is answered 429 (with Retry-After), without its credential being checked, until its
oldest counted failure is WINDOW old (docs/decisions/0064).

Per web process, in memory: with N processes a guesser gets at most N * LIMIT tries a
window, and a restart forgets. A valid key from a blocked address is refused too, or
the 429 would tell a right guess from a wrong one.
"""

from __future__ import annotations

import math
import time
from collections import deque

LIMIT = 20
WINDOW = 60.0
MAX_ADDRESSES = 10_000  # beyond this the oldest address is forgotten


class Throttle:
    def __init__(self, limit: int = LIMIT, window: float = WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str, now: float) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures

    def blocked(self, address: str) -> int:
        """Seconds until the address may try again; 0 when it may now."""
        if address not in self._failures:  # the usual case, without reading the clock
            return 0
        now = time.monotonic()
        failures = self._recent(address, now)
        if failures is None or len(failures) < self.limit:
            return 0
        return max(1, math.ceil(failures[0] + self.window - now))

    def failed(self, address: str) -> None:
        now = time.monotonic()
        failures = self._recent(address, now)
        if failures is None:
            if len(self._failures) >= MAX_ADDRESSES:
                del self._failures[next(iter(self._failures))]
            failures = self._failures[address] = deque()
        failures.append(now)
        while len(failures) > self.limit:
            failures.popleft()
