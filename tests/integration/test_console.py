"""The support console in-process: pages, errors as pages, CSRF, login, offline assets.
The browser tests (tests/e2e/test_console_browser.py) click through the same pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from litestar.testing import TestClient

from models.console import SeriesPoint
from tests.integration.console import CSRF, csrf, post_form
from tests.integration.jobs import drain
from web.console.format import members_chart
from web.console.session import Sessions

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(https?:)?//""", re.IGNORECASE)
CSS_URL = re.compile(r"""url\(\s*["']?(https?:)?//""", re.IGNORECASE)


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    client.post("/segments", json={"segment": "VOICE"})
    for uid in (1000, 1001, 1002):
        client.post("/users", json={"id": uid})
    client.patch("/users", json={"id": 1000, "segments": ["VOICE"], "active_time": 172800})
    client.patch("/users", json={"id": 1001, "segments": ["VOICE"]})
    client.request("DELETE", "/users", json={"id": 1001, "segments": ["VOICE"]})
    return client


@pytest.fixture
def locked(clean_db: None, app_with) -> Iterator[TestClient]:
    with TestClient(app=app_with(api_token="s3cret-token")) as c:
        yield c


def test_pages_show_the_data(seeded):
    overview = seeded.get("/console")
    assert overview.status_code == 200
    assert "VOICE" in overview.text and "Open mode" in overview.text
    user = seeded.get("/console/users/1001").text
    assert "removed from" in user and "added to" in user
    assert user.count("reason</span> manual") == 2
    assert "This user is in no segment right now." in user
    held = seeded.get("/console/users/1000").text
    assert re.search(r"in (1 day|2 days)", held), held  # expiry, relative
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", held)  # and as ISO
    segment = seeded.get("/console/segments/VOICE").text
    assert 'data-testid="member-count">1<' in segment
    assert "<svg" in segment and "<polyline" in segment
    assert 'href="/console/users/1000"' in segment


def test_search_redirects_to_the_user(seeded):
    r = seeded.get("/console/users?id=1000", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/users/1000"


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/console/users/77", 404, "user 77 not found"),
        ("/console/users?id=abc", 400, "user id must be an integer"),
        ("/console/users?id=", 400, "enter a user id"),
        ("/console/users/1000?month=2026-13", 400, "month must be written YYYY-MM"),
        ("/console/segments/NOPE", 404, "segment NOPE not found"),
        ("/console/segments/NOPE/delete", 404, "segment NOPE not found"),
        ("/console/segments/VOICE?after=x", 400, "after must be an integer"),
        ("/console/jobs/99", 404, "job 99 not found"),
    ],
)
def test_client_mistakes_are_pages_with_their_status(seeded, path, status, words):
    r = seeded.get(path)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert words in r.text
    assert "Traceback" not in r.text


def test_a_form_without_its_csrf_token_is_refused(seeded):
    r = seeded.post("/console/segments", data={"segment": "NEW"})
    assert r.status_code == 403
    assert "security token is missing" in r.text
    wrong = seeded.post("/console/segments", data={"segment": "NEW", "_csrf_token": "x" * 130})
    assert wrong.status_code == 403
    assert seeded.get("/segments/NEW").status_code == 404
    # The JSON API is outside the console's CSRF scope.
    assert seeded.post("/segments", json={"segment": "NEW"}).status_code == 201


def test_create_change_and_delete_a_segment(seeded):
    r = post_form(seeded, "/console/segments", {"segment": "HALF", "auto_percent": "50"})
    assert r.status_code == 200 and "HALF" in r.text
    assert 'data-job="' in r.text  # the assignment job, with its progress bar
    drain()
    job = seeded.get("/console/jobs/1").json()
    assert job["state"] == "done" and job["done"] == job["total"] == 3
    bad = post_form(seeded, "/console/segments/HALF/percent", {"auto_percent": "12.345"})
    assert bad.status_code == 400 and "at most two decimals" in bad.text
    taken = post_form(seeded, "/console/segments", {"segment": "HALF"})
    assert taken.status_code == 409 and "already exists" in taken.text
    confirm = seeded.get("/console/segments/HALF/delete")
    assert "Yes, delete HALF" in confirm.text
    gone = post_form(seeded, "/console/segments/HALF/delete", {}, follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"] == "/console?deleted=2"
    assert "Segment <strong>HALF</strong> was deleted" in seeded.get("/console?deleted=2").text
    assert seeded.get("/segments/HALF").status_code == 404


def test_import_by_textarea_and_by_file(seeded):
    r = post_form(seeded, "/console/segments/VOICE/import", {"ids": "1002\n5555\n"})
    assert r.status_code == 200, r.text
    drain()
    assert seeded.get("/users/1002").json()["segments"] == ["VOICE"]
    files = {"file": ("ids.csv", b"user_id\r\n1001\r\n", "text/csv")}
    token = csrf(seeded)
    r = seeded.post(
        "/console/segments/VOICE/import",
        data={"_csrf_token": token, "action": "remove"},
        files=files,
    )
    assert r.status_code == 200, r.text
    bad = seeded.post(
        "/console/segments/VOICE/import",
        data={"_csrf_token": token},
        files={"file": ("ids.csv", b"1\nabc\n", "text/csv")},
    )
    assert bad.status_code == 400 and "line 2" in bad.text
    empty = post_form(seeded, "/console/segments/VOICE/import", {"ids": ""})
    assert empty.status_code == 400 and "paste some ids" in empty.text


def test_csv_links_answer_the_api_reports(seeded):
    member = seeded.get("/console/segments/VOICE/users.csv")
    assert member.text.splitlines()[0] == "user_id;source;added_at;expires_at"
    assert member.text.splitlines()[1].startswith("1000;manual;")
    month = seeded.get("/console/users/1001").text
    link = re.search(r'href="(/console/users/1001/history\.csv\?[^"]+)"', month)[1]
    report = seeded.get(link.replace("&amp;", "&"))
    assert report.text.splitlines()[0] == "user_id;segment;operation;timestamp;reason"
    assert len(report.text.splitlines()) == 3


def test_login_cookie_and_logout(locked):
    r = locked.get("/console/users/1", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login?next=/console/users/1"
    assert locked.get("/console/jobs/1", follow_redirects=False).status_code == 303
    upload = locked.post(
        "/console/segments/A/import",
        files={"file": ("ids.csv", b"1\n" * 1000, "text/csv")},
        follow_redirects=False,
    )
    assert upload.status_code == 303 and upload.headers["location"].startswith("/console/login")
    page = locked.get("/console/login")
    assert "Open mode" not in page.text
    token = CSRF.search(page.text)[1]
    wrong = locked.post("/console/login", data={"_csrf_token": token, "token": "s3cret-tokeN"})
    assert wrong.status_code == 401 and "not right" in wrong.text
    ok = locked.post(
        "/console/login",
        data={"_csrf_token": token, "token": "s3cret-token", "next": "/console"},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/;" in cookie
    assert "Secure" not in cookie  # plain http here
    assert locked.get("/console").status_code == 200
    assert locked.get("/segments").status_code == 401  # the API still wants its bearer
    assert locked.post("/users", json={"id": 5}).status_code == 401
    # The console's "API docs" link works for a person logged in.
    assert locked.get("/docs").status_code == 200
    assert locked.get("/docs/openapi.json").status_code == 200
    out = locked.post("/console/logout", data={"_csrf_token": csrf(locked)}, follow_redirects=False)
    assert out.status_code == 303
    assert locked.get("/console", follow_redirects=False).status_code == 303
    assert locked.get("/docs").status_code == 401


def test_a_forged_or_expired_session_is_refused(locked):
    sessions = locked.app.state.console_sessions
    genuine = sessions.issue()
    forged = genuine[:-1] + ("1" if genuine.endswith("0") else "0")  # one bit of the MAC off
    expired = Sessions(sessions.auth, lifetime_seconds=-1).issue()
    for value in ("1.2.3", forged, expired, "9999999999.ab.cd"):
        locked.cookies.set("segments_console", value)
        assert locked.get("/console", follow_redirects=False).status_code == 303, value
        assert locked.get("/docs").status_code == 401


def log_in(client: TestClient):
    """Log ``client`` in with the right token; returns the login's answer."""
    token = csrf(client, "/console/login")
    r = client.post(
        "/console/login",
        data={"_csrf_token": token, "token": "s3cret-token"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    return r


def test_logging_out_ends_the_session_for_a_copy_of_its_cookie_too(locked, sql):
    log_in(locked)
    copied = locked.cookies["segments_console"]
    sql.execute("SELECT count(*) FROM console_sessions")
    assert sql.fetchone()[0] == 1
    out = locked.post("/console/logout", data={"_csrf_token": csrf(locked)}, follow_redirects=False)
    assert out.status_code == 303
    # Someone who copied the cookie before the logout is refused after it.
    locked.cookies.set("segments_console", copied)
    assert locked.get("/console", follow_redirects=False).status_code == 303
    assert locked.get("/docs").status_code == 401
    sql.execute("SELECT count(*) FROM console_sessions")
    assert sql.fetchone()[0] == 0


def test_log_out_everywhere_ends_every_session(clean_db, app_with):
    app = app_with(api_token="s3cret-token")
    with TestClient(app=app) as laptop, TestClient(app=app) as phone:
        log_in(laptop)
        log_in(phone)
        assert laptop.get("/console").status_code == phone.get("/console").status_code == 200
        r = post_form(phone, "/console/logout-everywhere", {}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/console/login?out=all"
        assert "Every console session has ended" in phone.get(r.headers["location"]).text
        for browser in (laptop, phone):
            assert browser.get("/console", follow_redirects=False).status_code == 303
        # Without a session the form is not even read: to the login page.
        r = laptop.post("/console/logout-everywhere", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/login")
        log_in(laptop)  # and a new login works
        assert laptop.get("/console").status_code == 200


def test_a_session_signed_here_but_never_started_is_refused(locked):
    """The signature alone no longer opens the console: the session must be on record."""
    locked.cookies.set("segments_console", locked.app.state.console_sessions.issue())
    assert locked.get("/console", follow_redirects=False).status_code == 303
    assert locked.get("/docs").status_code == 401


def test_the_csrf_cookie_is_secure_over_https_only(clean_db, app_with):
    app = app_with(api_token="s3cret-token")
    with TestClient(app=app, base_url="https://console.test") as https:
        cookie = https.get("/console/login").headers["set-cookie"]
        assert cookie.startswith("segments_console_csrf=") and "; Secure" in cookie
    with TestClient(app=app) as http:
        cookie = http.get("/console/login").headers["set-cookie"]
        assert cookie.startswith("segments_console_csrf=") and "secure" not in cookie.lower()


def test_the_console_import_refuses_a_file_over_64_mib_and_starts_nothing(seeded, sql):
    line = b"1000\n"
    body = line * (64 * 1024 * 1024 // len(line) + 1)  # just over 64 MiB
    r = post_form(
        seeded,
        "/console/segments/VOICE/import",
        {"action": "add", "mode": "merge"},
        files={"file": ("ids.csv", body, "text/csv")},
        follow_redirects=False,
    )
    assert r.status_code == 413, r.text[:300]
    assert "<html" in r.text.lower() and "Traceback" not in r.text
    sql.execute("SELECT count(*) FROM jobs WHERE kind = 'import'")
    assert sql.fetchone()[0] == 0
    sql.execute("SELECT count(*) FROM import_staging")
    assert sql.fetchone()[0] == 0


def test_no_page_loads_an_asset_from_another_site(seeded):
    seeded.post("/segments", json={"segment": "AUTO", "auto_percent": 10})
    pages = [
        "/console",
        "/console/users/1000",
        "/console/segments/VOICE",
        "/console/segments/VOICE/delete",
        "/console/users/77",
        "/docs",
    ]
    for path in pages:
        html = seeded.get(path).text
        assert not ASSET.search(html), (path, ASSET.search(html))
    css = seeded.get("/console/static/console.css").text
    assert not CSS_URL.search(css)
    for asset in (
        "/docs/assets/swagger-ui/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui/swagger-ui.css",
        "/docs/assets/swagger-ui/swagger-ui-standalone-preset.js",
        "/console/static/console.js",
        "/console/static/favicon.svg",
    ):
        assert seeded.get(asset).status_code == 200, asset


def test_the_docs_are_swagger_ui_only_nothing_vendored(client):
    """Scalar's 3.5 MB bundle was vendored (no package ships it); Swagger UI from its
    package is the one docs page."""
    assert client.get("/docs").status_code == 200
    for gone in ("/docs/scalar", "/docs/assets/scalar/standalone.js"):
        assert client.get(gone).status_code == 404, gone


def test_the_session_cookie_is_secure_over_https(clean_db, app_with):
    with TestClient(app=app_with(api_token="s3cret-token"), base_url="https://console.test") as c:
        assert "; Secure" in log_in(c).headers["set-cookie"]


def test_the_chart_spans_the_whole_width_whatever_the_time_span():
    start = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
    for span in (timedelta(milliseconds=80), timedelta(days=30)):
        chart = members_chart([SeriesPoint(start, 0), SeriesPoint(start + span, 25)])
        xs = [float(point.split(",")[0]) for point in chart.line.split()]
        assert xs[0] == chart.left and xs[-1] == chart.width - 12, (span, chart.line)
    single = members_chart([SeriesPoint(start, 3)])
    assert single.high == 3


def test_overview_lists_jobs_in_flight_finished_and_failed(seeded, sql):
    sql.execute(
        "INSERT INTO jobs (kind, segment_id, params, state, done, total, error) VALUES "
        "('import', 1, '{}', 'running', 30, 120, NULL), "
        "('import', 1, '{}', 'failed', 0, 10, 'worker lost the database'), "
        "('import', 1, '{}', 'done', 10, 10, NULL)"
    )
    page = seeded.get("/console").text
    in_flight = page[page.index("Jobs in flight") : page.index("Recently finished")]
    assert '<progress data-job="1" value="30" max="120">' in in_flight
    finished = page[page.index("Recently finished") : page.index("Recent failures")]
    assert 'data-job="3"' in finished and 'data-job="1"' not in finished
    failures = page[page.index("Recent failures") :]
    assert "worker lost the database" in failures
    assert seeded.get("/console/jobs/1").json()["label"] == "30 of 120 (25\u2009%)"


def test_an_unknown_console_path_is_a_404_page(seeded):
    for path in ("/console/nope", "/console/users/1000/nope", "/console/static/nope.css"):
        r = seeded.get(path)
        assert r.status_code == 404, path
    page = seeded.get("/console/nope")
    assert page.headers["content-type"].startswith("text/html")
    assert "no console page" in page.text
    assert seeded.get("/console/users/1000").status_code == 200
