"""The console's layers: the Layers page and its bar, a layer's page, a segment's layer
and schedule, and the schedule form."""

from __future__ import annotations

from tests.integration.console import post_form


def test_layer_pages_draw_the_buckets(client):
    client.post("/layers", json={"layer": "CHECKOUT"})
    client.post("/segments", json={"segment": "A", "layer": "CHECKOUT", "auto_percent": 30})
    client.post("/segments", json={"segment": "B", "layer": "CHECKOUT", "auto_percent": 20})
    client.patch("/segments", json={"segment": "A", "auto_percent": 10})
    listing = client.get("/console/layers").text
    assert "CHECKOUT" in listing and "30% allocated" in listing
    assert 'class="span-released"' in listing and "buckets 1000\u20132999" in listing
    page = client.get("/console/layers/CHECKOUT").text
    assert "[0, 1000)" in page and "[3000, 5000)" in page and "[5000, 10000)" in page
    segment = client.get("/console/segments/A").text
    assert 'href="/console/layers/CHECKOUT"' in segment and "owns [0, 1000)" in segment
    assert 'name="move"' in segment  # the import form can move
    assert client.get("/console/layers/NOPE").status_code == 404


def test_create_a_layer_by_form(client):
    r = post_form(client, "/console/layers", {"layer": "SEARCH"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/layers/SEARCH"
    assert client.get("/layers/SEARCH").status_code == 200
    assert post_form(client, "/console/layers", {"layer": "a b"}).status_code == 400


def test_the_schedule_form_replaces_and_drops_pending_steps(client):
    client.post("/segments", json={"segment": "A"})
    steps = "2030-01-01T10:00:00Z 20\n2030-02-01T10:00:00+02:00 50.5\n2030-03-01T00:00:00Z delete"
    r = post_form(client, "/console/segments/A/schedule", {"steps": steps}, follow_redirects=False)
    assert r.status_code == 303
    body = client.get("/segments/A/schedule").json()["steps"]
    assert [s.get("auto_percent", s.get("delete")) for s in body] == [20, 50.5, True]
    page = client.get("/console/segments/A").text
    assert "auto percent → 50.5" in page and "delete the segment" in page
    bad = post_form(client, "/console/segments/A/schedule", {"steps": "tomorrow 20"})
    assert bad.status_code == 400 and "line 1" in bad.text
    past = post_form(client, "/console/segments/A/schedule", {"steps": "2020-01-01T00:00:00Z 5"})
    assert past.status_code == 400 and "not in the future" in past.text
    assert len(client.get("/segments/A/schedule").json()["steps"]) == 3  # unchanged
    post_form(client, "/console/segments/A/schedule", {"clear": "1"})
    assert client.get("/segments/A/schedule").json()["steps"] == []
