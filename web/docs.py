"""The interactive API docs, /docs (Swagger UI) and /docs/scalar, with every asset served
by the service: no CDN, so they render on a machine without internet access.

Swagger UI comes from the ``swagger-ui-bundle-v2`` PyPI package (Apache-2.0, its licence
in the package's metadata); Scalar's browser bundle is vendored in ``web/vendor/scalar``
with its MIT licence (no PyPI package ships it). The favicon and Scalar's stylesheet are
the console's own.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

from web.auth import PUBLIC, SCOPE

ASSETS = "/docs/assets"
SCALAR_DIR = Path(__file__).parent / "vendor" / "scalar"
FAVICON = '<link rel="icon" type="image/svg+xml" href="/console/static/favicon.svg">'
# Nothing of Scalar's that calls its own servers: its web fonts (the system's do), the
# developer toolbar (sharing, deploying), the "Ask AI" agent (it searches Scalar's API
# registry), and the request client (it may go through Scalar's proxy; /docs has one).
SCALAR_OPTIONS = {
    "withDefaultFonts": False,
    "showDeveloperTools": "never",
    "agent": {"disabled": True},
    "hideClientButton": True,
}


def render_plugins() -> list:
    return [
        SwaggerRenderPlugin(
            path="/",
            js_url=f"{ASSETS}/swagger-ui/swagger-ui-bundle.js",
            css_url=f"{ASSETS}/swagger-ui/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS}/swagger-ui/swagger-ui-standalone-preset.js",
            favicon=FAVICON,
        ),
        ScalarRenderPlugin(
            path="/scalar",
            js_url=f"{ASSETS}/scalar/standalone.js",
            css_url="/console/static/scalar.css",
            options=SCALAR_OPTIONS,
            favicon=FAVICON,
        ),
    ]


def asset_routers() -> list[Router]:
    """Static files for the docs pages. Public like the files of any web page: with
    API_TOKEN set, the pages themselves still need the token."""
    cache = CacheControlHeader(max_age=86_400, public=True)
    return [
        create_static_files_router(
            f"{ASSETS}/{name}",
            [directory],
            name=f"docs-{name}",
            opt={SCOPE: PUBLIC},
            cache_control=cache,
        )
        for name, directory in (("swagger-ui", Path(swagger_ui_path)), ("scalar", SCALAR_DIR))
    ]
