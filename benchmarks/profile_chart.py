"""Profile Superset's chart-data requests in-process (issue 20): where a chart's time goes
inside Superset, beside what its SQL costs in DuckDB alone (chart_cost.py).

Runs in the Superset environment, on a Superset home prepared and synced by InferWatch (e.g.
the one a kept ``benchmarks/run.py --only superset --keep`` run leaves in its data dir):

    SUPERSET_HOME=HOME SUPERSET_CONFIG_PATH=superset/superset_config.py \\
    SUPERSET_SECRET_KEY="$(cat HOME/secret_key)" \\
        .venv/superset/bin/python benchmarks/profile_chart.py --password ADMIN_PASSWORD \\
        [--chart NAME ...] [--repeat 10] [--top 25]

For each chart (all by default): the median of ``--repeat`` chart-data requests through
Flask's test client (no HTTP server, no network), then, for the charts named with
``--chart``, cProfile's cumulative top functions over the same requests.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--password", required=True, help="the admin password")
    parser.add_argument("--chart", action="append", default=[], help="profile this chart")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    from superset.app import create_app

    app = create_app()
    client = app.test_client()
    token = client.post(
        "/api/v1/security/login",
        json={"username": "admin", "password": args.password, "provider": "db", "refresh": False},
    ).json["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    charts = client.get("/api/v1/chart/?q=(page_size:100)", headers=headers).json["result"]
    for listed in charts:
        chart = client.get(f"/api/v1/chart/{listed['id']}", headers=headers).json["result"]
        if not chart.get("query_context"):
            continue
        context = json.loads(chart["query_context"])
        form = context.get("form_data") or {}
        if not (context.get("datasource") or {}).get("id") and "__" in str(form.get("datasource")):
            ds_id, ds_type = form["datasource"].split("__")
            context["datasource"] = {"id": int(ds_id), "type": ds_type}
        context["result_format"], context["result_type"] = "json", "full"

        def post(context=context) -> None:
            response = client.post("/api/v1/chart/data", json=context, headers=headers)
            assert response.status_code == 200, response.data[:300]

        post()  # warm-up
        profiler = cProfile.Profile() if chart["slice_name"] in args.chart else None
        samples = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            post()
            if profiler:
                profiler.disable()
            samples.append((time.perf_counter() - started) * 1000)
        print(f"{chart['slice_name']}: median {statistics.median(samples):.0f} ms")
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.top)
            print(out.getvalue())


if __name__ == "__main__":
    main()
