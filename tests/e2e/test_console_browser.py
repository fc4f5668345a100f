"""The console and the docs in a real browser (the system's headless Chromium, driven by
Playwright) against the real web, worker and scheduler processes.

Skipped, with the reason in the summary, where /usr/bin/chromium (Debian's `chromium`
package) or the playwright package is missing; Playwright never downloads a browser of
its own here. CONSOLE_SCREENSHOTS=docs/console writes the README's screenshots; other
runs write them to a temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest

from tests import services
from tests.conftest import TABLES
from tests.e2e.conftest import Stack, wait_for

CHROMIUM = os.environ.get("CONSOLE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "console-e2e-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def chromium() -> None:
    if shutil.which(CHROMIUM) is None:
        services.missing(
            f"no Chromium at {CHROMIUM}: the console's browser tests need Debian's "
            "`chromium` package (apt-get install chromium)"
        )


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("CONSOLE_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Stack]]:
    """(the service with API_TOKEN set: web, worker, scheduler; an open web process, for
    the docs pages), on an emptied database."""
    conn = psycopg2.connect(os.environ["DATABASE_DSN"])
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    conn.close()
    tight = {"WEB_WORKERS": "1", "BATCH_SIZE": "20", "JOB_BATCH_PAUSE_MS": "30"}
    locked = Stack(tmp_path_factory.mktemp("locked"), API_TOKEN=TOKEN, **tight)
    locked.http.headers.update(BEARER)
    opened = Stack(tmp_path_factory.mktemp("open"), **tight)
    try:
        for name in ("web", "worker", "scheduler"):
            locked.start(name)
        opened.start("web")
        yield locked, opened
    finally:
        locked.close()
        opened.close()


@pytest.fixture(scope="module")
def browser(stacks) -> Iterator:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def offline_context(browser, base_url: str, blocked: list[str]):
    """A browser context that can reach only this machine: every other request is
    aborted and recorded in ``blocked``."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)

    def local_only(route) -> None:
        host = urlsplit(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", local_only)
    return context


def log_in_again(tab) -> None:
    """Log the tab's browser in to the console."""
    tab.goto("/console/login")
    tab.fill("#token", TOKEN)
    tab.click("button:has-text('Log in')")
    tab.wait_for_url("**/console")


def logged_in_tab(browser, url: str, blocked: list[str]):
    """A tab of a browser of its own (its own cookies), logged in to the console."""
    tab = offline_context(browser, url, blocked).new_page()
    log_in_again(tab)
    return tab


@pytest.fixture(scope="module")
def page(browser, stacks, shots):
    """A logged-in console page (the login itself is test_login_and_logout's subject)."""
    locked, _ = stacks
    blocked: list[str] = []
    tab = logged_in_tab(browser, locked.url, blocked)
    yield tab
    tab.context.close()
    assert blocked == []


@pytest.fixture(scope="module")
def arranged(stacks) -> Stack:
    """Segments, 400 plain users, and user 1000 with a month of history: added by the
    auto rule, by hand, by hand with a TTL that ran out, removed by hand."""
    locked, _ = stacks
    api = locked.http
    conn = psycopg2.connect(os.environ["DATABASE_DSN"])
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("INSERT INTO users (id) SELECT g FROM generate_series(1, 400) g")
    conn.close()
    for name in ("AVITO_VOICE_MESSAGES", "TRIAL_3_SECONDS"):
        assert api.post("/segments", json={"segment": name}).status_code == 201
    assert api.post("/users", json={"id": 1000}).status_code == 201
    everyone = api.post("/segments", json={"segment": "AVITO_PROMO_ALL", "auto_percent": 100})
    locked.wait_job(everyone.json()["job_id"])
    voice = {"id": 1000, "segments": ["AVITO_VOICE_MESSAGES"], "active_time": 172800}
    assert api.patch("/users", json=voice).status_code == 200
    trial = {"id": 1000, "segments": ["TRIAL_3_SECONDS"], "active_time": 1}
    assert api.patch("/users", json=trial).status_code == 200
    api.request("DELETE", "/users", json={"id": 1000, "segments": ["AVITO_PROMO_ALL"]})
    now = datetime.now(UTC)
    month = f"/users/1000/history?year={now.year}&month={now.month}"
    wait_for(lambda: ";ttl" in api.get(month).text, 10, "the TTL sweep")
    assert api.post("/segments", json={"segment": "AVITO_CHAT_BOTS"}).status_code == 201
    _three_weeks_of_history("AVITO_CHAT_BOTS")
    return locked


def _three_weeks_of_history(segment: str) -> None:
    """Users 100-160 joined over 20 days, and every fifth of 100-150 left a day later:
    rows and their events as the domain writes them, back-dated, so the chart has a
    shape to show."""
    conn = psycopg2.connect(os.environ["DATABASE_DSN"])
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            """WITH s AS (
                   UPDATE segments SET created_at = now() - interval '21 days'
                   WHERE name = %(name)s AND deleted_at IS NULL RETURNING id
               ),
               joined AS (
                   SELECT u, now() - make_interval(hours => (160 - u) * 8) AS at
                   FROM generate_series(100, 160) u
               ),
               kept AS (
                   INSERT INTO memberships (user_id, segment_id, source, added_at)
                   SELECT u, s.id, 'manual', at FROM joined, s
                   WHERE NOT (u %% 5 = 0 AND u <= 150)
               )
               INSERT INTO history (user_id, segment_id, operation, reason, at)
               SELECT u, s.id, 'add', 'manual', at FROM joined, s
               UNION ALL
               SELECT u, s.id, 'remove', 'manual', at + interval '1 day'
               FROM joined, s WHERE u %% 5 = 0 AND u <= 150""",
            {"name": segment},
        )
    conn.close()


def test_search_a_user_and_read_the_timeline(arranged, page, shots):
    page.goto("/console")
    page.fill("#user-search", "1000")
    page.press("#user-search", "Enter")
    page.wait_for_url("**/console/users/1000")
    assert page.inner_text("h1") == "User 1000"
    memberships = page.inner_text("table.data")
    assert "AVITO_VOICE_MESSAGES" in memberships and "manual" in memberships
    assert "in 2 days" in memberships
    timeline = page.inner_text("ol.timeline")
    for reason in ("reason auto percent", "reason manual", "reason ttl (expired)"):
        assert reason in timeline, timeline
    assert timeline.count("removed from") == 2
    page.screenshot(path=str(shots / "user.png"), full_page=True)

    page.fill("#user-search", "424242")
    page.press("#user-search", "Enter")
    assert "user 424242 not found" in page.inner_text("main")


def test_create_a_segment_and_watch_its_progress_reach_100(arranged, page, shots):
    page.goto("/console")
    page.fill("input[name=segment]", "AVITO_DISCOUNT_50")
    page.fill("input[name=auto_percent]", "50")
    page.click("button:has-text('Create')")
    page.wait_for_url("**/console/segments/AVITO_DISCOUNT_50#jobs")
    bar = page.locator("progress[data-job]").first
    job_id = bar.get_attribute("data-job")
    page.wait_for_function(
        """id => {
             const bar = document.querySelector(`progress[data-job="${id}"]`);
             const state = document.querySelector(`[data-job-state="${id}"]`);
             return state.textContent === "done" && bar.max > 1 && bar.value === bar.max;
           }""",
        arg=job_id,
        timeout=30_000,
    )
    assert "(100\u2009%)" in page.inner_text(f"[data-job-label='{job_id}']")
    page.reload()
    count = int(page.inner_text("[data-testid=member-count]").replace("\u2009", ""))
    assert 100 < count < 301  # half of 401 users, give or take the buckets


def test_a_segment_page_charts_its_history_and_pages_its_members(arranged, page, shots):
    page.goto("/console/segments/AVITO_CHAT_BOTS")
    kept = [u for u in range(100, 161) if not (u % 5 == 0 and u <= 150)]
    assert page.inner_text("[data-testid=member-count]") == str(len(kept))
    steps = page.get_attribute("svg.chart polyline", "points").split()
    heights = sorted({float(point.split(",")[1]) for point in steps})
    assert len(heights) > 10  # a count that changed many times over the three weeks
    page.screenshot(path=str(shots / "segment.png"), full_page=True)
    first = page.locator("#members tbody tr").count()
    page.click("a:has-text('Next page')")
    assert first == 25 and page.locator("#members tbody tr").count() == len(kept) - 25
    assert page.inner_text("#members tbody tr >> nth=0").startswith(str(kept[25]))


def test_upload_an_import_and_see_it_applied(arranged, page):
    page.goto("/console/segments/AVITO_VOICE_MESSAGES")
    page.set_input_files(
        "#file",
        files=[{"name": "ids.csv", "mimeType": "text/csv", "buffer": b"user_id\n5\n7\n999999\n"}],
    )
    page.click("form[action$='/import'] button[type=submit]")
    page.wait_for_url("**/console/segments/AVITO_VOICE_MESSAGES#jobs")
    newest = page.locator("tr.job").first
    job_id = newest.locator("progress").get_attribute("data-job")
    page.wait_for_function(
        "id => document.querySelector(`[data-job-state='${id}']`).textContent === 'done'",
        arg=job_id,
    )
    result = page.inner_text(f"[data-job-result='{job_id}']")
    assert result == "2 added, 0 removed, 0 unchanged, 1 unknown ids skipped"
    page.goto("/console/users/7")
    assert "import" in page.inner_text("table.data")
    memberships = arranged.http.get("/users/7/memberships").json()["memberships"]
    assert ("AVITO_VOICE_MESSAGES", "import") in [(m["segment"], m["source"]) for m in memberships]


def test_download_the_members_csv(arranged, page):
    page.goto("/console/segments/AVITO_VOICE_MESSAGES")
    with page.expect_download() as download:
        page.click("a:has-text('Export CSV')")
    text = Path(download.value.path()).read_text()
    lines = text.splitlines()
    assert lines[0] == "user_id;source;added_at;expires_at"
    members = arranged.http.get("/segments/AVITO_VOICE_MESSAGES/users").json()["users"]
    assert [int(line.split(";")[0]) for line in lines[1:]] == members
    assert "1000;manual;" in text


def test_a_form_without_its_csrf_token_is_refused(arranged, page, shots):
    page.goto("/console")
    page.screenshot(path=str(shots / "overview.png"), full_page=True)
    page.eval_on_selector(
        "form[action='/console/segments'] input[name=_csrf_token]", "input => input.remove()"
    )
    page.fill("input[name=segment]", "FORGED")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("button:has-text('Create')")
    assert answer.value.status == 403
    assert "security token is missing" in page.inner_text("main")
    assert arranged.http.get("/segments/FORGED").status_code == 404


def test_delete_asks_first(arranged, page):
    locked = arranged
    page.goto("/console/segments/TRIAL_3_SECONDS")
    page.click("a:has-text('Delete')")
    page.wait_for_url("**/console/segments/TRIAL_3_SECONDS/delete")
    assert locked.http.get("/segments/TRIAL_3_SECONDS").status_code == 200
    page.click("button:has-text('Yes, delete TRIAL_3_SECONDS')")
    page.wait_for_url("**/console?deleted=*")
    assert "was deleted" in page.inner_text("main")
    assert locked.http.get("/segments/TRIAL_3_SECONDS").status_code == 404


def test_login_and_logout(browser, stacks, shots):
    locked, _ = stacks
    blocked: list[str] = []
    context = offline_context(browser, locked.url, blocked)
    tab = context.new_page()
    tab.goto("/console/users/1000")
    tab.wait_for_url(re.compile(r".*/console/login\?next=/console/users/1000$"))
    tab.screenshot(path=str(shots / "login.png"), full_page=True)
    tab.fill("#token", "not-the-token")
    tab.click("button:has-text('Log in')")
    assert "That token is not right." in tab.inner_text("main")
    tab.fill("#token", TOKEN)
    tab.click("button:has-text('Log in')")
    tab.wait_for_url("**/console/users/1000")
    (session,) = [c for c in context.cookies() if c["name"] == "segments_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/"
    assert TOKEN not in session["value"]
    tab.click("button:has-text('Log out')")
    tab.wait_for_url("**/console/login?out=1")
    assert "You are logged out." in tab.inner_text("main")
    tab.goto("/console")
    tab.wait_for_url("**/console/login?next=/console")
    context.close()
    assert blocked == []


def test_log_out_everywhere_ends_the_other_browsers_session(browser, stacks, page):
    locked, _ = stacks
    blocked: list[str] = []
    laptop, phone = tabs = [logged_in_tab(browser, locked.url, blocked) for _ in range(2)]
    phone.click("button:has-text('Log out everywhere')")
    phone.wait_for_url("**/console/login?out=all")
    assert "Every console session has ended" in phone.inner_text("main")
    laptop.goto("/console/users/1000")
    laptop.wait_for_url(re.compile(r".*/console/login\?next=.*"))
    for tab in tabs:
        tab.context.close()
    assert blocked == []
    # It ended the shared page's session too: log it in again for the tests after this.
    log_in_again(page)


@pytest.mark.parametrize(
    ("path", "operation", "shot"),
    [
        ("/docs", ".opblock-summary-path", "docs.png"),
    ],
)
def test_docs_render_offline(browser, stacks, shots, path, operation, shot):
    _, opened = stacks
    blocked: list[str] = []
    context = offline_context(browser, opened.url, blocked)
    tab = context.new_page()
    tab.goto(path)
    tab.locator(operation).first.wait_for(state="visible", timeout=20_000)
    assert tab.locator(operation).count() >= 1
    tab.screenshot(path=str(shots / shot))
    context.close()
    assert blocked == [], blocked
