"""Every route declares the scope it needs, and docs/keys.md's table says the same: a
new route cannot ship without a scope, nor the table go stale."""

from __future__ import annotations

import re
from pathlib import Path

from litestar.testing import TestClient

from models.tables import Scope
from web.auth import PUBLIC, SCOPE
from web.console.session import CONSOLE_SCOPE, OPEN

DOC = Path(__file__).parents[2] / "docs" / "keys.md"
ROW = re.compile(r"^\| `([A-Z]+)` \| `([^`]+)` \| (\w+) \|$")
_TYPED = re.compile(r"\{(\w+):\w+\}")
ALLOWED = {PUBLIC, *(s.value for s in Scope)}


def declared(app) -> dict[tuple[str, str], str]:
    """(method, path) -> scope, for every route but HEAD (GET's twin), OPTIONS (it only
    lists methods) and static files (public by their router)."""
    found = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            path = _TYPED.sub(r"{\1}", route.path)
            if "{file_path}" in path:
                continue
            key = CONSOLE_SCOPE if path.startswith("/console") else SCOPE
            for method in handler.http_methods - {"HEAD", "OPTIONS"}:
                scope = PUBLIC if handler.opt.get(OPEN) else handler.opt.get(key)
                assert scope is not None, f"{method} {path} declares no scope"
                found[(method, path)] = str(getattr(scope, "value", scope))
    return found


def test_every_route_declares_a_scope_the_docs_table_names(client: TestClient):
    routes = declared(client.app)
    assert set(routes.values()) <= ALLOWED
    table = {
        (m[1], m[2]): m[3]
        for line in DOC.read_text().splitlines()
        if (m := ROW.match(line.strip()))
    }
    assert table == routes


def test_every_api_read_is_open_to_a_read_key_but_keys_and_audit(client: TestClient):
    for (method, path), scope in declared(client.app).items():
        if method == "GET" and not path.startswith(("/keys", "/audit", "/console")):
            assert scope in (PUBLIC, "read"), path
