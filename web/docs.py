"""The interactive API docs, /docs (Swagger UI), with every asset served by the service:
no CDN, so they render on a machine without internet access.

Swagger UI comes from the ``swagger-ui-bundle-v2`` PyPI package (Apache-2.0, its licence
in the package's metadata); nothing is vendored. The favicon is the console's own.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

from web.auth import PUBLIC, SCOPE

ASSETS = "/docs/assets/swagger-ui"
FAVICON = '<link rel="icon" type="image/svg+xml" href="/console/static/favicon.svg">'


def render_plugins() -> list:
    return [
        SwaggerRenderPlugin(
            path="/",
            js_url=f"{ASSETS}/swagger-ui-bundle.js",
            css_url=f"{ASSETS}/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
            favicon=FAVICON,
        ),
    ]


def asset_routers() -> list[Router]:
    """Swagger UI's static files. Public like the files of any web page: with API_TOKEN
    set, the page itself still needs the token."""
    return [
        create_static_files_router(
            ASSETS,
            [Path(swagger_ui_path)],
            name="docs-swagger-ui",
            opt={SCOPE: PUBLIC},
            cache_control=CacheControlHeader(max_age=86_400, public=True),
        )
    ]
