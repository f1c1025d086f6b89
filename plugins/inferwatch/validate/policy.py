"""Severity and thresholds per model, from a YAML file users edit without touching code.

``expectations/policy.yml`` by default; ``INFERWATCH_VALIDATION_POLICY`` points elsewhere::

    defaults:
      severity: {drift: warning}
      thresholds: {freshness_max_age_hours: 6}
    models:
      fraud_detector:
        severity: {freshness: critical}
        thresholds: {freshness_max_age_hours: 1}

The most specific value wins: a suite file's default < ``defaults`` < the global overrides
(``INFERWATCH_THRESHOLDS``, for one-off runs) < ``models.<model>``. Per-model entries apply to
the suites scoped per model; whole-table suites (contract, reconciliation) take only defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from inferwatch.validate.suites import SuiteSpec, as_number, check_severity

_TOP_KEYS = {"defaults", "models"}
_ENTRY_KEYS = {"severity", "thresholds"}


@dataclass(frozen=True)
class Rules:
    """What one policy level says: severity by suite name, thresholds by name."""

    severity: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Any, where: str) -> Rules:
        raw = raw or {}
        if not isinstance(raw, Mapping) or set(raw) - _ENTRY_KEYS:
            raise ValueError(f"{where}: expected a mapping with keys {sorted(_ENTRY_KEYS)}")
        severity = {
            suite: check_severity(value, f"{where}.severity.{suite}")
            for suite, value in (raw.get("severity") or {}).items()
        }
        thresholds = {k: as_number(k, v) for k, v in (raw.get("thresholds") or {}).items()}
        return cls(severity, thresholds)


@dataclass(frozen=True)
class Policy:
    defaults: Rules = field(default_factory=Rules)
    models: dict[str, Rules] = field(default_factory=dict)
    overrides: dict[str, float] = field(default_factory=dict)
    source: str = "built-in"

    @classmethod
    def load(cls, path: Path | None, overrides: Mapping[str, Any] | None = None) -> Policy:
        """Read ``path`` (``None`` or a missing default file: suite defaults only)."""
        raw: Any = {}
        if path is not None:
            raw = yaml.safe_load(Path(path).read_text()) or {}
            if not isinstance(raw, Mapping) or set(raw) - _TOP_KEYS:
                raise ValueError(f"{path}: expected top-level keys {sorted(_TOP_KEYS)}")
        where = str(path or "policy")
        return cls(
            defaults=Rules.parse(raw.get("defaults"), f"{where}: defaults"),
            models={
                str(model): Rules.parse(entry, f"{where}: models.{model}")
                for model, entry in (raw.get("models") or {}).items()
            },
            overrides={k: as_number(k, v) for k, v in (overrides or {}).items()},
            source=where,
        )

    def check_against(self, specs: list[SuiteSpec]) -> None:
        """Refuse names the suites do not know: a typo would silently leave a default in force."""
        suites = {spec.name: spec for spec in specs}
        known = {name for spec in specs for name in spec.thresholds}
        levels = [("defaults", self.defaults)]
        levels += [(f"models.{model}", rules) for model, rules in self.models.items()]
        for where, rules in levels:
            bad = sorted(set(rules.thresholds) - known)
            if bad:
                raise ValueError(f"{self.source}: {where}: unknown thresholds {bad}")
            for suite in rules.severity:
                if suite not in suites:
                    raise ValueError(f"{self.source}: {where}: no suite named {suite!r}")
                if where != "defaults" and not suites[suite].per_model:
                    raise ValueError(
                        f"{self.source}: {where}: suite {suite!r} checks a whole table or run; "
                        "its severity can only be set under defaults"
                    )
        unknown = sorted(set(self.overrides) - known)
        if unknown:
            raise ValueError(f"unknown thresholds {unknown}; the suites declare {sorted(known)}")

    def severity(self, spec: SuiteSpec, model: str | None = None) -> str:
        model_rules = self.models.get(model) if model is not None else None
        if model_rules and spec.name in model_rules.severity:
            return model_rules.severity[spec.name]
        return self.defaults.severity.get(spec.name, spec.severity)

    def thresholds(self, spec: SuiteSpec, model: str | None = None) -> dict[str, float]:
        """The suite's thresholds in force for ``model`` (or the whole table)."""
        levels = [self.defaults.thresholds, self.overrides]
        if model is not None and model in self.models:
            levels.append(self.models[model].thresholds)
        merged = dict(spec.thresholds)
        for level in levels:
            merged.update({k: v for k, v in level.items() if k in spec.thresholds})
        return merged
