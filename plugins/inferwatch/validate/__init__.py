"""Validate a candidate warehouse with Great Expectations before it is published.

Suites live in ``expectations/*.json`` (:mod:`.suites`), severity and thresholds per model in
``expectations/policy.yml`` (:mod:`.policy`); each suite is expanded into batches — the whole
table, one model, or one version's newest day (:mod:`.scopes`) — and all of them run in one
GX checkpoint that writes Data Docs (:mod:`.checkpoint`). Suites of severity ``critical`` form
the publishing gate; the others publish and are recorded for alerting (:mod:`.results`).
"""

from inferwatch.validate.checkpoint import validate
from inferwatch.validate.results import ValidationOutcome
from inferwatch.validate.suites import GATE_SEVERITY, SuiteSpec, load_suite_specs

__all__ = ["GATE_SEVERITY", "SuiteSpec", "ValidationOutcome", "load_suite_specs", "validate"]
