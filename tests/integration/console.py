"""Helpers the tests of the console share: its CSRF token and a form posted with it."""

from __future__ import annotations

import re

from litestar.testing import TestClient

CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


def csrf(client: TestClient, path: str = "/console") -> str:
    return CSRF.search(client.get(path).text)[1]


def post_form(client: TestClient, path: str, data: dict, **kwargs):
    return client.post(path, data={**data, "_csrf_token": csrf(client)}, **kwargs)
