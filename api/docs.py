"""``/docs``: Swagger UI for the API, its files served by Dormouse itself.

The JavaScript and CSS come from the ``fastapi-offline`` package (Swagger UI 5, which reads
the OpenAPI 3.1 FastAPI writes), so the page works without reaching a CDN and loads nothing
from another origin. It carries the console's headers (a Content-Security-Policy of this
origin's files only, no framing), so the page's own start-up script is a file too, not inline.
``Authorize`` takes an API key: the schema declares the ``Bearer`` scheme on every ``/v1``
route (api/problems.py). ``DOCS_ENABLED=false`` leaves all of it, and ``/openapi.json``, out.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from api.console.render import HEADERS

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Dormouse API</title>
<link rel="stylesheet" href="{ASSETS_URL}/swagger-ui.css">
<link rel="icon" href="{ASSETS_URL}/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS_URL}/swagger-ui-bundle.js"></script>
<script src="/docs/start.js"></script>
</body>
</html>
"""

# The key typed into Authorize survives a reload of the page (persistAuthorization).
START = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  persistAuthorization: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""


def mount_docs(app: FastAPI) -> None:
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(PAGE, headers=HEADERS)

    @app.get("/docs/start.js", include_in_schema=False)
    async def start() -> Response:
        return Response(START, media_type="text/javascript", headers=HEADERS)
