"""`inferwatch` command line: simulate logs, run the pipeline once, manage the local Superset."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from inferwatch.config import Settings


def _settings(lake: str | None, data_dir: str | None) -> Settings:
    env = {}
    if lake:
        env["INFERWATCH_LAKE_URL"] = lake
    if data_dir:
        env["INFERWATCH_DATA_DIR"] = data_dir
    return Settings.from_env({**os.environ, **env})


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None else None


lake_option = click.option(
    "--lake", envvar="INFERWATCH_LAKE_URL", help="Lake root URL or path [env INFERWATCH_LAKE_URL]."
)
data_dir_option = click.option(
    "--data-dir",
    envvar="INFERWATCH_DATA_DIR",
    help="Where InferWatch keeps its state [env INFERWATCH_DATA_DIR; default ./data].",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """InferWatch: raw inference logs → validated usage dashboards."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
@lake_option
@data_dir_option
@click.option("--start", type=click.DateTime(), help="UTC start (default: 14 days before --end).")
@click.option("--end", type=click.DateTime(), help="UTC end (default: the previous full hour).")
@click.option("--events", default=200_000, show_default=True, help="Events to generate.")
@click.option("--seed", default=42, show_default=True)
@click.option("--objects-per-hour", default=1, show_default=True)
@click.option("--truth-dir", type=click.Path(), help="Where the truth goes [DATA_DIR/truth].")
@click.option("--if-empty", is_flag=True, help="Do nothing if the lake already has raw/ logs.")
def simulate(lake, data_dir, start, end, events, seed, objects_per_hour, truth_dir, if_empty):
    """Write realistic sample logs (contract v1), references, registry and the truth."""
    from inferwatch.lake import Lake
    from inferwatch.simulate import simulate as run_simulation

    settings = _settings(lake, data_dir)
    target = Lake(settings.lake_url)
    if if_empty and any(True for _ in target.list("raw")):
        click.echo(f"{settings.lake_url} already has raw logs; not simulating")
        return
    started = time.monotonic()
    summary = run_simulation(
        settings.lake_url,
        truth_dir=Path(truth_dir) if truth_dir else settings.data_dir / "truth",
        start=_utc(start), end=_utc(end), events=events, seed=seed,
        objects_per_hour=objects_per_hour, progress=click.echo,
    )  # fmt: skip
    click.echo(json.dumps(summary, indent=1, default=str))
    click.echo(f"simulated in {time.monotonic() - started:.1f}s into {settings.lake_url}")


@main.command()
@lake_option
@data_dir_option
def run(lake, data_dir):
    """Run the pipeline DAG once, in-process (dag.test), over whatever is new in the lake."""
    from inferwatch.runner import run_once

    settings = _settings(lake, data_dir)
    state = run_once(settings)
    click.echo(f"inferwatch_pipeline: {state}")
    if state != "success":
        sys.exit(1)


@main.command()
@lake_option
@data_dir_option
def rebuild(lake, data_dir):
    """Rebuild every mart from bronze (dbt --full-refresh), e.g. after changing a model.

    Bronze is immutable, so nothing is re-read from raw/. Then `inferwatch run` validates
    and publishes the result.
    """
    from inferwatch import pipeline
    from inferwatch.orchestrate import current_lake

    settings = _settings(lake, data_dir)
    # current_lake: an s3:// lake needs the credentials of its Airflow connection, as in a run.
    result = pipeline.transform(settings, current_lake(settings), full_refresh=True)
    click.echo(json.dumps(result))


@main.group()
def superset() -> None:
    """Manage the local Superset (its own virtual environment, bound to 127.0.0.1)."""


@superset.command("start")
@data_dir_option
@click.option("--port", default=8088, show_default=True)
def superset_start(data_dir, port):
    """Prepare (first time) and start Superset; returns when /health answers."""
    from inferwatch.secrets import ensure_secrets
    from inferwatch.serve import superset_server

    settings = _settings(None, data_dir)
    secrets = ensure_secrets(settings.secrets_path)
    home = settings.data_dir / "superset"
    superset_server.prepare(
        home,
        admin_password=secrets["SUPERSET_ADMIN_PASSWORD"],
        secret_key=secrets["SUPERSET_SECRET_KEY"],
    )
    pid = superset_server.start(home, port=port)
    click.echo(f"superset pid {pid} on http://127.0.0.1:{port}")


@superset.command("stop")
@data_dir_option
def superset_stop(data_dir):
    """Stop the Superset started from this data dir (by its pid file)."""
    from inferwatch.serve import superset_server

    settings = _settings(None, data_dir)
    superset_server.stop(settings.data_dir / "superset")


@superset.command("sync")
@data_dir_option
def superset_sync(data_dir):
    """Import/update the dashboards, charts, datasets and database from superset/."""
    from inferwatch.serve.superset_sync import sync

    settings = _settings(None, data_dir)
    click.echo(json.dumps(sync(settings), indent=1, default=str))


@main.group("airflow")
def airflow_group() -> None:
    """Manage the local Airflow (API server, scheduler, DAG processor, triggerer) on 127.0.0.1."""


@airflow_group.command("start")
@lake_option
@data_dir_option
@click.option("--port", default=8080, show_default=True)
def airflow_start(lake, data_dir, port):
    """Start the Airflow components (reusing running ones); returns when the API is healthy."""
    from inferwatch.serve import airflow_services

    pids = airflow_services.start(_settings(lake, data_dir), port=port)
    click.echo(f"airflow on http://127.0.0.1:{port} (pids {pids})")


@airflow_group.command("stop")
@data_dir_option
def airflow_stop(data_dir):
    """Stop the Airflow components started from this data dir (by their pid files)."""
    from inferwatch.serve import airflow_services

    click.echo(f"stopped: {airflow_services.stop(_settings(None, data_dir))}")


@main.command()
@data_dir_option
def urls(data_dir):
    """Print where the dashboards and the Airflow UI are, and how to log in."""
    from inferwatch.secrets import ensure_secrets
    from inferwatch.serve import airflow_services
    from inferwatch.serve.superset_access import demo_logins

    settings = _settings(None, data_dir)
    secrets = ensure_secrets(settings.secrets_path)
    user, password = airflow_services.admin_login(settings)
    demo = "".join(
        f"          {login} ({role}) / {secret}\n"
        for login, (role, secret) in demo_logins(settings.secrets_path).items()
        if secret  # created by `inferwatch superset sync`
    )
    click.echo(
        f"Superset  {settings.superset_url}  (admin / {secrets['SUPERSET_ADMIN_PASSWORD']})\n"
        f"{demo}"
        f"Airflow   {settings.airflow_url}  ({user} / {password})\n"
        f"Published {settings.serving_path} and {settings.ops_path}\n"
        f"Secrets   {settings.secrets_path} (owner-only)"
    )


if __name__ == "__main__":
    main()
