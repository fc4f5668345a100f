"""Uploads (issue 18, items 4, 5, 7 and 8): an upload in progress holds no lock anyone
waits for, uploads at once are bounded, an Idempotency-Key covers the whole request, and
repeated ids are staged once."""

from __future__ import annotations

import dataclasses
import threading
from contextlib import contextmanager

import pytest

from models import jobs
from models.errors import NotFound
from models.imports import ImportOptions
from models.infra.settings import activate, active
from models.uploads import Upload, UploadsBusy
from tests.integration.imports import CSV, expand, setup_segment, staged
from tests.integration.jobs import run_unfinished_jobs


@contextmanager
def held_upload(segment: str = "S", slots: int = 16):
    """An upload that has started and staged a few ids, and is still receiving."""
    upload = Upload(segment, ImportOptions(), None)
    try:
        upload.start(slots)
        upload.add({b"1", b"2", b"3"})
        yield upload
    finally:
        upload.close()


def finishes(request, seconds: float = 5.0):
    """Run ``request`` on a thread; its response, or None if it was still waiting."""
    answer = []
    thread = threading.Thread(target=lambda: answer.append(request()), daemon=True)
    thread.start()
    thread.join(seconds)
    return answer[0] if answer else None


def test_an_upload_in_progress_blocks_no_one_and_ends_404_if_its_segment_went(client, sql):
    setup_segment(client)
    with held_upload() as upload:
        for request in [
            lambda: client.post("/users", json={"id": 500}),
            lambda: client.post("/segments", json={"segment": "AUTO", "auto_percent": 5}),
            lambda: client.patch("/segments", json={"segment": "S", "auto_percent": 10}),
            lambda: client.request("DELETE", "/segments", json={"segment": "S"}),
        ]:
            response = finishes(request)
            assert response is not None and response.status_code in (200, 201), response
        with pytest.raises(NotFound):
            upload.commit()
    assert staged(sql) == (3, 0)  # the three jobs the requests started; no import


def test_uploads_beyond_the_slots_of_the_service_are_503(client, sql):
    setup_segment(client)
    before = active()
    activate(dataclasses.replace(before, import_max_uploads_total=2))
    try:
        with held_upload(slots=2), held_upload(slots=2):
            with pytest.raises(UploadsBusy), held_upload(slots=2):
                pass
            r = client.post("/segments/S/users", content=b"1\n", headers=CSV)
            assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
        assert client.post("/segments/S/users", content=b"1\n", headers=CSV).status_code == 202
    finally:
        activate(before)
    metrics = client.get("/metrics").text
    assert "segments_import_uploads_refused_total" in metrics


def test_uploads_beyond_the_slots_of_the_process_are_503(client, sql):
    setup_segment(client)
    before = active()
    activate(dataclasses.replace(before, import_max_uploads=1))
    try:
        from web import uploads

        uploads._receiving += 1  # one upload of this process is being received
        try:
            r = client.post("/segments/S/users", content=b"1\n", headers=CSV)
        finally:
            uploads._receiving -= 1
        assert r.status_code == 503 and "retry" in r.json()["error"]
    finally:
        activate(before)
    assert staged(sql) == (0, 0)


def test_an_idempotency_key_covers_segment_options_and_body(client, sql):
    setup_segment(client)
    client.post("/segments", json={"segment": "OTHER"})
    key = {**CSV, "Idempotency-Key": "k-1"}
    first = client.post("/segments/S/users?mode=replace", content=b"1\n2\n", headers=key)
    assert first.status_code == 202
    for url in ["/segments/OTHER/users?mode=replace", "/segments/S/users?action=remove"]:
        r = client.post(url, content=b"1\n2\n", headers=key)
        assert r.status_code == 422, (url, r.text)
    client.patch("/users", json={"id": 5, "segments": ["S"]})
    run_unfinished_jobs()  # the replace also walks the other members: done > ids
    again = client.post("/segments/S/users?mode=replace", content=b"1\n2\n", headers=key)
    assert again.status_code == 200 and again.json() == first.json()


def test_repeated_ids_are_staged_once(client, sql):
    setup_segment(client)
    body = b"3\n1\n2\n" * 60_000 + b"".join(b"%d\n" % i for i in range(100, 60_100)) * 2
    r = client.post("/segments/S/users", content=body, headers=CSV)
    assert r.status_code == 202 and r.json()["ids"] == 60_003
    # 300,000 lines: repeats collapse in each batch of 50,000 distinct ids, then when
    # the job moves the batches into import_staging, where each id is one row.
    assert staged(sql)[1] < 150_000
    job_id = r.json()["job_id"]
    assert jobs.claim_job(job_id, "w", 30)
    expand(job_id, "w")
    sql.execute("SELECT count(*), count(DISTINCT user_id) FROM import_staging")
    assert sql.fetchone() == (60_003, 60_003)
    assert staged(sql) == (1, 60_003)
