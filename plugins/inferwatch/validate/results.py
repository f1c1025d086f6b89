"""GX results → one row per expectation for ``mart_data_quality``, and the gate's verdict."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from inferwatch.validate.scopes import Batch
from inferwatch.validate.suites import GATE_SEVERITY

log = logging.getLogger(__name__)

_MAX_TEXT = 500  # observed values end up in a dashboard table, not a log
MAX_DETAILS = 4000  # characters of JSON evidence per result row


@dataclass
class ValidationOutcome:
    """What the gate decided, and one row per expectation for ``mart_data_quality``."""

    run_id: str
    passed_gate: bool
    results: list[dict]
    failed_critical: list[str]
    data_docs_index: Path | None = None
    skipped: list[str] | None = None

    @property
    def failed_warnings(self) -> list[str]:
        """Failed expectations of the batches that only warn."""
        return [
            display_name(r) for r in self.results
            if not r["success"] and r["severity"] != GATE_SEVERITY
        ]  # fmt: skip

    def summary(self) -> str:
        """One line for logs, notifications and the failed task's message."""
        checked = len(self.results)
        if not self.passed_gate:
            return (
                f"validation {self.run_id}: gate FAILED, {len(self.failed_critical)} critical "
                f"expectation(s) failed: {', '.join(self.failed_critical)}{self._remedy()}"
            )
        warnings = self.failed_warnings
        if warnings:
            return (
                f"validation {self.run_id}: gate passed ({checked} expectations); "
                f"{len(warnings)} warning(s): {', '.join(warnings)}"
            )
        return f"validation {self.run_id}: gate passed, all {checked} expectations met"

    def _remedy(self) -> str:
        """What gets a build held back for quarantine published (README.md, "Validation")."""
        held = [
            r for r in self.results
            if not r["success"] and r["severity"] == GATE_SEVERITY and r["suite"] == "quarantine"
        ]  # fmt: skip
        if not held:
            return ""
        objects: list[str] = []
        for row in held:
            try:
                samples = json.loads(row.get("details") or "[]")
            except ValueError:  # clipped evidence: name no object rather than a wrong one
                samples = []
            for sample in samples:
                objects += [key for key in sample.get("objects") or [] if key not in objects]
        named = f" (e.g. {', '.join(objects[:3])})" if objects else ""
        return (
            ". To publish: fix the producer and `inferwatch replay-quarantine`, or acknowledge "
            f"the objects{named} with `inferwatch quarantine acknowledge <object_key> --reason "
            "...` (README: Validation: the publishing gate)"
        )


def display_name(row: Mapping[str, Any]) -> str:
    """``suite[model/version].check``: SQL checks by their label, others as ``type(column)``."""
    scope = "/".join(str(row[key]) for key in ("model", "model_version") if row.get(key))
    name = f"{row['suite']}[{scope}]" if scope else row["suite"]
    if row["expectation"] == "unexpected_rows_expectation" and row["column"]:
        return f"{name}.{row['column']}"
    target = f"({row['column']})" if row["column"] else ""
    return f"{name}.{row['expectation']}{target}"


def rows_of(suite_result: Any, batch: Batch, run_id: str, validated_at: datetime) -> list[dict]:
    rows = []
    for result in suite_result.results:
        config = result.expectation_config
        kwargs, meta = config.kwargs, config.meta or {}
        rows.append(
            {
                "run_id": run_id,
                "suite": batch.spec.name,
                "model": batch.model,
                "model_version": batch.model_version,
                "severity": batch.severity,
                "expectation": config.type,
                # Table-level checks report under the label their meta gives them, so two
                # SQL checks of one suite stay apart on the dashboard.
                "column": kwargs.get("column") or meta.get("check"),
                "success": bool(result.success),
                "observed_value": observed_text(config.type, result),
                "threshold": threshold_text(config.type, kwargs, meta),
                "details": details_json(config.type, result),
                "validated_at": validated_at,
            }
        )
    return rows


def missing_table_row(batch: Batch, run_id: str, validated_at: datetime) -> dict:
    """A suite whose table the build did not produce fails as one row that says so."""
    return {
        "run_id": run_id, "suite": batch.spec.name, "model": None, "model_version": None,
        "severity": batch.severity, "expectation": "table_exists", "column": None,
        "success": False, "observed_value": f"no table {batch.spec.table} in the warehouse",
        "threshold": f"table {batch.spec.table} exists", "details": None,
        "validated_at": validated_at,
    }  # fmt: skip


def acknowledgement_row(suite: str, ack: Mapping[str, Any], run_id: str, validated_at) -> dict:
    """An acknowledged object whose quarantined lines the run's checks left out, on record."""
    return {
        "run_id": run_id, "suite": suite, "model": None, "model_version": None,
        "severity": "info", "expectation": "quarantine_acknowledged",
        "column": "acknowledged_object", "success": True,
        "observed_value": clip(
            f"{ack['object_key']}: {ack['lines_left_out']} quarantined lines left out"
        ),
        "threshold": clip(
            f"acknowledged by {ack['actor']} at {ack['acknowledged_at']}: {ack['reason']}"
        ),
        "details": clip_json(ack),
        "validated_at": validated_at,
    }  # fmt: skip


def threshold_text(expectation_type: str, kwargs: Mapping[str, Any], meta: Mapping) -> str:
    if "threshold" in meta:
        return str(meta["threshold"])
    if "value_set" in kwargs:
        text = f"in {list(kwargs['value_set'])}"
    elif "type_" in kwargs:
        text = f"type {kwargs['type_']}"
    elif "column_set" in kwargs:
        scope = "exactly" if kwargs.get("exact_match") else "at least"
        text = f"{scope} columns {sorted(kwargs['column_set'])}"
    elif expectation_type == "expect_column_kl_divergence_to_be_less_than":
        text = f"KL divergence < {kwargs.get('threshold')}"
    elif kwargs.get("min_value") is not None or kwargs.get("max_value") is not None:
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if low is not None and high is not None:
            text = f"between {low} and {high}"
        else:
            text = f">= {low}" if low is not None else f"<= {high}"
    elif expectation_type == "expect_column_values_to_be_unique":
        text = "unique"
    elif expectation_type == "expect_column_values_to_not_be_null":
        text = "not null"
    else:
        text = ""
    if kwargs.get("mostly") is not None:
        text += f" (mostly {kwargs['mostly']})"
    return text


def exception_message(info: Mapping | None) -> str | None:
    """First line of the error GX caught, if any.

    ``exception_info`` is flat when the expectation itself raised, but keyed by metric when a
    metric failed (e.g. a missing column).
    """
    if not info:
        return None
    entries = [info] if "exception_message" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, Mapping) and (
            entry.get("raised_exception") or entry.get("exception_message")
        ):
            lines = str(entry.get("exception_message") or "").strip().splitlines()
            return lines[0] if lines else "exception"
    return None


def observed_text(expectation_type: str, result: Any) -> str:
    error = exception_message(result.exception_info)
    if error:
        return clip(f"error: {error}")
    details = result.result or {}
    if expectation_type == "unexpected_rows_expectation":
        return f"{details.get('observed_value', '?')} unexpected rows"
    mismatched = (details.get("details") or {}).get("mismatched")
    if mismatched:
        return clip(f"mismatched columns {mismatched}")
    if isinstance(details.get("observed_value"), float):
        return f"{details['observed_value']:.4g}"
    if details.get("observed_value") is not None:
        return clip(str(details["observed_value"]))
    if "unexpected_count" in details:
        text = f"{details['unexpected_count']} unexpected"
        if details.get("unexpected_percent") is not None:
            text += f" ({details['unexpected_percent']:.3g}%)"
        examples = details.get("partial_unexpected_list") or []
        if examples:
            text += f", e.g. {examples[:3]}"
        return clip(text)
    return ""


def details_json(expectation_type: str, result: Any) -> str | None:
    """Structured evidence where a single figure is not enough (KL: both histograms)."""
    if expectation_type != "expect_column_kl_divergence_to_be_less_than":
        return None
    details = (result.result or {}).get("details") or {}
    if not details:
        return None
    return clip_json(details)


def clip_json(value: Any, limit: int = MAX_DETAILS) -> str:
    """``value`` as JSON of at most about ``limit`` characters that is still JSON: evidence
    can quote a whole logged value (a long prediction), and text cut mid-string would make
    ``mart_data_quality.details`` (a JSON column) refuse the row and ``publish_ops`` fail."""
    text = json.dumps(value, default=str)
    if len(text) <= limit:
        return text
    preview = text[: limit // 2]
    while True:  # escaping can lengthen the preview: shorten it until the whole fits
        clipped = json.dumps({"clipped_from_chars": len(text), "preview": preview})
        if len(clipped) <= limit or not preview:
            return clipped
        preview = preview[: len(preview) // 2]


def clip(text: str, limit: int = _MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def outcome_of(
    rows: list[dict], run_id: str, data_docs_dir: Path, skipped: list[str]
) -> ValidationOutcome:
    failed_critical = [
        display_name(r) for r in rows if not r["success"] and r["severity"] == GATE_SEVERITY
    ]
    index = data_docs_dir / "index.html"
    outcome = ValidationOutcome(
        run_id=run_id,
        passed_gate=not failed_critical,
        results=rows,
        failed_critical=failed_critical,
        data_docs_index=index if index.is_file() else None,
        skipped=skipped,
    )
    log.info("%s", outcome.summary())
    return outcome
