"""Retraining requests: the feedback loop's output (InferWatch does not train).

A drift or input-anomaly alert asks for retraining. The ``retraining_trigger`` DAG writes one
request per (model, version, reason, day) to the lake's
``registry/retraining_requests/<model>/<version>/<day>__<reason>.json``; an existing request
is never rewritten, so re-runs and repeated signals add nothing. A request whose model or
version is no valid name (an alert on bronze written before the parser checked names) is
skipped and logged: it can name no folder.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from inferwatch import names
from inferwatch.alerts import log as alert_log
from inferwatch.alerts.step import RETRAINING_REASONS, retraining_request
from inferwatch.config import Settings
from inferwatch.lake import Lake, lake_key

log = logging.getLogger(__name__)

PREFIX = "registry/retraining_requests"


def request_key(request: dict) -> str:
    """The request's lake key; InvalidName when its model or version is no valid name."""
    return lake_key(
        *PREFIX.split("/"),
        names.require("model", request["model"]),
        names.require("model_version", request["model_version"]),
        f"{request['day']}__{request['reason']}.json",
    )


def _key_or_none(request: dict, *, warn: bool = True) -> str | None:
    try:
        return request_key(request)
    except names.InvalidName as error:
        if warn:
            log.warning("retraining request skipped (older bronze, refused today): %s", error)
        return None


def logged_requests(settings: Settings) -> list[dict]:
    """One request per (model, version, reason, day) with an alert in the log."""
    by_key: dict[str, dict] = {}
    for row in alert_log.read_log(settings):
        if row["rule"] in RETRAINING_REASONS and row["model"] and row["model_version"]:
            request = retraining_request(row)
            key = _key_or_none(request)
            if key is not None:
                by_key.setdefault(key, request)
    return list(by_key.values())


def write_requests(lake: Lake, requests: list[dict], source: str = "") -> list[str]:
    """Write the requests not written yet; returns the keys written."""
    written, skipped = [], 0
    for request in requests:
        key = _key_or_none(request)
        skipped += key is None
        if key is None or key in written or lake.exists(key):
            continue
        document = {**request, "requested_at": datetime.now(UTC).isoformat(),
                    "requested_by": "inferwatch", "source": source, "status": "open"}  # fmt: skip
        lake.write_bytes(key, (json.dumps(document, indent=2, default=str) + "\n").encode())
        written.append(key)
    log.info("retraining requests: %d written, %d already there, %d skipped for their names",
             len(written), len(requests) - len(written) - skipped, skipped)  # fmt: skip
    return written


def request_retraining(settings: Settings, lake: Lake, signalled: list[dict], source: str) -> dict:
    """The ``retraining_trigger`` DAG's task: the requests the signal carried, plus any logged
    drift or input-anomaly alert without a request yet (a missed signal heals)."""
    requests = list(signalled) + logged_requests(settings)
    written = write_requests(lake, requests, source)
    keys = [_key_or_none(r, warn=False) for r in requests]  # write_requests logged them
    return {"considered": len(set(keys) - {None}), "written": written,
            "skipped": sum(key is None for key in keys)}  # fmt: skip
