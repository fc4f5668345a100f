"""The console per person: log in with any key, see who and which scope, only the forms
the scope allows; a forged form is refused; revoking the key ends the session."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from tests.integration.console import CSRF, csrf
from tests.integration.keys import ROOT, make_key
from web.throttle import LIMIT


@pytest.fixture
def console(locked_client: TestClient) -> Iterator[TestClient]:
    locked_client.post("/segments", json={"segment": "A"}, headers=ROOT)
    throttle = locked_client.app.state.auth.throttle
    throttle._failures.clear()
    yield locked_client
    throttle._failures.clear()


def log_in(client: TestClient, token: str):
    form = CSRF.search(client.get("/console/login").text)[1]
    return client.post(
        "/console/login",
        data={"_csrf_token": form, "token": token, "next": "/console"},
        follow_redirects=False,
    )


def test_a_read_key_sees_no_forms_and_a_forged_form_is_403(console, sql):
    made = make_key(console, "support", "read")
    assert log_in(console, made["key"]).status_code == 303
    overview = console.get("/console").text
    assert "key:support" in overview and "(read)" in overview
    assert 'action="/console/segments"' not in overview and "Audit</a>" not in overview
    segment = console.get("/console/segments/A").text
    assert "/percent" not in segment and "/import" not in segment and "Delete…" not in segment
    token = csrf(console)
    for path, data in (
        ("/console/segments", {"segment": "FORGED"}),
        ("/console/segments/A/percent", {"auto_percent": "50"}),
        ("/console/segments/A/delete", {}),
        ("/console/logout-everywhere", {}),
    ):
        refused = console.post(path, data={**data, "_csrf_token": token})
        assert refused.status_code == 403 and "needs the &#39;admin&#39; scope" in refused.text
    assert console.get("/console/audit").status_code == 403
    assert console.get("/segments/FORGED", headers=ROOT).status_code == 404
    sql.execute("SELECT actor, action FROM audit WHERE action = 'console.login'")
    assert sql.fetchall() == [("key:support", "console.login")]


def test_a_write_key_may_import_but_not_change_segments(console):
    assert log_in(console, make_key(console, "analyst", "write")["key"]).status_code == 303
    segment = console.get("/console/segments/A").text
    assert "/import" in segment and "/percent" not in segment


def test_root_sees_every_form_and_the_audit_page(console):
    assert log_in(console, "s3cret-token").status_code == 303
    overview = console.get("/console").text
    assert "root" in overview and 'action="/console/segments"' in overview
    audit = console.get("/console/audit?action=segment.create")
    assert audit.status_code == 200 and re.search(r"<td>segment\.create</td>", audit.text)
    assert console.get("/console/audit?action=nope").status_code == 400


def test_revoking_a_key_ends_its_console_sessions(console):
    made = make_key(console, "leaving", "admin")
    assert log_in(console, made["key"]).status_code == 303
    assert console.get("/console", follow_redirects=False).status_code == 200
    assert console.delete(f"/keys/{made['id']}", headers=ROOT).status_code == 200
    assert console.get("/console", follow_redirects=False).status_code == 303


def test_repeated_failed_logins_are_slowed_down(console):
    for _ in range(LIMIT):
        assert log_in(console, "sgk_guess").status_code == 401
    blocked = log_in(console, "s3cret-token")
    assert blocked.status_code == 429 and "Too many failed logins" in blocked.text
