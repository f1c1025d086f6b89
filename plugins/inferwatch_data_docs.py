"""Airflow plugin: Great Expectations Data Docs and dbt's docs site served by the API server,
linked from the tasks that write them (`validate`, `transform`).

- ``fastapi_apps``: the Data Docs folder (``$INFERWATCH_DATA_DIR/data_docs``) under
  ``{[api] base_url}/inferwatch-data-docs/``, dbt's docs (``$INFERWATCH_DATA_DIR/dbt_docs``)
  under ``{[api] base_url}/inferwatch-dbt-docs/``. Airflow does not authenticate plugin apps, so
  this one asks for what the task's own page needs: a logged-in Airflow user who may read the
  task instances of ``inferwatch_pipeline`` (the UI's session cookie or a bearer token). A
  browser that is not logged in is sent to Airflow's login page and back.
- ``global_operator_extra_links``: a "Data Docs" button on the ``validate`` task of
  ``inferwatch_pipeline`` and a "dbt Docs" button on its ``transform`` task (an empty link, i.e.
  a disabled button, on every other task).

Airflow runs this file in every component that loads plugins (task processes included), so the
API server's own modules are imported only when a page is requested.
"""

from __future__ import annotations

from typing import Annotated, Any

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from inferwatch.serve import data_docs

_bearer = HTTPBearer(auto_error=False)


async def require_dag_reader(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Airflow's own check, as for the task instance page: a valid JWT (bearer or the UI's
    cookie) of a user allowed to read the pipeline's task instances."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag

    try:
        user = await get_user(request, _oauth_token=None, bearer_credentials=credentials)
    except HTTPException as exc:
        if exc.status_code == 401 and credentials is None and request.method in ("GET", "HEAD"):
            login = get_auth_manager().get_url_login(next_url=str(request.url))
            raise HTTPException(status_code=307, headers={"Location": login}) from exc
        raise
    check = requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE, param_dag_id=data_docs.DAG_ID)
    await run_in_threadpool(check, request, user)


def _base_url() -> str:
    from airflow.configuration import conf

    return conf.get("api", "base_url", fallback="") or ""


class DataDocsLink(BaseOperatorLink):
    """Extra link from the validate task to the Data Docs served by this plugin."""

    name = data_docs.DATA_DOCS.name

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return data_docs.DATA_DOCS.link_for(ti_key.dag_id, ti_key.task_id, _base_url())


class DbtDocsLink(BaseOperatorLink):
    """Extra link from the transform task to dbt's docs site served by this plugin."""

    name = data_docs.DBT_DOCS.name

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return data_docs.DBT_DOCS.link_for(ti_key.dag_id, ti_key.task_id, _base_url())


class InferWatchDataDocsPlugin(AirflowPlugin):
    name = "inferwatch_data_docs"
    fastapi_apps = [
        {
            "app": data_docs.create_app(dependencies=[Depends(require_dag_reader)], site=site),
            "url_prefix": site.url_prefix,
            "name": f"InferWatch {site.name}",
        }
        for site in data_docs.SITES
    ]
    global_operator_extra_links = [DataDocsLink(), DbtDocsLink()]
