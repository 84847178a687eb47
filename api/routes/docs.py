"""Swagger UI at /docs and ReDoc at /redoc, with their scripts served by the app itself.

FastAPI's defaults load both from a public CDN, which leaves /docs blank on a mail host without
internet access. The assets come from the ``fastapi-offline`` package (PyPI), which ships
Swagger UI's and ReDoc's distribution files; nothing here reaches another host (no Google
fonts, no Swagger validator badge).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

ASSETS = Path(fastapi_offline.__file__).parent / "static"
_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui(request: Request) -> Response:
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - API",
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="/docs/assets/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc")
async def redoc(request: Request) -> Response:
    return get_redoc_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - API",
        redoc_js_url="/docs/assets/redoc.standalone.js",
        redoc_favicon_url="/docs/assets/favicon.png",
        with_google_fonts=False,
    )


@router.get("/docs/assets/{name}")
async def asset(name: str) -> Response:
    media = _TYPES.get(name)
    if media is None:
        raise HTTPException(404, detail={"error": "not_found", "reason": "no such asset"})
    return Response(
        (ASSETS / name).read_bytes(),
        media_type=media,
        headers={"Cache-Control": "max-age=86400", "X-Content-Type-Options": "nosniff"},
    )
