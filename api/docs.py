"""`/docs`: Swagger UI from assets the API serves itself, so it works on an air-gapped
network (FastAPI's default page loads its scripts from a CDN).

The assets come from the `fastapi-offline` package, which ships Swagger UI's dist files
(5.x, which reads the OpenAPI 3.1 that FastAPI writes); we take its files, not its app
factory, so the app keeps its own construction. There is no `/redoc`.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"


def install(app: FastAPI) -> None:
    """Serve the page at `/docs` and its scripts under ASSETS_URL (relative URLs only)."""
    assets = files("fastapi_offline") / "static"
    app.mount(ASSETS_URL, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )
