"""Strict requests: bodies, query and path integers, methods, and what the CSV hands a
spreadsheet."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from web.schemas import SEGMENT_WORDS


def assert_nothing_changed(sql):
    sql.execute("SELECT (SELECT count(*) FROM memberships), (SELECT count(*) FROM history)")
    assert sql.fetchone() == (0, 0)


def problems(response) -> list[str]:
    assert response.status_code == 400, response.text
    return response.json()["details"]["problems"]


# --- a body that is not UTF-8


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/segments"), ("PATCH", "/users"), ("POST", "/users/1/segments")],
)
def test_a_body_that_is_not_utf8_is_400(seeded, sql, method, path):
    r = seeded.request(method, path, content=b'{"segment":"X\xff","segments":["A\xff"]}')
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "request body must be UTF-8"
    assert_nothing_changed(sql)


# --- auto_percent is taken exactly as written


@pytest.mark.parametrize("text", ["99.999999999", "0.000000001", "33.3300000001", "1e-3"])
def test_a_percent_with_more_than_two_decimals_is_400(client, sql, text):
    body = '{"segment": "P", "auto_percent": ' + text + "}"
    r = client.post("/segments", content=body)
    assert problems(r) == ["Expected a number with at most 2 decimals - at `$.auto_percent`"]
    sql.execute("SELECT count(*) FROM segments")
    assert sql.fetchone() == (0,)


@pytest.mark.parametrize(
    ("text", "stored"),
    [("33.33", "33.33"), ("33.330", "33.33"), ("1e1", "10.00"), ("100", "100.00")],
)
def test_a_percent_with_two_decimals_is_stored_exactly(client, sql, text, stored):
    r = client.post("/segments", content='{"segment": "P", "auto_percent": ' + text + "}")
    assert r.status_code == 201, r.text
    sql.execute("SELECT auto_percent::text FROM segments WHERE name = 'P'")
    assert sql.fetchone() == (stored,)


def test_a_percent_change_is_checked_the_same_way(seeded):
    r = seeded.patch("/segments", content='{"segment": "A", "auto_percent": 50.005}')
    assert r.status_code == 400
    assert seeded.get("/segments/A").json()["auto_percent"] == 0


# --- strict query integers, no repeated parameter


@pytest.mark.parametrize("month", ["1.0", "1e1", "+11", "011", "08", " 8", "8 ", "0x8", "٨"])
def test_query_integers_are_written_as_json_writes_them(seeded, month):
    r = seeded.get("/history", params={"year": "2023", "month": month})
    assert r.status_code == 400, r.text
    assert r.json()["details"] == {"month": month}


@pytest.mark.parametrize(
    "path",
    [
        "/history?year=2023&month=8&month=9",
        "/history?year=2023&year=2023&month=8",
        "/users/1/history?year=2023&month=8&month=8",
        "/segments/A/users?limit=1&limit=2",
        "/segments?x=1&x=2",
    ],
)
def test_a_repeated_query_parameter_is_400(seeded, path):
    r = seeded.get(path)
    assert r.status_code == 400, r.text
    assert "more than once" in r.json()["error"]


def test_page_parameters_are_strict_too(seeded):
    assert seeded.get("/segments/A/users?limit=1e1").status_code == 400
    assert seeded.get("/segments/A/users?after=01").status_code == 400
    r = seeded.get("/segments/A/users?after=0&limit=10")
    assert r.status_code == 200 and r.json() == {"segment": "A", "users": [], "next_after": None}


# --- CSV formula injection


def test_a_name_a_spreadsheet_would_run_is_quoted_in_the_csv(client):
    now = datetime.now(UTC)
    for name in ("-1-1", "-A1-B1", "A-1"):
        assert client.post("/segments", json={"segment": name}).status_code == 201
    client.post("/users", json={"id": 7})
    client.patch("/users", json={"id": 7, "segments": ["-1-1", "-A1-B1", "A-1"]})
    lines = client.get(f"/users/7/history?year={now.year}&month={now.month}").text.splitlines()
    assert lines[0] == "user_id;segment;operation;timestamp;reason"
    cells = sorted(line.split(";")[1] for line in lines[1:])
    assert cells == ["'-1-1", "'-A1-B1", "A-1"]


# --- every problem of a body in one 400


def test_every_unknown_and_invalid_field_is_named(seeded, sql):
    body = {"id": 0, "segmnets": ["A"], "activ_time": 5, "segments": ["A", "b c", 3]}
    found = problems(seeded.patch("/users", json=body))
    assert found == [
        "unknown field `segmnets`",
        "unknown field `activ_time`",
        "Expected `int` >= 1 - at `$.id`",
        f"Expected {SEGMENT_WORDS} - at `$.segments[1]`",
    ]
    found = problems(seeded.patch("/users", json={"segmnets": ["A"], "active_time": -1}))
    assert found == [
        "unknown field `segmnets`",
        "Object missing required field `id`",
        "Object missing required field `segments`",
        "Expected `int` >= 1 - at `$.active_time`",
    ]
    assert_nothing_changed(sql)


# --- names, ids and odd keys


def test_a_repeated_json_key_is_400(seeded, sql):
    r = seeded.patch("/users", content=b'{"id": 1, "segments": ["A"], "id": 2}')
    assert r.status_code == 400
    assert r.json()["error"] == "key `id` appears more than once"
    nested = b'{"segment": "C", "auto_percent": 0, "segment": "D"}'
    assert seeded.post("/segments", content=nested).status_code == 400
    assert_nothing_changed(sql)


def test_active_time_with_only_remove_is_400(seeded, sql):
    r = seeded.post("/users/1/segments", json={"remove": ["A"], "active_time": 60})
    assert r.status_code == 400
    assert "`active_time` applies to added segments" in r.json()["error"]
    assert_nothing_changed(sql)
    ok = seeded.post("/users/1/segments", json={"add": ["A"], "remove": ["B"], "active_time": 60})
    assert ok.status_code == 200


def test_the_1000_limit_counts_names_as_sent(seeded, sql):
    """Decided: the limit bounds the body as sent, duplicates included."""
    r = seeded.patch("/users", json={"id": 1, "segments": ["A"] * 1001})
    assert r.status_code == 400
    assert "length <= 1000" in r.json()["error"]
    assert seeded.patch("/users", json={"id": 1, "segments": ["A"] * 1000}).status_code == 200


@pytest.mark.parametrize("path", ["/users/01000", "/users/" + "0" * 18 + "1000", "/users/+1000"])
def test_a_user_id_in_the_path_has_one_spelling(seeded, path):
    seeded.post("/users", json={"id": 1000})
    assert seeded.get("/users/1000").status_code == 200
    r = seeded.get(path)
    assert r.status_code == 400, r.text
    assert "leading zeros" in r.json()["error"]


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_not_segment_names(client, sql, name):
    assert client.post("/segments", json={"segment": name}).status_code == 400
    assert client.get(f"/segments/{name.replace('.', '%2E')}").status_code == 400
    sql.execute("SELECT count(*) FROM segments")
    assert sql.fetchone() == (0,)
    assert client.post("/segments", json={"segment": "..."}).status_code == 201


# --- HEAD, OPTIONS, WWW-Authenticate

GET_PATHS = [
    "/segments",
    "/segments/A",
    "/segments/A/users",
    "/users/1",
    "/users/1/history?year=2023&month=8",
    "/history?year=2023&month=8",
    "/health",
    "/ready",
    "/users/999",  # a 404
    "/segments/nope",  # a 404
    "/users/0",  # a 400
]


@pytest.mark.parametrize("path", GET_PATHS)
def test_head_answers_wherever_get_does_without_a_body(seeded, path):
    get = seeded.get(path)
    head = seeded.head(path)
    assert head.status_code == get.status_code
    assert head.content == b""
    for name in ("content-type", "content-length", "content-disposition"):
        assert head.headers.get(name) == get.headers.get(name), name


def test_head_on_a_job(seeded):
    job = seeded.post("/segments", json={"segment": "J", "auto_percent": 10}).json()["job_id"]
    head = seeded.head(f"/jobs/{job}")
    assert head.status_code == 200 and head.content == b""


def allowed(response) -> set[str]:
    return {m.strip() for m in response.headers["allow"].split(",")}


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/segments", {"GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"}),
        ("/users", {"POST", "PATCH", "DELETE", "OPTIONS"}),
        ("/users/1", {"GET", "HEAD", "OPTIONS"}),
        ("/users/1/segments", {"POST", "OPTIONS"}),
        ("/segments/S/users", {"GET", "HEAD", "POST", "OPTIONS"}),
    ],
)
def test_options_lists_every_method_of_the_path(client, path, methods):
    r = client.options(path)
    assert r.status_code == 204
    assert allowed(r) == methods
    # A 405 on the same path names the same methods.
    assert allowed(client.put(path)) == methods


def test_a_401_names_the_bearer_scheme(locked_client):
    for r in (locked_client.get("/segments"), locked_client.head("/users/1")):
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": 1, "segments": ["A"], "\\ud800": 1}',
        b'{"id": 1, "segments": ["\\ud800"]}',
        b'{"id": 1, "segments": ["A"], "x": "\\ud800"}',
        b'{"id": 1, "segments": ["A"], "\\ud800": 1, "\\ud800": 2}',
        b'{"id": 1, "segments": ["A"], "' + b"k" * 100_000 + b'": 1}',
        b'{"id": 1, "segments": ["A"], "active_time": NaN}',
        b'{"id": 1, "segments": ["A"], "active_time": Infinity}',
        b'{"id": 1, "segments": ["A"], "active_time": 1' + b"0" * 5000 + b"}",
        b'{"id": 1, "segments": ["A"], "active_time": 1e999999999}',
    ],
)
def test_odd_keys_and_numbers_get_a_short_400(seeded, sql, body):
    r = seeded.patch("/users", content=body)
    assert r.status_code == 400, r.text
    assert len(r.content) < 500
    assert_nothing_changed(sql)


def test_a_pattern_mismatch_is_told_in_words_not_as_a_regex(client):
    for path, body, words in [
        ("/segments", {"segment": "with space"}, "a segment name: 1-64 characters"),
        ("/webhooks", {"url": "ftp://x"}, "an http:// or https:// URL"),
        ("/webhooks", {"url": "https://x.io/", "secret": "short"}, "16-200 printable"),
    ]:
        error = client.post(path, json=body).json()["error"]
        assert words in error and "regex" not in error, error
