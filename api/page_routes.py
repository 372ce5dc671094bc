"""``GET /chat``: a page to try a service's agent in a browser, over the live API.

Three static files shipped in the package (``api/static``): no build step, and nothing
loaded from another origin. The page itself needs no key: it asks for one and sends it
as ``Authorization`` on the ``/v1`` calls it makes, like any client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"

# Only this origin's own files and API; the key the page holds goes nowhere else, and no
# other site may frame the page to watch what is typed into it.
POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/chat")
async def chat_page() -> FileResponse:
    return FileResponse(STATIC / "chat.html", media_type="text/html", headers=HEADERS)


def mount_chat_page(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/chat/assets", StaticFiles(directory=STATIC), name="chat-assets")
