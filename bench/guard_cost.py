"""The access guard's own cost per request, without a server, a database or a load
generator: ``python -m bench.guard_cost [N]``.

Calls the guard N times for a route needing ``read``: with a read key (a keyring
holding one key), with the root token, and in open mode. On a shared machine this is
steadier than throughput under wrk (docs/benchmarks.md, "API keys").
"""

from __future__ import annotations

import asyncio
import sys
import time

from models.keys import LiveKey, digest
from models.tables import Scope
from web.auth import SCOPE, Authenticator, access_guard
from web.keyring import Keyring
from web.throttle import Throttle

KEY = "sgk_" + "k" * 43
TOKEN = "bench-root-token"


class _Handler:
    opt = {SCOPE: Scope.READ}
    http_methods = frozenset({"GET"})


class _Connection:
    def __init__(self, credential: str) -> None:
        auth = [(b"authorization", f"Bearer {credential}".encode())] if credential else []
        self.scope = {
            "query_string": b"",
            "headers": [(b"host", b"bench"), *auth],
            "client": ("127.0.0.1", 1),
            "path": "/users/1",
        }


def _keyring() -> Keyring:
    keyring = Keyring.__new__(Keyring)  # no thread, no database: just the lookup
    keyring._by_hash = {digest(KEY): LiveKey(1, "bench", Scope.READ, digest(KEY), None)}
    keyring._used = {}
    return keyring


async def _per_call(token: str | None, credential: str, n: int) -> float:
    guard = access_guard(Authenticator(token, _keyring(), Throttle()))
    connection, handler = _Connection(credential), _Handler()
    started = time.perf_counter()
    for _ in range(n):
        await guard(connection, handler)
    return (time.perf_counter() - started) / n


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    for name, token, credential in (
        ("read key", TOKEN, KEY),
        ("root token", TOKEN, TOKEN),
        ("open mode", None, ""),
    ):
        print(f"{name}: {asyncio.run(_per_call(token, credential, n)) * 1e6:.2f} µs per request")


if __name__ == "__main__":
    main()
