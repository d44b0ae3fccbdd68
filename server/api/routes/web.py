"""The web player: ``/`` serves its index.html and ``/static/`` its files.

The player lives in ``clients/web/`` in a source checkout or ``server/static/`` in an
installed package; the first of them that holds an ``index.html`` is served.  Without one,
``/`` is a small placeholder page that points at the API documentation.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

_SERVER_DIR = Path(__file__).resolve().parents[2]
WEB_DIRS = (_SERVER_DIR.parent / "clients" / "web", _SERVER_DIR / "static")

PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rollcast</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Rollcast</h1>
<p>Real-time streaming video generation. The web player is not installed on this server.</p>
<p>API: <a href="/docs">/docs</a> (OpenAPI: <a href="/openapi.json">/openapi.json</a>);
create a session with <code>POST /v1/sessions</code> and open its <code>stream_url</code>.</p>
</body></html>
"""


def find_web_dir(candidates: tuple[Path, ...] = WEB_DIRS) -> Path | None:
    return next((d for d in candidates if (d / "index.html").is_file()), None)


def install_web(app: FastAPI, web_dir: Path | None = None) -> None:
    web_dir = web_dir or find_web_dir()
    if web_dir is None:

        @app.get("/", include_in_schema=False)
        async def placeholder() -> HTMLResponse:
            return HTMLResponse(PLACEHOLDER)

        return
    index = web_dir / "index.html"

    @app.get("/", include_in_schema=False)
    async def player() -> FileResponse:
        return FileResponse(index, media_type="text/html")

    app.mount("/static", StaticFiles(directory=web_dir), name="static")
