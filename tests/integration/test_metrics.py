"""/metrics stays small whatever clients send: its labels come from bounded sets."""

from __future__ import annotations

import re


def test_made_up_methods_and_paths_share_one_label_each(client):
    for i in range(20):
        client.request(f"FOO{i}", "/users/1")
        client.request(f"BAR{i}", f"/no/such/path/{i}")
        client.get(f"/no/such/path/{i}")
    text = client.get("/metrics").text
    methods = set(
        re.findall(r'segments_http_request_duration_seconds_count\{method="([^"]*)"', text)
    )
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert "other" in methods
    routes = set(
        re.findall(r'segments_http_request_duration_seconds_count\{[^}]*route="([^"]*)"', text)
    )
    assert not any("/no/such" in r for r in routes) and "unmatched" in routes
