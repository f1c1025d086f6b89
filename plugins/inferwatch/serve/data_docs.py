"""Great Expectations Data Docs over HTTP, and the link to them from the validate task.

The validate step writes Data Docs to ``Settings.data_docs_dir`` (``index.html`` inside), a
local folder a browser cannot open from the Airflow UI (``file://`` links are blocked). The
Airflow plugin ``plugins/inferwatch_data_docs.py`` mounts :func:`create_app` in Airflow's API
server under :data:`URL_PREFIX` and adds a "Data Docs" extra link to the ``validate`` task that
points at it. This module holds the logic and imports no Airflow: the plugin adds Airflow's
authentication as a dependency.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from inferwatch.config import Settings

#: Where the Data Docs app is mounted in Airflow's API server.
URL_PREFIX = "/inferwatch-data-docs"
DAG_ID = "inferwatch_pipeline"
TASK_ID = "validate"
LINK_NAME = "Data Docs"

# Data Docs change with every validation: let browsers keep a copy but revalidate it each time
# (a 304 when unchanged), so the link never shows an earlier run.
_CACHE_CONTROL = "no-cache"


def data_docs_url(base_url: str) -> str:
    """The Data Docs index under an API server's ``[api] base_url`` (``""``: root-relative)."""
    return f"{base_url.rstrip('/')}{URL_PREFIX}/index.html"


def link_for(dag_id: str, task_id: str, base_url: str) -> str:
    """The extra link's URL: the Data Docs for the pipeline's validate task, else ``""``."""
    if (dag_id, task_id) != (DAG_ID, TASK_ID):
        return ""
    return data_docs_url(base_url)


def _settings_docs_dir() -> Path:
    return Settings.from_env().data_docs_dir


def _page(title: str, body: str, status_code: int) -> HTMLResponse:
    text = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        "<body style='font-family: sans-serif; max-width: 48em; margin: 3em auto'>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(text, status_code=status_code, headers={"Cache-Control": _CACHE_CONTROL})


def not_found_page(docs_dir: Path, path: str) -> HTMLResponse:
    """404: either no validation has written Data Docs yet, or this page is not in them."""
    if not (docs_dir / "index.html").is_file():
        return _page(
            "No Data Docs yet",
            "<p>No validation has run yet: Great Expectations has not written Data Docs to "
            f"<code>{html.escape(str(docs_dir))}</code>.</p>"
            f"<p>Run the <code>{DAG_ID}</code> DAG (or <code>inferwatch run</code>); its "
            f"<code>{TASK_ID}</code> task writes them, and this page then shows them.</p>",
            404,
        )
    return _page(
        "Not in the Data Docs",
        f"<p><code>{html.escape(path)}</code> is not part of the current Data Docs.</p>"
        "<p><a href='index.html'>Data Docs index</a></p>",
        404,
    )


def create_app(
    docs_dir: Callable[[], Path] = _settings_docs_dir,
    dependencies: Sequence[Any] = (),
) -> FastAPI:
    """A FastAPI app serving the Data Docs folder as static files (``index.html`` for ``/``).

    ``docs_dir`` is resolved on every request, so the folder may appear after start-up (the
    first validation creates it) and follows ``INFERWATCH_DATA_DIR``. ``dependencies`` guard
    every page (the Airflow plugin passes Airflow's authentication). Paths cannot leave the
    folder (Starlette's ``StaticFiles`` lookup); symlinks out of it are not followed.
    """
    app = FastAPI(title="InferWatch Data Docs", docs_url=None, redoc_url=None, openapi_url=None)

    @app.api_route(
        "/{path:path}", methods=["GET", "HEAD"], dependencies=list(dependencies), name="data_docs"
    )
    async def serve(path: str, request: Request) -> Response:
        root = docs_dir()
        files = StaticFiles(directory=root, html=True, check_dir=False)
        relative = os.path.normpath(os.path.join(*path.split("/"))) if path else "."
        try:
            response = await files.get_response(relative, request.scope)
        except HTTPException as exc:
            if exc.status_code != 404:
                raise
            return not_found_page(root, path)
        response.headers["Cache-Control"] = _CACHE_CONTROL
        return response

    return app
