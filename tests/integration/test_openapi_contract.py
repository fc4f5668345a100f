"""The served OpenAPI document says exactly what the server accepts: each body below is
valid by the document's schema if and only if the server takes it."""

from __future__ import annotations

import json

import jsonschema_rs
import pytest


@pytest.fixture
def document(client) -> dict:
    return client.get("/docs/openapi.json").json()


def walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def test_integer_bounds_are_integers(document):
    bounds = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "default")
    integers = [n for n in walk(document) if n.get("type") == "integer"]
    assert len(integers) > 10
    for schema in integers:
        for key in bounds:
            if key in schema:
                assert type(schema[key]) is int, (key, schema)


def test_query_integers_are_documented_as_integers(document):
    members = document["paths"]["/segments/{name}/users"]["get"]["parameters"]
    limit = next(p for p in members if p["name"] == "limit")["schema"]
    assert limit == {**limit, "type": "integer", "minimum": 1, "maximum": 10_000, "default": 1000}


def test_percent_is_a_multiple_of_a_hundredth(document):
    schemas = document["components"]["schemas"]
    for name in ("SegmentCreate", "SegmentPercent"):
        assert schemas[name]["properties"]["auto_percent"]["multipleOf"] == 0.01


def accepted(response) -> bool:
    assert response.status_code != 500, response.text
    return response.status_code != 400


CHANGES = [
    {"add": [], "remove": []},
    {},
    {"add": []},
    {"remove": ["A"], "active_time": 60},
    {"remove": ["A"], "active_time": None},
    {"add": [], "remove": ["A"], "active_time": 60},
    {"add": ["A"], "active_time": 60},
    {"add": ["A"], "remove": ["B"], "active_time": 60},
    {"add": ["A"]},
    {"remove": ["B"]},
    {"add": ["."]},
    {"add": ["A"], "extra": 1},
]


@pytest.mark.parametrize("body", CHANGES, ids=json.dumps)
def test_segment_changes_schema_matches_the_server(client, document, body):
    client.post("/segments", json={"segment": "A"})
    client.post("/segments", json={"segment": "B"})
    client.post("/users", json={"id": 1})
    schema = document["components"]["schemas"]["SegmentChanges"]
    r = client.post("/users/1/segments", json=body)
    assert jsonschema_rs.is_valid(schema, body) == accepted(r), r.text


SEGMENTS = [
    {"segment": "P", "auto_percent": 33.33},
    {"segment": "P", "auto_percent": 33.333},
    {"segment": "P", "auto_percent": 100},
    {"segment": "P", "auto_percent": 100.01},
    {"segment": "P", "auto_percent": -0.01},
    {"segment": "P", "auto_percent": 0.5},
    {"segment": "."},
    {"segment": ".."},
    {"segment": "..."},
    {"segment": "-x"},
]


@pytest.mark.parametrize("body", SEGMENTS, ids=json.dumps)
def test_segment_create_schema_matches_the_server(client, document, body):
    schema = document["components"]["schemas"]["SegmentCreate"]
    r = client.post("/segments", json=body)
    assert jsonschema_rs.is_valid(schema, body) == accepted(r), r.text
