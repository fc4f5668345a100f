"""The OpenAPI document, with each body schema exactly as msgspec validates it.

Litestar's generator drops some msgspec constraints (patterns on list items,
exclusiveMinimum, additionalProperties: false for forbid_unknown_fields, exact integer
bounds), so clients and fuzzers would think invalid bodies valid. msgspec can describe
its own types, so its schema replaces Litestar's for every body struct; the rules across
fields that a struct checks in ``__post_init__`` are added from
``schemas.CROSS_FIELD_SCHEMAS``.
"""

from __future__ import annotations

import msgspec
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin

from web import schemas

REF = "#/components/schemas/{name}"


def _structs(base: type) -> set[type]:
    """Every subclass of ``base``: the web tier's bodies, wherever they are declared."""
    found = set()
    for sub in base.__subclasses__():
        found |= {sub, *_structs(sub)}
    return found


def use_msgspec_schemas(app: Litestar) -> None:
    document = app.plugins.get(OpenAPIPlugin).provide_openapi_schema()  # cached and served
    components = document.setdefault("components", {}).setdefault("schemas", {})
    structs = [
        obj
        for obj in _structs(msgspec.Struct)
        if obj.__module__.startswith("web.") and obj.__name__ in components
    ]
    _, exact = msgspec.json.schema_components(structs, ref_template=REF)
    for name, rules in schemas.CROSS_FIELD_SCHEMAS.items():
        exact[name].update(rules)  # msgspec cannot see rules its __post_init__ checks
    components.update(exact)
