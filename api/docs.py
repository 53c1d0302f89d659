"""`/docs`: Swagger UI from assets the API serves itself, so it works on an air-gapped
network (FastAPI's default page loads its scripts from a CDN).

The assets come from the `fastapi-offline` package, which ships Swagger UI's dist files
(5.x, which reads the OpenAPI 3.1 that FastAPI writes); we take its files, not its app
factory, so the app keeps its own construction. There is no `/redoc`.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

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


_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def drop_fastapi_422s(schema: dict[str, Any]) -> None:
    """Take out the 422 FastAPI lists on every route with a parameter: its body shape
    (`{"detail": [...]}`) is one the API never answers (api.errors renders every failure),
    and a route that can answer 422 lists it itself (api.errors.responses)."""
    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            answer = op.get("responses", {}).get("422", {})
            if answer.get("content", {}).get("application/json", {}).get("schema") == {
                "$ref": _FASTAPI_422
            }:
                del op["responses"]["422"]
    components = schema.get("components", {}).get("schemas", {})
    if _FASTAPI_422 not in json.dumps(schema):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
