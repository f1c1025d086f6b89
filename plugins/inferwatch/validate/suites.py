"""The suite files in ``expectations/*.json``, and turning one into a GX suite.

A suite file is small and reviewable::

    {"name": "freshness", "table": "mart_model_lineage", "scope": "model",
     "severity": "warning", "thresholds": {"freshness_max_age_hours": 6},
     "expectations": [{"type": "unexpected_rows_expectation",
                       "kwargs": {"unexpected_rows_query": "select ... from {batch} ..."},
                       "meta": {"check": "newest_event", "threshold": "..."}}]}

``scope`` says what one batch is (:mod:`inferwatch.validate.scopes`): the whole ``table``,
its rows of one ``model``, one model version's newest day (``model_version_day``), the rows
of the ``run``: the batches ingested since the last build that passed, with a column
``acknowledged`` (:mod:`inferwatch.validate.gate_state`), or the ``touched`` rows: those
ingested since the last build that passed, plus every row sharing a ``key`` with one of them
(so uniqueness of the key still holds against the whole table).
``${name}`` in any kwarg or meta string is replaced by the threshold of that name in force for
the batch (suite default, policy, overrides), so a ceiling written into SQL stays configurable.
A kwarg ``{"$reference_partition": "<feature>"}`` becomes the training reference's histogram
of that feature for the batch's model version (for the KL-divergence expectation).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import great_expectations as gx

from inferwatch.config import EXPECTATIONS_DIR

GATE_SEVERITY = "critical"
SEVERITIES = ("critical", "warning", "info")  # GX's own FailureSeverity values
SCOPES = ("table", "model", "model_version_day", "run", "touched")
PER_MODEL_SCOPES = ("model", "model_version_day")
REFERENCE_PARTITION = "$reference_partition"
_SUITE_KEYS = {
    "name", "table", "scope", "key", "severity", "description", "notes", "thresholds",
    "expectations",
}  # fmt: skip
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


@dataclass(frozen=True)
class SuiteSpec:
    """One ``expectations/<name>.json`` file, before thresholds are filled in."""

    name: str
    table: str
    severity: str
    expectations: list[dict]
    scope: str = "table"
    thresholds: dict[str, float] = field(default_factory=dict)
    description: str = ""
    #: ``touched`` scope: the column whose values select the untouched rows checked too.
    key: str | None = None

    @classmethod
    def from_file(cls, path: Path) -> SuiteSpec:
        raw = json.loads(path.read_text())
        # Strict on keys: a misspelt "severity" must not quietly take a suite off the gate.
        unknown = set(raw) - _SUITE_KEYS
        if unknown:
            raise ValueError(f"{path.name}: unknown keys {sorted(unknown)}")
        severity = check_severity(raw["severity"], path.name)
        scope = raw.get("scope", "table")
        if scope not in SCOPES:
            raise ValueError(f"{path.name}: scope {scope!r} is not one of {SCOPES}")
        return cls(
            name=raw.get("name", path.stem),
            table=raw["table"],
            severity=severity,
            scope=scope,
            expectations=raw["expectations"],
            thresholds={k: as_number(k, v) for k, v in raw.get("thresholds", {}).items()},
            description=raw.get("description", ""),
            key=raw.get("key"),
        )

    @property
    def per_model(self) -> bool:
        return self.scope in PER_MODEL_SCOPES


def check_severity(severity: Any, where: str) -> str:
    if severity not in SEVERITIES:
        raise ValueError(f"{where}: severity {severity!r} is not one of {SEVERITIES}")
    return severity


def load_suite_specs(
    names: Iterable[str] | None = None, *, expectations_dir: Path = EXPECTATIONS_DIR
) -> list[SuiteSpec]:
    """Read the named suites (file stems), or every ``*.json`` in the folder when ``None``."""
    if names is None:
        paths = sorted(expectations_dir.glob("*.json"))
    else:
        paths = [expectations_dir / f"{name}.json" for name in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no expectation suite {missing} in {expectations_dir}")
    if not paths:
        raise FileNotFoundError(f"no expectation suites in {expectations_dir}")
    return [SuiteSpec.from_file(p) for p in paths]


def as_number(name: str, value: Any) -> float:
    # Thresholds are pasted into SQL text: only finite numbers may get there.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"threshold {name!r} must be a finite number, got {value!r}")
    return value


def fill(value: Any, thresholds: Mapping[str, float], partitions: Mapping[str, dict]) -> Any:
    """Replace ``${name}`` placeholders and reference partitions, recursively.

    A string that is only a placeholder becomes the number itself. A reference partition that
    the batch's model version lacks raises :class:`MissingReference`.
    """
    if isinstance(value, dict):
        if set(value) == {REFERENCE_PARTITION}:
            feature = value[REFERENCE_PARTITION]
            if feature not in partitions:
                raise MissingReference(feature)
            return partitions[feature]
        return {k: fill(v, thresholds, partitions) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, thresholds, partitions) for v in value]
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match[str]) -> str:
        if match[1] not in thresholds:
            raise ValueError(f"placeholder {match[0]} names no threshold of the suite")
        return repr(thresholds[match[1]])

    whole = _PLACEHOLDER.fullmatch(value)
    if whole:
        lookup(whole)  # raises on an unknown name
        return thresholds[whole[1]]
    return _PLACEHOLDER.sub(lookup, value)


class MissingReference(LookupError):
    """The model version has no training reference for a feature an expectation compares."""


def build_suite(
    spec: SuiteSpec,
    name: str,
    severity: str,
    thresholds: Mapping[str, float],
    partitions: Mapping[str, dict] | None = None,
) -> tuple[gx.ExpectationSuite, list[str]]:
    """A ``gx.ExpectationSuite`` for one batch, thresholds filled in.

    Returns the suite and the checks left out because the batch has no reference to compare
    with (a model version deployed without one), so the caller can say so.
    """
    configs, skipped = [], []
    for expectation in spec.expectations:
        try:
            config = fill(dict(expectation), thresholds, partitions or {})
        except MissingReference as missing:
            skipped.append(f"{expectation['type']}({missing.args[0]})")
            continue
        # GX carries a severity per expectation; keep it in step with the batch's, so Data
        # Docs show what the gate does.
        config["severity"] = severity
        meta = config.get("meta") or {}
        if "check" in meta and "description" not in config:
            # Data Docs show the description: name the check and its limit there.
            config["description"] = f"{meta['check']}: {meta.get('threshold', '')}"
        configs.append(config)
    suite = gx.ExpectationSuite(
        name=name,
        expectations=configs,
        meta={"table": spec.table, "severity": severity, "thresholds": dict(thresholds)},
        notes=spec.description or None,
    )
    return suite, skipped
