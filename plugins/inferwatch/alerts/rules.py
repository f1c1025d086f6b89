"""Alert rules as code: a YAML file of defaults and per-model overrides (``rules.yml``)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import yaml

RULE_NAMES = (
    "latency_p95", "confidence_drop", "usage", "error_rate", "drift", "input_anomaly",
    "stale_data", "pipeline_run", "performance_below", "fairness_ratio", "ingest_limits",
    "junk_lines_published",
)  # fmt: skip


class RulesError(ValueError):
    pass


@dataclass(frozen=True)
class Rules:
    defaults: dict
    models: dict
    dashboards: dict

    def for_model(self, model: str | None) -> dict:
        """The defaults with the model's overrides merged in (rule by rule, key by key)."""
        merged = copy.deepcopy(self.defaults)
        override = self.models.get(model or "", {}) or {}
        for key, value in override.items():
            if key == "rules":
                for rule, params in (value or {}).items():
                    merged["rules"].setdefault(rule, {}).update(params or {})
            else:
                merged[key] = value
        return merged

    def rule(self, name: str, model: str | None) -> dict | None:
        """One rule's parameters for a model, with ``min_history_days`` added; None if disabled."""
        merged = self.for_model(model)
        params = dict(merged["rules"].get(name) or {})
        if not params.get("enabled", True):
            return None
        params.setdefault("min_history_days", merged.get("min_history_days", 3))
        return params

    def max_alert_age_hours(self) -> float:
        return float(self.defaults.get("max_alert_age_hours", 48))


def load_rules(path: Path) -> Rules:
    data = yaml.safe_load(Path(path).read_text()) or {}
    defaults = data.get("defaults") or {}
    defaults.setdefault("rules", {})
    unknown = set(defaults["rules"]) - set(RULE_NAMES)
    for model, override in (data.get("models") or {}).items():
        unknown |= {f"{model}.{r}" for r in ((override or {}).get("rules") or {})
                    if r not in RULE_NAMES}  # fmt: skip
    if unknown:
        raise RulesError(f"{path}: unknown rules {sorted(unknown)}; known: {RULE_NAMES}")
    return Rules(defaults=defaults, models=data.get("models") or {},
                 dashboards=data.get("dashboards") or {})  # fmt: skip
