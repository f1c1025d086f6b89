"""Great Expectations Data Docs and dbt's docs site over HTTP, and the links to them.

The validate step writes Data Docs to ``Settings.data_docs_dir`` (``index.html`` inside); the
transform step writes dbt's docs site (one self-contained ``index.html``, ``dbt docs generate
--static``) to ``Settings.dbt_docs_dir``. Both are local folders a browser cannot open from the
Airflow UI (``file://`` links are blocked). The Airflow plugin ``plugins/inferwatch_data_docs.py``
mounts :func:`create_app` for each :class:`Site` in Airflow's API server under its URL prefix,
and adds an extra link to the task that writes it (``validate``: "Data Docs"; ``transform``:
"dbt Docs"). This module holds the logic and imports no Airflow: the plugin adds Airflow's
authentication as a dependency.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from inferwatch.config import Settings

DAG_ID = "inferwatch_pipeline"


@dataclass(frozen=True)
class Site:
    """A folder of generated HTML that one task of the pipeline writes on every run."""

    #: The link's and the page titles' name.
    name: str
    #: Where the app is mounted in Airflow's API server.
    url_prefix: str
    #: The task that writes it (and shows the extra link).
    task_id: str
    #: Which tool writes it, for the page shown before the first run.
    writer: str
    #: The folder, from the settings in effect.
    folder: Callable[[Settings], Path]

    def url(self, base_url: str) -> str:
        """The index under an API server's ``[api] base_url`` (``""``: root-relative)."""
        return f"{base_url.rstrip('/')}{self.url_prefix}/index.html"

    def link_for(self, dag_id: str, task_id: str, base_url: str) -> str:
        """The extra link's URL on the task that writes the site, else ``""``."""
        return self.url(base_url) if (dag_id, task_id) == (DAG_ID, self.task_id) else ""


DATA_DOCS = Site(
    "Data Docs", "/inferwatch-data-docs", "validate", "Great Expectations",
    lambda settings: settings.data_docs_dir,
)  # fmt: skip
DBT_DOCS = Site(
    "dbt Docs", "/inferwatch-dbt-docs", "transform", "dbt (docs generate)",
    lambda settings: settings.dbt_docs_dir,
)  # fmt: skip
SITES = (DATA_DOCS, DBT_DOCS)

# The names the Data Docs had before dbt's docs joined them.
URL_PREFIX = DATA_DOCS.url_prefix
TASK_ID = DATA_DOCS.task_id
LINK_NAME = DATA_DOCS.name

# Both change with every run: let browsers keep a copy but revalidate it each time (a 304 when
# unchanged), so the link never shows an earlier run.
_CACHE_CONTROL = "no-cache"


def data_docs_url(base_url: str) -> str:
    """The Data Docs index under an API server's ``[api] base_url`` (``""``: root-relative)."""
    return DATA_DOCS.url(base_url)


def link_for(dag_id: str, task_id: str, base_url: str) -> str:
    """The extra link's URL: the Data Docs for the pipeline's validate task, else ``""``."""
    return DATA_DOCS.link_for(dag_id, task_id, base_url)


def _page(title: str, body: str, status_code: int) -> HTMLResponse:
    text = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        "<body style='font-family: sans-serif; max-width: 48em; margin: 3em auto'>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(text, status_code=status_code, headers={"Cache-Control": _CACHE_CONTROL})


def not_found_page(docs_dir: Path, path: str, site: Site = DATA_DOCS) -> HTMLResponse:
    """404: either the task has not written the site yet, or this page is not in it."""
    if not (docs_dir / "index.html").is_file():
        first = "No validation has run yet" if site is DATA_DOCS else "No transform has run yet"
        return _page(
            f"No {site.name} yet",
            f"<p>{first}: {html.escape(site.writer)} has not written the {site.name} to "
            f"<code>{html.escape(str(docs_dir))}</code>.</p>"
            f"<p>Run the <code>{DAG_ID}</code> DAG (or <code>inferwatch run</code>); its "
            f"<code>{site.task_id}</code> task writes them, and this page then shows them.</p>",
            404,
        )
    return _page(
        f"Not in the {site.name}",
        f"<p><code>{html.escape(path)}</code> is not part of the current {site.name}.</p>"
        f"<p><a href='index.html'>{site.name} index</a></p>",
        404,
    )


def create_app(
    docs_dir: Callable[[], Path] | None = None,
    dependencies: Sequence[Any] = (),
    site: Site = DATA_DOCS,
) -> FastAPI:
    """A FastAPI app serving a site's folder as static files (``index.html`` for ``/``).

    ``docs_dir`` (default: the site's folder in the current settings) is resolved on every
    request, so the folder may appear after start-up (the first run creates it) and follows
    ``INFERWATCH_DATA_DIR``. ``dependencies`` guard every page (the Airflow plugin passes
    Airflow's authentication). Paths cannot leave the folder (Starlette's ``StaticFiles``
    lookup); symlinks out of it are not followed.
    """

    def current_folder() -> Path:
        return site.folder(Settings.from_env())

    folder = docs_dir or current_folder
    app = FastAPI(title=f"InferWatch {site.name}", docs_url=None, redoc_url=None, openapi_url=None)

    @app.api_route(
        "/{path:path}", methods=["GET", "HEAD"], dependencies=list(dependencies), name="data_docs"
    )
    async def serve(path: str, request: Request) -> Response:
        root = folder()
        files = StaticFiles(directory=root, html=True, check_dir=False)
        relative = os.path.normpath(os.path.join(*path.split("/"))) if path else "."
        try:
            response = await files.get_response(relative, request.scope)
        except HTTPException as exc:
            if exc.status_code != 404:
                raise
            return not_found_page(root, path, site)
        response.headers["Cache-Control"] = _CACHE_CONTROL
        return response

    return app
