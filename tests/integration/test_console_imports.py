"""The console's import form bounded like the API (issue 18, item 6): pasted ids are read
in request-sized chunks, never split whole, and the upload slots apply."""

from __future__ import annotations

import dataclasses
import tracemalloc

from models.infra.settings import activate, active
from tests.integration.console import post_form

MIB = 1024 * 1024
NO_FILE = {"file": ("", b"", "application/octet-stream")}  # multipart, as the browser sends


def test_pasted_ids_are_read_in_chunks_with_bounded_memory(client, sql):
    client.post("/segments", json={"segment": "P"})
    pasted = "".join(f"{i}\n" for i in range(1_000_000, 1_600_000))  # 4.8 MB, 600k ids
    form = {"ids": pasted, "action": "add", "mode": "merge"}
    tracemalloc.start()
    try:
        r = post_form(
            client, "/console/segments/P/import", form, files=NO_FILE, follow_redirects=False
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.status_code == 303, r.text[:300]
    sql.execute("SELECT total FROM jobs WHERE kind = 'import'")
    assert sql.fetchone()[0] == 600_000
    # The form holds the text (the request, its parts, the field): a few times its size.
    # Splitting it whole into 600k lines and ids cost several times more than that.
    assert peak < 8 * len(pasted), peak / MIB


def test_a_full_set_of_upload_slots_is_a_503_page(client, sql):
    client.post("/segments", json={"segment": "P"})
    before = active()
    activate(dataclasses.replace(before, import_max_uploads=1))
    from web import uploads

    uploads._receiving += 1
    try:
        r = post_form(client, "/console/segments/P/import", {"ids": "1\n"})
    finally:
        uploads._receiving -= 1
        activate(before)
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert "Too many uploads" in r.text


def test_a_url_encoded_form_over_1_mib_is_a_413_before_it_is_parsed(client, sql):
    client.post("/segments", json={"segment": "P"})
    pasted = "1\n" * (600 * 1024)
    r = post_form(client, "/console/segments/P/import", {"ids": pasted})
    assert r.status_code == 413 and "Traceback" not in r.text
    sql.execute("SELECT count(*) FROM jobs WHERE kind = 'import'")
    assert sql.fetchone()[0] == 0
    small = post_form(client, "/console/segments/P/import", {"ids": "1\n"}, follow_redirects=False)
    assert small.status_code == 303
