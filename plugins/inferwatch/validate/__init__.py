"""Validate a candidate warehouse with Great Expectations before it is published.

Suites live in ``expectations/*.json`` (:mod:`.suites`), severity and thresholds per model in
``expectations/policy.yml`` (:mod:`.policy`); each suite is expanded into batches — the whole
table, one model, or one version's newest day (:mod:`.scopes`) — and all of them run in one
GX checkpoint that writes Data Docs (:mod:`.checkpoint`). Suites of severity ``critical`` form
the publishing gate; the others publish and are recorded for alerting (:mod:`.results`).
"""

import logging

# GX logs ~60 "Skipping registering function ..." lines at INFO while it is imported: noise in
# every validate task log. Set before the import below.
logging.getLogger("great_expectations._docs_decorators").setLevel(logging.WARNING)

from inferwatch.validate.checkpoint import validate  # noqa: E402
from inferwatch.validate.results import ValidationOutcome  # noqa: E402
from inferwatch.validate.suites import GATE_SEVERITY, SuiteSpec, load_suite_specs  # noqa: E402

__all__ = ["GATE_SEVERITY", "SuiteSpec", "ValidationOutcome", "load_suite_specs", "validate"]
