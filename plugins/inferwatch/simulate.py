"""Seeded simulator of raw inference logs (contract v1), plus the truth tests compare against.

``simulate()`` writes, under a lake root (local folder or ``s3://``, through :class:`Lake`):

- ``raw/<model>/<YYYY>/<MM>/<DD>/<HH>/part-<n>.jsonl[.gz]``: ``objects_per_hour`` objects per
  model and UTC hour, about half gzip. Some objects use CRLF, two start with a UTF-8 BOM,
  some lack a final newline, some carry blank (empty or whitespace-only) lines, and exactly
  one gzip object is truncated to ~70% of its bytes (a producer that died mid-upload).
- ``reference/<model>/<version>/reference.parquet``: 5000 rows from the training (pre-drift)
  distribution: one column per input feature plus ``prediction`` and ``confidence``.
- ``registry/<model>/<version>.json``: commit, training data hash, deployment time, metrics
  (the classifiers' ``accuracy``, ``f1_macro`` and ``ece`` measured on the reference rows
  against their ground truth, beside the model card's own figures).
- ``labels/<model>/<YYYY>/<MM>/<DD>/part-0.jsonl``: delayed ground truth (docs/labels.md) for
  a share of the classifiers' events, one object per model and day of *arrival*: fraud
  chargebacks after days (median 4), churn outcomes after weeks (median 10); a label due after
  the period's end is not written (yet), so coverage falls towards the end; every fourth
  label object has one broken line (``summary.json`` → ``labels.malformed``). Labels draw from
  their own random streams: the raw logs are the same with or without them. A concept drift
  changes ``fraud_detector`` v3's ground truth (not its inputs) on some days:
  ``summary.json`` → ``concept_drift``; and the fraud model under-serves one country all along
  (``fairness_gap``).

and, into ``truth_dir`` (a local folder), what a correct reader must find: ``daily.csv``,
``hourly.csv``, ``malformed.csv``, ``objects.csv``, ``duplicates.csv`` (the ~50 events
written into two objects) and ``summary.json`` (counts, the truncated object, incidents with
their times). The truth comes from the generator's own arrays, never from parsing the files
back, so it can catch reader bugs. Line numbers follow the reader's rules: decompress (for
the truncated object, what zlib can), strip a leading BOM, split on ``\n``, drop the empty
piece after a final ``\n``, number from 1; a line empty or whitespace-only once a trailing
``\r`` is removed is blank (and counts as read).

A few behaviours worth knowing: the period is whole UTC hours (``start`` and ``end`` are
floored to the hour); ``events`` counts distinct event lines (valid and malformed, not the
duplicate copies or blank lines); per-hour memory peaks at the busiest (hour, model) chunk,
about 1.5 GB for 10M events in one day; ``seed`` must be >= 0.

Everything is a function of the arguments: each (hour, model) chunk draws from its own
``numpy`` generator seeded by ``(seed, hour, model)``, gzip headers carry ``mtime=0``, so the
same arguments give byte-identical files. Lines are built from per-column string lists (JSON
fragments) joined once per line; small value domains are formatted once and looked up, so
the hot path does no ``json.dumps`` (only the ~0.5% malformed lines go through ``json``).

What a reader should know (all of it follows the contract):

- timestamps come as ``"...Z"`` (seconds or milliseconds), ``"...+02:00"``,
  ``"...+05:30"`` (milliseconds), ``"...-05:00"`` (microseconds), epoch seconds (integer or
  with a 3-digit fraction) and epoch milliseconds (integer); the true instant is UTC.
- ~5% of lines have no ``event_id`` (dedupe by SHA-256 of the line; their ``request_id`` is
  unique by construction). ~15% of ``customer_churn`` lines use ``"model":
  "customer_churn_v1"``/``"customer_churn_v2"`` without ``model_version``.
- ~5% of lines omit ``status``: an ``error`` object then means status ``error``.
- ``fraud_detector`` writes integer ``latency_ms`` and a boolean ``prediction``;
  ``support_llm`` writes ``usage`` and a text ``prediction``; an unknown ``trace_id`` field
  appears on ~3% of lines.
- PII: ``user_id``; ``input_features.email`` (churn), a phone number in
  ``input_features.merchant_contact`` (fraud), an e-mail in ``input_features.reply_to``
  (LLM); e-mail addresses inside some ``error.message``; ``geo.ip`` (documentation ranges).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from inferwatch.lake import Lake

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
BOM = b"\xef\xbb\xbf"
GZIP_LEVEL = 1  # twice as fast as the default 6 and barely larger (15% vs 13% of the text)
MALFORMED_RATE = 0.005
NO_EVENT_ID_RATE = 0.05
TRUNCATE_KEEP = 0.7
REFERENCE_ROWS = 5000
MAX_DUPLICATES = 50
PROGRESS_EVERY_HOURS = 6

MALFORMED_KINDS = (
    "not_json",
    "json_array",
    "json_number",
    "missing_timestamp",
    "missing_model",
    "bad_timestamp",
    "confidence_out_of_range",
    "negative_latency",
    "latency_not_number",
    "negative_retry_count",
    "bad_status",
    "input_features_not_object",
)
#: Kind of the cut last line of the truncated gzip object.
TRUNCATED_LINE = "truncated_line"

#: (name, share) of the timestamp spellings; see _timestamp_texts.
TIMESTAMP_FORMS = (
    ("iso_z", 0.33),
    ("iso_z_ms", 0.20),
    ("iso_plus0200", 0.10),
    ("iso_minus0500_us", 0.10),
    ("iso_plus0530_ms", 0.05),
    ("epoch_s", 0.08),
    ("epoch_s_fraction", 0.05),
    ("epoch_ms", 0.09),
)

CLIENTS = ("acme-corp", "globex", "initech", "umbrella", "hooli")
CLIENT_SHARES = (0.46, 0.24, 0.15, 0.09, 0.06)
COUNTRIES = ("DE", "FR", "US", "GB", "ES", "NL", "BR", "IN")
COUNTRY_SHARES = (0.24, 0.14, 0.22, 0.12, 0.08, 0.07, 0.07, 0.06)
REGIONS = {
    "DE": ("BE", "BY", "HH", "NW"),
    "FR": ("IDF", "ARA", "PAC"),
    "US": ("CA", "NY", "TX", "WA"),
    "GB": ("LND", "SCT", "MAN"),
    "ES": ("MD", "CT"),
    "NL": ("NH", "ZH"),
    "BR": ("SP", "RJ"),
    "IN": ("MH", "KA", "DL"),
}
CENTROIDS = {
    "DE": (51.2, 10.4), "FR": (46.6, 2.2), "US": (39.8, -98.6), "GB": (54.0, -2.5),
    "ES": (40.4, -3.7), "NL": (52.1, 5.3), "BR": (-14.2, -51.9), "IN": (21.1, 78.0),
}  # fmt: skip
IP_PREFIXES = ("192.0.2", "198.51.100", "203.0.113")  # RFC 5737 documentation ranges
FIRST_NAMES = ("jane", "li", "omar", "sofia", "pierre", "anna", "raj", "maria", "tom", "yuki")
LAST_NAMES = ("doe", "wang", "haddad", "rossi", "martin", "schmidt", "patel", "garcia")
EMAIL_DOMAINS = ("example.com", "example.org", "example.net")

ERROR_TYPES = ("invalid_input", "timeout", "model_error")
ERROR_MESSAGES = {
    "invalid_input": ("feature 'age' must be a number", "missing required feature"),
    "timeout": ("model server did not answer within the deadline",),
    "model_error": ("CUDA error: out of memory", "predict() raised ValueError: Input contains NaN"),
}
EMAIL_MESSAGE = "unknown account {email}"  # an invalid_input message that leaks an e-mail


# ---------------------------------------------------------------- models and features
@dataclass(frozen=True)
class Feature:
    """One input feature: numeric (``decimals``) or categorical (``categories`` as JSON)."""

    name: str
    decimals: int = 0
    categories: tuple[str, ...] = ()  # JSON literals, e.g. '"basic"' or 'true'

    @property
    def categorical(self) -> bool:
        return bool(self.categories)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    versions: tuple[str, ...]
    share: float  # of all traffic
    endpoints: tuple[str, ...]
    endpoint_shares: tuple[float, ...]
    features: tuple[Feature, ...]
    labels: tuple[str, ...]  # prediction values as JSON literals
    latency_median_ms: tuple[float, ...]  # per version
    latency_sigma: float
    latency_decimals: int
    timeout_ms: float
    error_rate: float
    user_pool: int


def _json_str(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(json.dumps(v, ensure_ascii=False) for v in values)


PLANS = ("basic", "standard", "premium")
PLAN_SHARES = (0.50, 0.35, 0.15)
PLAN_SHARES_DRIFTED = (0.30, 0.35, 0.35)
CHARGES_MEAN, CHARGES_STD, CHARGES_SHIFT = 65.0, 20.0, 20.0  # drift: +1 std
MERCHANTS = ("grocery", "electronics", "travel", "fuel", "gaming", "fashion", "restaurants")
MERCHANT_SHARES = (0.28, 0.14, 0.10, 0.16, 0.07, 0.13, 0.12)
LANGUAGES = ("en", "de", "fr", "es", "pt")
CHANNELS = ("web", "mobile", "email")
INTENTS = ("billing", "password_reset", "cancel", "shipping", "other")
LLM_REPLIES = (
    "You can update your billing details under Settings → Billing.",
    "To reset your password:\n1. Open the login page\n2. Click 'Forgot password'",
    "I'm sorry to see you go. Your subscription stays active until the end of the period.",
    "Your parcel is on its way and should arrive within 2–3 business days.",
    "Could you tell me a little more about the problem?",
)

CHURN = ModelSpec(
    name="customer_churn",
    versions=("v1", "v2"),
    share=0.50,
    endpoints=("/v1/churn/predict", "/v1/churn/batch"),
    endpoint_shares=(0.85, 0.15),
    features=(
        Feature("age"),
        Feature("tenure_months"),
        Feature("monthly_charges", decimals=2),
        Feature("plan", categories=_json_str(PLANS)),
        Feature("country", categories=_json_str(COUNTRIES)),
    ),
    labels=_json_str(("stay", "churn")),
    latency_median_ms=(85.0, 70.0),
    latency_sigma=0.45,
    latency_decimals=1,
    timeout_ms=2000.0,
    error_rate=0.012,
    user_pool=40_000,
)
FRAUD = ModelSpec(
    name="fraud_detector",
    versions=("v3",),
    share=0.35,
    endpoints=("/v1/fraud/score",),
    endpoint_shares=(1.0,),
    features=(
        Feature("amount", decimals=2),
        Feature("merchant_category", categories=_json_str(MERCHANTS)),
        Feature("country", categories=_json_str(COUNTRIES)),
        Feature("card_present", categories=("false", "true")),
    ),
    labels=("false", "true"),
    latency_median_ms=(22.0,),
    latency_sigma=0.5,
    latency_decimals=0,
    timeout_ms=500.0,
    error_rate=0.006,
    user_pool=60_000,
)
LLM = ModelSpec(
    name="support_llm",
    versions=("v1",),
    share=0.15,
    endpoints=("/v1/chat",),
    endpoint_shares=(1.0,),
    features=(
        Feature("prompt_chars"),
        Feature("language", categories=_json_str(LANGUAGES)),
        Feature("channel", categories=_json_str(CHANNELS)),
        Feature("intent", categories=_json_str(INTENTS)),
    ),
    labels=_json_str(LLM_REPLIES),
    latency_median_ms=(1400.0,),
    latency_sigma=0.6,
    latency_decimals=1,
    timeout_ms=30000.0,
    error_rate=0.025,
    user_pool=15_000,
)
MODELS = (CHURN, FRAUD, LLM)


def _categorical(rng: np.random.Generator, n: int, shares: Sequence[float]) -> np.ndarray:
    return rng.choice(len(shares), size=n, p=np.asarray(shares) / np.sum(shares))


def _churn_features(rng: np.random.Generator, drifted: np.ndarray) -> dict[str, np.ndarray]:
    n = len(drifted)
    charges = rng.normal(CHARGES_MEAN, CHARGES_STD, n) + np.where(drifted, CHARGES_SHIFT, 0.0)
    plan = np.where(
        drifted, _categorical(rng, n, PLAN_SHARES_DRIFTED), _categorical(rng, n, PLAN_SHARES)
    )
    return {
        "age": np.clip(np.rint(rng.normal(42, 12, n)), 18, 90).astype(np.int64),
        "tenure_months": np.minimum(np.rint(rng.gamma(1.6, 14.0, n)), 120).astype(np.int64),
        "monthly_charges": np.round(np.clip(charges, 10.0, None), 2),
        "plan": plan,
        "country": _categorical(rng, n, COUNTRY_SHARES),
    }


def _fraud_features(rng: np.random.Generator, drifted: np.ndarray) -> dict[str, np.ndarray]:
    n = len(drifted)
    return {
        "amount": np.round(rng.lognormal(np.log(40.0), 1.1, n), 2),
        "merchant_category": _categorical(rng, n, MERCHANT_SHARES),
        "country": _categorical(rng, n, COUNTRY_SHARES),
        "card_present": (rng.random(n) < 0.55).astype(np.int64),
    }


def _llm_features(rng: np.random.Generator, drifted: np.ndarray) -> dict[str, np.ndarray]:
    n = len(drifted)
    return {
        "prompt_chars": np.rint(rng.lognormal(np.log(380.0), 0.7, n)).astype(np.int64) + 1,
        "language": _categorical(rng, n, (0.6, 0.15, 0.1, 0.1, 0.05)),
        "channel": _categorical(rng, n, (0.55, 0.35, 0.10)),
        "intent": _categorical(rng, n, (0.3, 0.2, 0.1, 0.25, 0.15)),
    }


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _predict(
    rng: np.random.Generator, spec: ModelSpec, feats: dict[str, np.ndarray], version: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Label codes (index into ``spec.labels``) and confidence in [0.5, 1], 4 decimals."""
    n = len(version)
    noise = rng.normal(0.0, 0.6, n)
    if spec is CHURN:
        plan_effect = np.array([0.35, 0.0, -0.45])[feats["plan"]]
        z = (
            -0.6
            - 0.045 * feats["tenure_months"]
            + 0.035 * (feats["monthly_charges"] - CHARGES_MEAN)
            + plan_effect
            + np.where(version == 1, -0.15, 0.0)  # v2 is a little less eager to predict churn
            + noise
        )
        p = _sigmoid(z)
        labels = (p >= 0.5).astype(np.int64)
    elif spec is FRAUD:
        merchant_effect = np.array([0.0, 0.9, 0.6, 0.1, 1.1, 0.3, 0.0])[feats["merchant_category"]]
        z = (
            -2.2
            + 0.9 * np.log(feats["amount"] / 40.0)
            + merchant_effect
            - 1.2 * feats["card_present"]
            + noise
        )
        p = _sigmoid(z)
        labels = (p >= 0.5).astype(np.int64)
    else:
        # The reply follows the intent, mostly; "other" gets the clarifying question.
        labels = np.minimum(feats["intent"], len(LLM_REPLIES) - 1)
        swap = rng.random(n) < 0.1
        labels = np.where(swap, rng.integers(0, len(LLM_REPLIES), n), labels)
        p = rng.beta(8.0, 2.0, n)
    confidence = np.round(np.maximum(p, 1.0 - p), 4)
    return labels, confidence


FEATURE_FUNCTIONS: dict[str, Callable[[np.random.Generator, np.ndarray], dict]] = {
    CHURN.name: _churn_features,
    FRAUD.name: _fraud_features,
    LLM.name: _llm_features,
}


# ---------------------------------------------------------------- the plan (global, seeded)
@dataclass(frozen=True)
class Window:
    """A run of simulated hours ``[first, first + hours)``."""

    first: int
    hours: int

    def mask(self, hour: int) -> bool:
        return self.first <= hour < self.first + self.hours


ObjectSlot = tuple[int, int, int]  # (hour index, model index, part)


@dataclass
class Plan:
    """Everything decided once for the whole period, before any line is written."""

    seed: int
    start_us: int
    hours: int
    parts: int
    counts: np.ndarray  # (hours, models): events per chunk
    canary_start_us: int
    canary_end_us: int
    drift_start_us: int
    latency_spike: Window  # customer_churn, latency x5
    error_burst: Window  # fraud_detector, ~30% errors
    usage_spike: Window  # support_llm, traffic x4
    truncated: ObjectSlot
    bom: frozenset[ObjectSlot]
    forced_malformed: dict[tuple[int, int], list[str]]
    dup_sources: dict[ObjectSlot, list[int]] = field(default_factory=dict)
    dup_targets: dict[ObjectSlot, list[int]] = field(default_factory=dict)
    dup_slots: dict[int, tuple[ObjectSlot, ObjectSlot]] = field(default_factory=dict)
    metadata: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def hour_start_us(self, hour: int) -> int:
        return self.start_us + hour * HOUR_US


LATENCY_SPIKE_FACTOR = 5.0
ERROR_BURST_RATE = 0.30
USAGE_SPIKE_FACTOR = 4.0
CANARY_SHARE, FULL_ROLLOUT_SHARE = 0.10, 0.92


def _us(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _floor_day(us: int) -> int:
    return us - us % DAY_US


def _diurnal_weights(start_us: int, hours: int) -> np.ndarray:
    """Traffic weight per hour: a daytime peak around 14:00 UTC, quieter weekends."""
    hour_us = start_us + np.arange(hours, dtype=np.int64) * HOUR_US
    hod = (hour_us // HOUR_US) % 24
    weekday = (hour_us // DAY_US + 3) % 7  # 1970-01-01 was a Thursday (3)
    daily = 1.0 + 0.8 * np.cos(2 * np.pi * (hod - 14) / 24)
    return daily * np.where(weekday >= 5, 0.7, 1.0)


def _pick_window(
    rng: np.random.Generator,
    plan_hours: int,
    start_us: int,
    frac: tuple[float, float],
    length: int,
    taken: list[Window],
) -> Window:
    """A daytime window (09:00-17:00 UTC) in the given part of the period, not overlapping."""
    length = min(length, plan_hours)
    candidates = list(range(plan_hours - length + 1))

    def free(h: int) -> bool:
        return all(h + length <= w.first or h >= w.first + w.hours for w in taken)

    def daytime(h: int) -> bool:
        hod = ((start_us // HOUR_US) + h) % 24
        return hod >= 9 and hod + length <= 17

    lo, hi = int(plan_hours * frac[0]), int(plan_hours * frac[1])
    for keep in (
        lambda h: lo <= h <= hi and daytime(h) and free(h),
        lambda h: daytime(h) and free(h),
        free,
        lambda h: True,
    ):
        chosen = [h for h in candidates if keep(h)]
        if chosen:
            return Window(int(rng.choice(chosen)), length)
    raise AssertionError("unreachable: the last filter keeps every candidate")


def _pick_cells(
    rng: np.random.Generator, counts: np.ndarray, k: int, minimum: int, exclude: set
) -> list[tuple[int, int]]:
    """``k`` (hour, model) cells drawn in proportion to traffic among cells with enough events."""
    cells = [
        (h, m)
        for h, m in zip(*np.nonzero(counts >= minimum), strict=True)
        if (int(h), int(m)) not in exclude
    ]
    if not cells:  # tiny runs: fall back to the busiest cells
        order = np.argsort(-counts, axis=None, kind="stable")
        cells = [divmod(int(i), counts.shape[1]) for i in order[: max(k, 1)]]
    weights = np.array([counts[c] for c in cells], dtype=float) + 1e-9
    idx = rng.choice(len(cells), size=k, replace=k > len(cells), p=weights / weights.sum())
    return [(int(cells[i][0]), int(cells[i][1])) for i in idx]


def _metadata(seed: int, model: str, version: str, deployed_us: int) -> dict[str, str]:
    tag = f"{seed}:{model}:{version}"
    return {
        "git_commit": hashlib.sha1(f"{tag}:commit".encode()).hexdigest(),
        "training_data_hash": "sha256:" + hashlib.sha256(f"{tag}:data".encode()).hexdigest(),
        "deployed_at": _iso(deployed_us),
    }


def _make_plan(seed: int, start_us: int, hours: int, events: int, parts: int) -> Plan:
    rng = np.random.default_rng([seed, 0])
    period_us = hours * HOUR_US
    canary_start = max(_floor_day(start_us + int(period_us * 0.45)), start_us)
    drift_start = max(_floor_day(start_us + int(period_us * 0.65)), start_us)
    taken: list[Window] = []
    for frac, length in (((0.2, 0.45), 2), ((0.45, 0.65), 1), ((0.65, 0.9), 3)):
        taken.append(_pick_window(rng, hours, start_us, frac, length, taken))
    latency_spike, usage_spike, error_burst = taken

    n_dup = min(MAX_DUPLICATES, events // 200)
    weights = np.outer(_diurnal_weights(start_us, hours), [m.share for m in MODELS])
    weights[usage_spike.first : usage_spike.first + usage_spike.hours, MODELS.index(LLM)] *= (
        USAGE_SPIKE_FACTOR
    )
    counts = rng.multinomial(events - n_dup, (weights / weights.sum()).ravel())
    counts = counts.reshape(hours, len(MODELS))

    # The truncated object sits in the middle third; nothing that must survive goes there.
    middle = slice(hours // 3, max(2 * hours // 3, hours // 3 + 1))
    mid = np.zeros_like(counts)
    mid[middle] = counts[middle]
    (t_hour, t_model) = _pick_cells(rng, mid, 1, 20 * parts, set())[0]
    truncated = (t_hour, t_model, int(rng.integers(parts)))
    bom_cells = _pick_cells(rng, counts, 2, 4 * parts, {(t_hour, t_model)})
    bom = frozenset((h, m, int(rng.integers(parts))) for h, m in bom_cells)
    forced: dict[tuple[int, int], list[str]] = defaultdict(list)
    cells = _pick_cells(rng, counts, len(MALFORMED_KINDS), 4 * parts + 13, {(t_hour, t_model)})
    for kind, cell in zip(MALFORMED_KINDS, cells, strict=True):
        forced[cell].append(kind)

    plan = Plan(
        seed=seed,
        start_us=start_us,
        hours=hours,
        parts=parts,
        counts=counts,
        canary_start_us=canary_start,
        canary_end_us=canary_start + DAY_US,
        drift_start_us=drift_start,
        latency_spike=latency_spike,
        error_burst=error_burst,
        usage_spike=usage_spike,
        truncated=truncated,
        bom=bom,
        forced_malformed=dict(forced),
    )
    _plan_duplicates(rng, plan, n_dup)
    deployed = {
        (CHURN.name, "v1"): start_us - 90 * DAY_US + 9 * HOUR_US,
        (CHURN.name, "v2"): canary_start,
        (FRAUD.name, "v3"): start_us - 30 * DAY_US + 11 * HOUR_US,
        (LLM.name, "v1"): start_us - 12 * DAY_US + 15 * HOUR_US,
    }
    plan.metadata = {key: _metadata(seed, *key, us) for key, us in deployed.items()}
    return plan


def _plan_duplicates(rng: np.random.Generator, plan: Plan, n_dup: int) -> None:
    """Each duplicate is one extra event written into two objects (a re-delivered batch).

    It is generated from its own seeded stream, so either hour can rebuild it alone.
    """
    hours, parts, n_models = plan.hours, plan.parts, len(MODELS)
    for k in range(n_dup):
        for _ in range(100):  # resample until neither copy lands in the truncated object
            h, m, p = (
                int(rng.integers(hours)),
                int(rng.integers(n_models)),
                int(rng.integers(parts)),
            )
            if parts > 1 and (hours == 1 or rng.random() < 0.3):
                target = (h, m, (p + 1 + int(rng.integers(parts - 1))) % parts)
            elif hours > 1:
                target = (h + 1 if h + 1 < hours else h - 1, m, int(rng.integers(parts)))
            else:  # one hour, one part: a mis-routed copy in another model's object
                target = (h, (m + 1) % n_models, p)
            if plan.truncated not in ((h, m, p), target):
                break
        source = (h, m, p)
        plan.dup_slots[k] = (source, target)
        plan.dup_sources.setdefault(source, []).append(k)
        plan.dup_targets.setdefault(target, []).append(k)


# ---------------------------------------------------------------- events (numpy arrays)
#: One chunk of events as parallel numpy arrays (plus ``n``, ``hour`` and a ``features`` dict):
#: true values (what the truth counts) and the choices of how each line spells them.
Events = dict[str, Any]


def _scramble(x: np.ndarray, seed: int) -> np.ndarray:
    """A bijection on uint64 (splitmix64's finaliser after a seeded xor): unique in, unique out."""
    x = x ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _generate(
    rng: np.random.Generator, spec: ModelSpec, plan: Plan, hour: int, n: int, id_space: int
) -> Events:
    """``n`` events of one model in one hour, sorted by time: values and how they are spelled."""
    t = plan.hour_start_us(hour) + np.sort(rng.integers(0, HOUR_US, n))
    ev: Events = {"n": n, "t_us": t, "hour": hour}

    p_v2 = np.where(
        t < plan.canary_start_us,
        0.0,
        np.where(t < plan.canary_end_us, CANARY_SHARE, FULL_ROLLOUT_SHARE),
    )
    ev["version"] = (
        (rng.random(n) < p_v2).astype(np.int64)
        if len(spec.versions) > 1
        else (np.zeros(n, dtype=np.int64))
    )
    ev["endpoint"] = _categorical(rng, n, spec.endpoint_shares)
    ev["client"] = _categorical(rng, n, CLIENT_SHARES)
    ev["user"] = np.where(rng.random(n) < 0.96, (rng.zipf(1.3, n) - 1) % spec.user_pool, -1)
    ev["has_eid"] = rng.random(n) >= NO_EVENT_ID_RATE
    ev["eid_bytes"] = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16)
    # Request ids scramble a unique sequence number with a bijection, so they look random yet
    # never repeat: lines without event_id rely on that to stay unique.
    seq = (np.uint64(hour) << np.uint64(28)) | (np.uint64(id_space) << np.uint64(24))
    ev["request"] = _scramble(seq | np.arange(n, dtype=np.uint64), plan.seed)
    ev["article"] = (rng.random(n) < 0.15) if spec is CHURN else np.zeros(n, dtype=bool)

    drifted = (t >= plan.drift_start_us) if spec is CHURN else np.zeros(n, dtype=bool)
    ev["features"] = FEATURE_FUNCTIONS[spec.name](rng, drifted)
    ev["pii_feature"] = rng.random(n) < (0.02 if spec is not FRAUD else 0.01)
    ev["email"] = rng.integers(0, 10**6, n)
    ev["label"], ev["confidence"] = _predict(rng, spec, ev["features"], ev["version"])
    ev["conf_present"] = rng.random(n) < (0.6 if spec is LLM else 1.0)
    _errors_and_latency(rng, spec, plan, ev)
    _context(rng, spec, ev)
    ev["ts_form"] = _categorical(rng, n, [share for _, share in TIMESTAMP_FORMS])
    return ev


def _errors_and_latency(rng: np.random.Generator, spec: ModelSpec, plan: Plan, ev: Events) -> None:
    n, hour = ev["n"], ev["hour"]
    burst = spec is FRAUD and plan.error_burst.mask(hour)
    rate = ERROR_BURST_RATE if burst else spec.error_rate
    ev["is_error"] = rng.random(n) < rate
    type_shares = (0.1, 0.5, 0.4) if burst else (0.5, 0.3, 0.2)
    ev["error_type"] = _categorical(rng, n, type_shares)
    ev["error_message"] = rng.integers(0, 2, n)
    ev["error_email"] = (ev["error_type"] == 0) & (rng.random(n) < 0.1)
    ev["status_written"] = rng.random(n) >= 0.05

    median = np.asarray(spec.latency_median_ms)[ev["version"]]
    latency = rng.lognormal(np.log(median), spec.latency_sigma)
    fast_fail = ev["is_error"] & (ev["error_type"] == 0)
    timed_out = ev["is_error"] & (ev["error_type"] == 1)
    latency = np.where(fast_fail, rng.lognormal(np.log(4.0), 0.4, n), latency)
    latency = np.where(timed_out, spec.timeout_ms + rng.uniform(0.0, 20.0, n), latency)
    if spec is CHURN and plan.latency_spike.mask(hour):
        latency = latency * LATENCY_SPIKE_FACTOR
    scale = 10**spec.latency_decimals
    ev["latency_q"] = np.rint(latency * scale).astype(np.int64)
    # q / 10**d is exactly the double a JSON parser reads from the text "q//s.q%s".
    ev["latency"] = ev["latency_q"] / scale

    retry = np.where(
        ev["is_error"], rng.integers(0, 4, n), _categorical(rng, n, (0.96, 0.03, 0.01))
    )
    ev["retry"] = np.where(rng.random(n) < 0.9, retry, -1)  # -1: retry_count/fallback absent
    ev["fallback"] = ev["is_error"] & (ev["error_type"] > 0) & (rng.random(n) < 0.4)


def _context(rng: np.random.Generator, spec: ModelSpec, ev: Events) -> None:
    """Geo, resources, lineage metadata, LLM usage and an unknown extra field."""
    n = ev["n"]
    country = ev["features"].get("country")
    ev["geo_country"] = country if country is not None else _categorical(rng, n, COUNTRY_SHARES)
    ev["geo_region"] = rng.integers(0, 12, n)
    # 0 none, 1 country/region, 2 ip only, 3 country/region + ip, 4 with lat/lon
    ev["geo_kind"] = _categorical(rng, n, (0.30, 0.52, 0.08, 0.05, 0.05))
    ev["geo_ip"] = rng.integers(0, len(IP_PREFIXES) * 254, n)
    ev["geo_jitter"] = np.rint(rng.normal(0.0, 1.5, (n, 2)) * 10_000).astype(np.int64)
    ev["res_present"] = rng.random(n) < 0.2
    ev["cpu_q"] = np.rint(rng.uniform(5.0, 95.0, n) * 10).astype(np.int64)
    ev["memory_mb"] = np.rint(rng.normal(1800.0, 300.0, n)).astype(np.int64)
    ev["gpu_q"] = np.rint(rng.uniform(20.0, 99.0, n) * 10).astype(np.int64)
    ev["gpu_memory_mb"] = np.rint(rng.normal(14_000.0, 1500.0, n)).astype(np.int64)
    ev["meta_present"] = rng.random(n) < 0.25
    ev["extra_present"] = rng.random(n) < 0.03
    ev["trace"] = np.frombuffer(rng.bytes(8 * n), dtype=np.uint8).reshape(n, 8)
    if spec is LLM:
        ev["prompt_tokens"] = ev["features"]["prompt_chars"] // 4 + rng.integers(8, 40, n)
        completion = np.rint(rng.lognormal(np.log(180.0), 0.5, n)).astype(np.int64)
        ev["completion_tokens"] = np.where(ev["is_error"], 0, completion)
        # $0.50 / 1M prompt tokens, $1.50 / 1M completion tokens, in micro-dollars
        ev["cost_micro"] = np.rint(
            ev["prompt_tokens"] * 0.5 + ev["completion_tokens"] * 1.5
        ).astype(np.int64)


# ---------------------------------------------------------------- rendering (JSON text)
def _lookup(table: Sequence[str], codes: np.ndarray) -> list[str]:
    return np.asarray(table, dtype=object)[codes].tolist()


def _format_unique(values: np.ndarray, fmt: Callable[[int], str]) -> list[str]:
    """Format each distinct value once (values repeat a lot), then look the texts up."""
    if len(values) == 0:
        return []
    uniq, inverse = np.unique(values, return_inverse=True)
    return _lookup([fmt(v) for v in uniq.tolist()], inverse.ravel())


def _decimal_formatter(decimals: int, prefix: str = "") -> Callable[[int], str]:
    """Text of the integer ``q`` scaled by 10**-decimals (q >= 0), e.g. 1224 -> '122.4'."""
    if decimals == 0:
        return lambda q: f"{prefix}{q}"
    scale = 10**decimals
    return lambda q: f"{prefix}{q // scale}.{q % scale:0{decimals}d}"


def _sparse(
    n: int, mask: np.ndarray, build: Callable[[np.ndarray], list[str]], default: str = ""
) -> list[str]:
    """A column that is ``default`` except where ``mask`` holds; ``build`` gets those indices."""
    out = np.full(n, default, dtype=object)
    idx = np.flatnonzero(mask)
    if len(idx):
        out[idx] = build(idx)
    return out.tolist()


def _where(mask: np.ndarray, texts: list[str]) -> list[str]:
    """``texts`` where ``mask`` holds, else ``""`` (vectorised: no Python call per row)."""
    return np.where(mask, np.asarray(texts, dtype=object), "").tolist()


HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_rows(data: np.ndarray, dashes: Sequence[int] = ()) -> list[str]:
    """Rows of bytes as lower-case hex strings, with '-' inserted before the given offsets."""
    n = data.shape[0]
    if n == 0:
        return []
    nibbles = np.empty((n, data.shape[1] * 2), dtype=np.uint8)
    nibbles[:, 0::2], nibbles[:, 1::2] = HEX[data >> 4], HEX[data & 15]
    if dashes:
        nibbles = np.insert(nibbles, list(dashes), ord("-"), axis=1)
    width = nibbles.shape[1]
    text = nibbles.tobytes().decode("ascii")
    return [text[i : i + width] for i in range(0, n * width, width)]


def _uuids(data: np.ndarray) -> list[str]:
    """uuid4-shaped ids from 16 random bytes a row (version nibble 4, variant 'a')."""
    data = data.copy()
    data[:, 6] = (data[:, 6] & 0x0F) | 0x40
    data[:, 8] = (data[:, 8] & 0x0F) | 0xA0
    return _hex_rows(data, dashes=(8, 12, 16, 20))


def _timestamp_texts(t_us: np.ndarray, form: np.ndarray) -> list[str]:
    """The JSON value of ``timestamp`` in each event's spelling (all denote ``t_us`` in UTC)."""
    out: list[str] = [""] * len(t_us)
    iso = {  # form index -> (offset in hours, numpy unit, suffix)
        0: (0.0, "s", "Z"), 1: (0.0, "ms", "Z"), 2: (2.0, "s", "+02:00"),
        3: (-5.0, "us", "-05:00"), 4: (5.5, "ms", "+05:30"),
    }  # fmt: skip
    for code in range(len(TIMESTAMP_FORMS)):
        idx = np.flatnonzero(form == code)
        if len(idx) == 0:
            continue
        t = t_us[idx]
        if code in iso:
            offset, unit, suffix = iso[code]
            local = (t + int(offset * HOUR_US)).astype("datetime64[us]")
            texts = [f'"{s}{suffix}"' for s in np.datetime_as_string(local, unit=unit).tolist()]
        elif TIMESTAMP_FORMS[code][0] == "epoch_s":
            texts = (t // 1_000_000).astype(str).tolist()
        elif TIMESTAMP_FORMS[code][0] == "epoch_s_fraction":
            ms = (t // 1000).tolist()
            texts = [f"{v // 1000}.{v % 1000:03d}" for v in ms]
        else:  # epoch_ms
            texts = (t // 1000).astype(str).tolist()
        for i, text in zip(idx.tolist(), texts, strict=True):
            out[i] = text
    return out


def _email(code: int) -> str:
    first = FIRST_NAMES[code % len(FIRST_NAMES)]
    last = LAST_NAMES[(code // 10) % len(LAST_NAMES)]
    domain = EMAIL_DOMAINS[(code // 80) % len(EMAIL_DOMAINS)]
    return f"{first}.{last}{code // 240 % 1000}@{domain}"


def _phone(code: int) -> str:
    return f"+1-202-555-01{code % 100:02d}"  # 555-0100..0199 are reserved as fictional


def _feature_columns(spec: ModelSpec, ev: Events) -> list[list[str]]:
    """``, "input_features": {...}`` as columns (one per feature) of the line's join."""
    columns = []
    for number, feat in enumerate(spec.features):
        prefix = (', "input_features": {' if number == 0 else ", ") + f'"{feat.name}": '
        values = ev["features"][feat.name]
        if feat.categorical:
            columns.append(_lookup([prefix + c for c in feat.categories], values))
        else:
            q = np.rint(values * 10**feat.decimals).astype(np.int64)
            columns.append(_format_unique(q, _decimal_formatter(feat.decimals, prefix)))
    pii_key, pii_value = {
        CHURN.name: ("email", _email),
        FRAUD.name: ("merchant_contact", _phone),
        LLM.name: ("reply_to", _email),
    }[spec.name]
    codes = ev["email"]
    columns.append(
        _sparse(
            ev["n"],
            ev["pii_feature"],
            lambda idx: [f', "{pii_key}": "{pii_value(c)}"}}' for c in codes[idx].tolist()],
            default="}",
        )
    )
    return columns


def _prediction_columns(spec: ModelSpec, ev: Events) -> list[list[str]]:
    """A failed request has no prediction; the LLM reports a confidence only sometimes."""
    label = _lookup([f', "prediction": {lab}' for lab in spec.labels], ev["label"])
    conf_q = np.rint(ev["confidence"] * 10_000).astype(np.int64)
    conf = _format_unique(conf_q, _decimal_formatter(4, ', "confidence": '))
    ok = ~ev["is_error"]
    return [_where(ok, label), _where(ok & ev["conf_present"], conf)]


def _status_texts(ev: Events) -> list[str]:
    def error_text(i: int) -> str:
        kind = ERROR_TYPES[ev["error_type"][i]]
        if ev["error_email"][i]:
            message = EMAIL_MESSAGE.format(email=_email(int(ev["email"][i]) + 7))
        else:
            options = ERROR_MESSAGES[kind]
            message = options[ev["error_message"][i] % len(options)]
        status = ', "status": "error"' if ev["status_written"][i] else ""
        return f'{status}, "error": {{"type": "{kind}", "message": "{message}"}}'

    texts = _lookup(["", ', "status": "ok"'], ev["status_written"].astype(np.int64))
    for i in np.flatnonzero(ev["is_error"]).tolist():
        texts[i] = error_text(i)
    return texts


def _retry_texts(ev: Events) -> list[str]:
    table = [
        f', "retry_count": {r}, "fallback": {"true" if f else "false"}'
        for r in range(4)
        for f in (0, 1)
    ] + [""]  # last: both fields absent
    codes = np.where(ev["retry"] < 0, len(table) - 1, ev["retry"] * 2 + ev["fallback"])
    return _lookup(table, codes)


PLACES = [
    f'"country": "{c}", "region": "{REGIONS[c][r % len(REGIONS[c])]}"'
    for c in COUNTRIES
    for r in range(4)
]
IPS = [f'"ip": "{prefix}.{octet}"' for prefix in IP_PREFIXES for octet in range(1, 255)]


def _geo_texts(ev: Events) -> list[str]:
    """``geo`` as country/region, a raw IP, both, or country/region with coordinates."""
    n, kind = ev["n"], ev["geo_kind"]
    place = np.asarray(PLACES, dtype=object)[ev["geo_country"] * 4 + ev["geo_region"] % 4]
    ip = np.asarray(IPS, dtype=object)[ev["geo_ip"]]
    out = np.full(n, "", dtype=object)
    out[kind == 1] = [f', "geo": {{{p}}}' for p in place[kind == 1]]
    out[kind == 2] = [f', "geo": {{{i}}}' for i in ip[kind == 2]]
    out[kind == 3] = [
        f', "geo": {{{p}, {i}}}' for p, i in zip(place[kind == 3], ip[kind == 3], strict=True)
    ]
    idx = np.flatnonzero(kind == 4)
    centroid = np.array([CENTROIDS[c] for c in COUNTRIES])[ev["geo_country"][idx]]
    coords = centroid + ev["geo_jitter"][idx] / 10_000
    out[idx] = [
        f', "geo": {{{p}, "lat": {lat:.4f}, "lon": {lon:.4f}}}'
        for p, (lat, lon) in zip(place[idx], coords.tolist(), strict=True)
    ]
    return out.tolist()


def _resource_texts(spec: ModelSpec, ev: Events) -> list[str]:
    def build(idx: np.ndarray) -> list[str]:
        rows = zip(
            ev["cpu_q"][idx].tolist(),
            ev["memory_mb"][idx].tolist(),
            ev["gpu_q"][idx].tolist(),
            ev["gpu_memory_mb"][idx].tolist(),
            strict=True,
        )
        if spec is LLM:
            return [
                f', "resources": {{"cpu_pct": {c // 10}.{c % 10}, "memory_mb": {m}, '
                f'"gpu_util_pct": {g // 10}.{g % 10}, "gpu_memory_mb": {gm}}}'
                for c, m, g, gm in rows
            ]
        return [
            f', "resources": {{"cpu_pct": {c // 10}.{c % 10}, "memory_mb": {m}}}'
            for c, m, _, _ in rows
        ]

    return _sparse(ev["n"], ev["res_present"], build)


def _usage_texts(ev: Events) -> list[str]:
    fmt = _decimal_formatter(6)
    return [
        f', "usage": {{"prompt_tokens": {p}, "completion_tokens": {c}, "cost_usd": {fmt(u)}}}'
        for p, c, u in zip(
            ev["prompt_tokens"].tolist(),
            ev["completion_tokens"].tolist(),
            ev["cost_micro"].tolist(),
            strict=True,
        )
    ]


def _model_texts(spec: ModelSpec, ev: Events) -> list[str]:
    table = [f', "model": "{spec.name}", "model_version": "{v}"' for v in spec.versions]
    table += [f', "model": "{spec.name}_{v}"' for v in spec.versions]  # the article's form
    return _lookup(table, ev["version"] + len(spec.versions) * ev["article"])


def _render(spec: ModelSpec, plan: Plan, ev: Events) -> list[str]:
    """One JSON line per event, with fields in a fixed order and optional ones left out."""
    n = ev["n"]
    if n == 0:
        return []
    uuids = _uuids(ev["eid_bytes"])
    heads = [
        f'{{"event_id": "{u}", "timestamp": ' if has else '{"timestamp": '
        for u, has in zip(uuids, ev["has_eid"].tolist(), strict=True)
    ]
    requests = [
        f', "request_id": "req-{h}"'
        for h in _hex_rows(ev["request"].astype(">u8").view(np.uint8).reshape(n, 8))
    ]
    endpoint_client = _lookup(
        [f', "endpoint": "{e}", "client_id": "{c}"' for e in spec.endpoints for c in CLIENTS],
        ev["endpoint"] * len(CLIENTS) + ev["client"],
    )
    users = _format_unique(ev["user"], lambda u: "" if u < 0 else f', "user_id": "u-{u:06d}"')
    latency = _format_unique(
        ev["latency_q"], _decimal_formatter(spec.latency_decimals, ', "latency_ms": ')
    )
    meta_table = [
        ', "model_metadata": ' + json.dumps(plan.metadata[spec.name, v]) for v in spec.versions
    ]
    meta = _sparse(n, ev["meta_present"], lambda idx: _lookup(meta_table, ev["version"][idx]))
    extra = _sparse(
        n,
        ev["extra_present"],
        lambda idx: [f', "trace_id": "{h}"' for h in _hex_rows(ev["trace"][idx])],
    )
    usage = _usage_texts(ev) if spec is LLM else [""] * n
    columns = (
        heads,
        _timestamp_texts(ev["t_us"], ev["ts_form"]),
        _model_texts(spec, ev),
        endpoint_client,
        requests,
        users,
        *_feature_columns(spec, ev),
        *_prediction_columns(spec, ev),
        latency,
        _status_texts(ev),
        _retry_texts(ev),
        _geo_texts(ev),
        _resource_texts(spec, ev),
        meta,
        usage,
        extra,
        ["}"] * n,
    )
    return list(map("".join, zip(*columns, strict=True)))


def _malform(line: str, kind: str, rng: np.random.Generator) -> str:
    """A line a reader must quarantine, made from a valid one."""
    if kind == "not_json":
        return line[: int(rng.integers(len(line) // 3, 2 * len(line) // 3))]
    obj = json.loads(line)
    if kind == "json_array":
        return json.dumps([obj], ensure_ascii=False)
    if kind == "json_number":
        return json.dumps(obj.get("latency_ms", 42))
    changes: dict[str, Any] = {
        "bad_timestamp": {"timestamp": "yesterday"},
        "confidence_out_of_range": {"confidence": 1.7},
        "negative_latency": {"latency_ms": -5},
        "latency_not_number": {"latency_ms": "fast"},
        "negative_retry_count": {"retry_count": -1},
        "bad_status": {"status": "maybe"},
        "input_features_not_object": {
            "input_features": "&".join(f"{k}={v}" for k, v in obj["input_features"].items())
        },
    }
    if kind == "missing_timestamp":
        del obj["timestamp"]
    elif kind == "missing_model":
        del obj["model"]
    else:
        obj.update(changes[kind])
    return json.dumps(obj, ensure_ascii=False)


# ---------------------------------------------------------------- objects (files in raw/)
@dataclass
class RawObject:
    """One raw object as lines, with what a reader must make of each line."""

    key: str
    lines: list[str]
    kinds: list[str]  # "valid", "blank" or a malformed kind
    events: list[int]  # index into the chunk's events; -1 for blank, malformed, duplicates
    gzip: bool
    crlf: bool
    bom: bool
    final_newline: bool

    def encode(self) -> bytes:
        sep = "\r\n" if self.crlf else "\n"
        text = sep.join(self.lines) + (sep if self.final_newline and self.lines else "")
        data = (BOM if self.bom else b"") + text.encode("utf-8")
        return gzip.compress(data, GZIP_LEVEL, mtime=0) if self.gzip else data


BLANKS = ("", " ", "   ", "\t", " \t ")


def _object_key(spec: ModelSpec, hour_us: int, part: int, gz: bool) -> str:
    stamp = datetime.fromtimestamp(hour_us / 1e6, tz=UTC).strftime("%Y/%m/%d/%H")
    return f"raw/{spec.name}/{stamp}/part-{part}.jsonl" + (".gz" if gz else "")


def _insert(obj: RawObject, rng: np.random.Generator, line: str, kind: str, last_ok: bool) -> None:
    """Insert a line at a random position (never after the last line unless ``last_ok``)."""
    pos = int(rng.integers(0, len(obj.lines) + (1 if last_ok else 0))) if obj.lines else 0
    obj.lines.insert(pos, line)
    obj.kinds.insert(pos, kind)
    obj.events.insert(pos, -1)


def _cut_survivors(obj: RawObject, cut: bytes) -> RawObject:
    """What a reader sees of a truncated gzip: the complete lines and a partial last one."""
    inflater = zlib.decompressobj(wbits=31)
    data = inflater.decompress(cut) + inflater.flush()
    if data.startswith(BOM):
        data = data[len(BOM) :]
    pieces = data.decode("utf-8", errors="replace").split("\n")
    if pieces[-1] == "":
        pieces.pop()
    complete = data.count(b"\n")
    kinds = obj.kinds[: len(pieces)]
    events = obj.events[: len(pieces)]
    if len(pieces) > complete:  # the cut last piece
        last = len(pieces) - 1
        text = pieces[last][:-1] if pieces[last].endswith("\r") else pieces[last]
        if text != obj.lines[last]:
            kinds[last] = "blank" if not text.strip() else TRUNCATED_LINE
            events[last] = -1
    return RawObject(obj.key, obj.lines[: len(pieces)], kinds, events, True, obj.crlf, False, False)


# ---------------------------------------------------------------- one hour
@dataclass
class HourResult:
    """What one simulated hour wrote, and its share of the truth."""

    objects: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    malformed: list[tuple[str, int, str]] = field(default_factory=list)
    hourly: dict[tuple[str, str, str, str], list[int]] = field(default_factory=dict)
    daily: list[tuple[str, str, str, int, int, np.ndarray]] = field(default_factory=list)
    lines: int = 0
    blank: int = 0
    gzip: int = 0
    crlf: int = 0
    no_final_newline: int = 0
    bom_keys: list[str] = field(default_factory=list)
    truncated: dict[str, Any] | None = None
    lost_events: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (event_id, object key)
    #: (model, labeled_at in µs, label line) of the hour's events that get a label in time
    labels: list[tuple[str, np.ndarray, list[str]]] = field(default_factory=list)


def _duplicate_event(plan: Plan, k: int) -> tuple[Events, str]:
    (hour, m, _), _ = plan.dup_slots[k]
    spec = MODELS[m]
    ev = _generate(np.random.default_rng([plan.seed, 2, k]), spec, plan, hour, 1, 8 + m)
    ev["has_eid"][:] = True  # a re-delivered copy is recognised by its event_id
    ev["request"] = ev["request"] + np.uint64(k)  # id space 8+m holds one event per duplicate
    return ev, _render(spec, plan, ev)[0]


def _simulate_hour(plan: Plan, hour: int, lake: Lake) -> HourResult:
    result = HourResult()
    hour_us = plan.hour_start_us(hour)
    hour_text = datetime.fromtimestamp(hour_us / 1e6, tz=UTC).strftime("%Y-%m-%d %H:00:00")
    for m, spec in enumerate(MODELS):
        rng = np.random.default_rng([plan.seed, 1, hour, m])
        n = int(plan.counts[hour, m])
        ev = _generate(rng, spec, plan, hour, n, m)
        lines = np.asarray(_render(spec, plan, ev), dtype=object)
        kinds = _choose_malformed(rng, n, plan.forced_malformed.get((hour, m), []))
        for i in np.flatnonzero(kinds != "valid").tolist():
            lines[i] = _malform(lines[i], kinds[i], rng)
        accepted = kinds == "valid"
        parts = rng.integers(0, plan.parts, n)
        parts[: min(n, plan.parts)] = np.arange(min(n, plan.parts))  # no part left empty

        truth_events = [(ev, accepted)]
        for p in range(plan.parts):
            slot = (hour, m, p)
            obj = _build_object(rng, plan, spec, slot, lines, kinds, parts)
            sources = plan.dup_sources.get(slot, [])
            for k in sources + plan.dup_targets.get(slot, []):
                dup_ev, dup_line = _duplicate_event(plan, k)
                _insert(obj, rng, dup_line, "valid", last_ok=True)
                result.duplicates.append((_uuids(dup_ev["eid_bytes"])[0], obj.key))
                if k in sources:  # the truth counts it once, in the hour it belongs to
                    truth_events.append((dup_ev, np.ones(1, dtype=bool)))
            if not obj.lines:
                continue
            _write_object(lake, plan, slot, obj, accepted, result)
        for events, ok in truth_events:
            _aggregate(spec, hour_text, events, ok, result)
        if spec.name in LABEL_DELAYS:
            result.labels.append(_labels(plan, spec, m, ev, accepted))
    return result


# ---------------------------------------------------------------- ground truth (labels/)
#: model -> (share of events that ever get a label, median delay in days, lognormal sigma)
LABEL_DELAYS = {CHURN.name: (0.6, 10.0, 0.5), FRAUD.name: (0.8, 4.0, 0.6)}
LABEL_SOURCES = {CHURN.name: ("billing", "billing"), FRAUD.name: ("cleared", "chargeback")}
#: The concept drift: fraud moves to card-present transactions. The ground truth's
#: card_present effect flips sign; inputs (and so predictions) are unchanged.
CONCEPT_DRIFT_MODEL, CONCEPT_DRIFT_VERSION = FRAUD.name, "v3"
CONCEPT_DRIFT_EFFECT = (-1.2, 1.6)  # card_present coefficient before, during
CONCEPT_DRIFT_SPAN = (0.35, 0.65)  # of the period, floored to whole days
#: A segment the fraud model under-serves throughout: fraud in one country follows a pattern
#: the model never learnt (its accuracy there is ~0.65 against ~0.93 elsewhere).
FAIRNESS_GAP_COUNTRY, FAIRNESS_GAP_EFFECT = "IN", 2.0


def _concept_drift_days(plan: Plan) -> tuple[int, int]:
    period_us = plan.hours * HOUR_US
    first = max(_floor_day(plan.start_us + int(period_us * CONCEPT_DRIFT_SPAN[0])), plan.start_us)
    end = _floor_day(plan.start_us + int(period_us * CONCEPT_DRIFT_SPAN[1]))
    return first, max(end, first)


def _true_labels(
    rng: np.random.Generator, spec: ModelSpec, feats: dict[str, np.ndarray], drifted: np.ndarray
) -> np.ndarray:
    """Ground-truth label codes: the relation the model learnt, without its noise (the truth
    is a coin flip with that probability); ``drifted`` rows follow the drifted concept."""
    if spec is CHURN:
        z = (
            -0.6
            - 0.045 * feats["tenure_months"]
            + 0.035 * (feats["monthly_charges"] - CHARGES_MEAN)
            + np.array([0.35, 0.0, -0.45])[feats["plan"]]
        )
    else:
        merchant_effect = np.array([0.0, 0.9, 0.6, 0.1, 1.1, 0.3, 0.0])[feats["merchant_category"]]
        card = np.where(drifted, CONCEPT_DRIFT_EFFECT[1], CONCEPT_DRIFT_EFFECT[0])
        gap = feats["country"] == COUNTRIES.index(FAIRNESS_GAP_COUNTRY)
        z = (
            -2.2
            + 0.9 * np.log(feats["amount"] / 40.0)
            + merchant_effect
            + card * feats["card_present"]
            + FAIRNESS_GAP_EFFECT * gap
        )
    return (rng.random(len(z)) < _sigmoid(1.5 * z)).astype(np.int64)


def _labels(
    plan: Plan, spec: ModelSpec, m: int, ev: Events, accepted: np.ndarray
) -> tuple[str, np.ndarray, list[str]]:
    """Label lines for the accepted events of one chunk that get one before the period ends."""
    rng = np.random.default_rng([plan.seed, 6, ev["hour"], m])  # never the raw logs' stream
    n = ev["n"]
    share, median_days, sigma = LABEL_DELAYS[spec.name]
    first, end = _concept_drift_days(plan)
    drifted = (
        (ev["t_us"] >= first) & (ev["t_us"] < end) & (ev["version"] == 0)
        if (spec.name, spec.versions[0]) == (CONCEPT_DRIFT_MODEL, CONCEPT_DRIFT_VERSION)
        else np.zeros(n, dtype=bool)
    )
    truth = _true_labels(rng, spec, ev["features"], drifted)
    gets_label = rng.random(n) < share
    delay = np.maximum(rng.lognormal(np.log(median_days), sigma, n) * DAY_US, HOUR_US)
    labeled_at = ev["t_us"] + delay.astype(np.int64)
    keep = accepted[:n] & gets_label & (labeled_at < plan.start_us + plan.hours * HOUR_US)
    idx = np.flatnonzero(keep)
    if not len(idx):
        return spec.name, np.zeros(0, dtype=np.int64), []
    uuids = _uuids(ev["eid_bytes"][idx])
    requests = _hex_rows(ev["request"][idx].astype(">u8").view(np.uint8).reshape(len(idx), 8))
    sources = LABEL_SOURCES[spec.name]
    lines = []
    for j, i in enumerate(idx.tolist()):
        key = (
            f'"event_id": "{uuids[j]}"'
            if ev["has_eid"][i]
            else f'"request_id": "req-{requests[j]}"'
        )
        lines.append(
            f'{{{key}, "label": {spec.labels[truth[i]]}, '
            f'"labeled_at": "{_iso(int(labeled_at[i]))}", "source": "{sources[truth[i]]}"}}'
        )
    return spec.name, labeled_at[idx], lines


#: A broken line in every fourth label object (in key order), by turns: what label producers
#: get wrong. Ingest quarantines them with a reason (fct_label_quarantine).
MALFORMED_LABEL_EVERY = 4
MALFORMED_LABELS = (
    ("missing_label", '{{"event_id": "{key}", "labeled_at": "{at}", "source": "export"}}'),
    ("bad_labeled_at", '{{"event_id": "{key}", "label": "unknown", "labeled_at": "yesterday"}}'),
    ("invalid_json", '{{"event_id": "{key}", "label": tru'),
)


def _write_labels(lake: Lake, batches: list[tuple[str, np.ndarray, list[str]]]) -> dict:
    """One object per model and UTC day of arrival, lines in arrival order; counts per model,
    and the broken lines written (object key, line number, kind)."""
    by_object: dict[str, list[tuple[int, str]]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    for model, labeled_at, lines in batches:
        for t, line in zip(labeled_at.tolist(), lines, strict=True):
            stamp = datetime.fromtimestamp(t / 1e6, tz=UTC).strftime("%Y/%m/%d")
            by_object[f"labels/{model}/{stamp}/part-0.jsonl"].append((t, line))
        counts[model] += len(lines)
    malformed = []
    for number, (key, rows) in enumerate(sorted(by_object.items())):
        rows.sort()
        lines = [line for _, line in rows]
        if number % MALFORMED_LABEL_EVERY == 0:
            kind, template = MALFORMED_LABELS[
                number // MALFORMED_LABEL_EVERY % len(MALFORMED_LABELS)
            ]
            at = len(lines) // 2
            lines.insert(at, template.format(key=f"broken-{number}", at=_iso(rows[0][0])))
            malformed.append({"object_key": key, "line_number": at + 1, "kind": kind})
        lake.write_bytes(key, ("\n".join(lines) + "\n").encode())
    return {
        "objects": len(by_object),
        "labels_by_model": dict(sorted(counts.items())),
        "malformed": malformed,
    }


def _choose_malformed(rng: np.random.Generator, n: int, forced: list[str]) -> np.ndarray:
    kinds = np.full(n, "valid", dtype=object)
    bad = np.flatnonzero(rng.random(n) < MALFORMED_RATE)
    kinds[bad] = np.asarray(MALFORMED_KINDS, dtype=object)[
        rng.integers(0, len(MALFORMED_KINDS), len(bad))
    ]
    if forced and n:
        where = rng.choice(n, size=min(n, len(forced)), replace=False)
        kinds[where] = forced[: len(where)]
    return kinds


def _build_object(
    rng: np.random.Generator,
    plan: Plan,
    spec: ModelSpec,
    slot: ObjectSlot,
    lines: np.ndarray,
    kinds: np.ndarray,
    parts: np.ndarray,
) -> RawObject:
    idx = np.flatnonzero(parts == slot[2])
    truncated, bom = slot == plan.truncated, slot in plan.bom
    gz = truncated or bool(rng.random() < 0.5)
    obj = RawObject(
        key=_object_key(spec, plan.hour_start_us(slot[0]), slot[2], gz),
        lines=lines[idx].tolist(),
        kinds=kinds[idx].tolist(),
        events=idx.tolist(),
        gzip=gz,
        crlf=bool(rng.random() < 0.12),
        bom=bom and not truncated,
        final_newline=truncated or bool(rng.random() < 0.92),
    )
    if obj.lines and rng.random() < 0.25:  # blank lines, never as the very last line
        for _ in range(1 + int(rng.poisson(1.0))):
            _insert(obj, rng, BLANKS[int(rng.integers(len(BLANKS)))], "blank", last_ok=False)
    return obj


def _write_object(
    lake: Lake,
    plan: Plan,
    slot: ObjectSlot,
    obj: RawObject,
    accepted: np.ndarray,
    result: HourResult,
) -> None:
    data = obj.encode()
    if slot == plan.truncated:
        full = len(data)
        data = data[: int(full * TRUNCATE_KEEP)]
        seen = _cut_survivors(obj, data)
        kept = {i for i in seen.events if i >= 0}
        lost = [i for i in obj.events if i >= 0 and i not in kept]  # events cut off
        accepted[lost] = False
        result.lost_events += len(lost)
        result.truncated = {
            "key": obj.key,
            "bytes_full": full,
            "bytes_written": len(data),
            "lines_full": len(obj.lines),
            "lines_read": len(seen.lines),
            "last_line_partial": seen.kinds[-1] == TRUNCATED_LINE if seen.kinds else False,
        }
        obj = seen
    lake.write_bytes(obj.key, data)

    blank, valid = obj.kinds.count("blank"), obj.kinds.count("valid")
    result.objects.append((obj.key, len(obj.lines), blank, len(obj.lines) - blank - valid, valid))
    result.malformed += [
        (obj.key, number, kind)
        for number, kind in enumerate(obj.kinds, start=1)
        if kind not in ("valid", "blank")
    ]
    result.lines += len(obj.lines)
    result.blank += blank
    result.gzip += obj.gzip
    result.crlf += obj.crlf
    result.no_final_newline += not obj.final_newline
    if obj.bom:
        result.bom_keys.append(obj.key)


def _aggregate(
    spec: ModelSpec, hour_text: str, ev: Events, accepted: np.ndarray, result: HourResult
) -> None:
    """Requests and errors per version x endpoint for the hour; latencies kept for the day."""
    day = hour_text[:10]
    for v, version in enumerate(spec.versions):
        in_version = accepted & (ev["version"] == v)
        for e, endpoint in enumerate(spec.endpoints):
            sel = in_version & (ev["endpoint"] == e)
            if sel.any():
                counts = result.hourly.setdefault((spec.name, version, endpoint, hour_text), [0, 0])
                counts[0] += int(sel.sum())
                counts[1] += int(ev["is_error"][sel].sum())
        if in_version.any():
            result.daily.append(
                (
                    spec.name,
                    version,
                    day,
                    int(in_version.sum()),
                    int(ev["is_error"][in_version].sum()),
                    ev["latency"][in_version],
                )
            )


# ---------------------------------------------------------------- reference and registry
TRAINING_METRICS = {
    (CHURN.name, "v1"): {"auc": 0.842, "f1": 0.611, "log_loss": 0.398},
    (CHURN.name, "v2"): {"auc": 0.871, "f1": 0.648, "log_loss": 0.367},
    (FRAUD.name, "v3"): {"auc": 0.953, "precision": 0.81, "recall": 0.72},
    (LLM.name, "v1"): {"eval_win_rate": 0.62, "toxicity_rate": 0.002},
}
PARAMS = {
    CHURN.name: {"algorithm": "xgboost", "max_depth": 6, "n_estimators": 400, "eta": 0.05},
    FRAUD.name: {"algorithm": "lightgbm", "num_leaves": 63, "n_estimators": 800},
    LLM.name: {"base_model": "llama-3.1-8b-instruct", "temperature": 0.2, "max_tokens": 512},
}


def _decoded(literals: Sequence[str]) -> np.ndarray:
    """JSON literals as the Python values they denote, ready for fancy indexing."""
    return np.asarray([json.loads(v) for v in literals], dtype=object)


def _reference_table(spec: ModelSpec, v: int, seed: int) -> pa.Table:
    """Rows from the training distribution (before any drift), as the model saw them."""
    rng = np.random.default_rng([seed, 3, MODELS.index(spec), v])
    feats = FEATURE_FUNCTIONS[spec.name](rng, np.zeros(REFERENCE_ROWS, dtype=bool))
    labels, confidence = _predict(rng, spec, feats, np.full(REFERENCE_ROWS, v))
    columns: dict[str, Any] = {}
    for feat in spec.features:
        values = feats[feat.name]
        if feat.categorical:
            columns[feat.name] = _decoded(feat.categories)[values].tolist()
        else:
            columns[feat.name] = values
    columns["prediction"] = _decoded(spec.labels)[labels].tolist()
    columns["confidence"] = confidence
    return pa.table(columns)


def _holdout_metrics(spec: ModelSpec, v: int, seed: int) -> dict[str, float]:
    """Accuracy, macro F1 and calibration error (10 equal-width confidence bins) of the
    version's predictions on its reference rows against their ground truth: the figures the
    production metrics are compared with (mart_model_performance_daily). Empty for a model
    without labels. Its own random stream: the reference file is unchanged."""
    if spec.name not in LABEL_DELAYS:
        return {}
    rng = np.random.default_rng([seed, 3, MODELS.index(spec), v])
    feats = FEATURE_FUNCTIONS[spec.name](rng, np.zeros(REFERENCE_ROWS, dtype=bool))
    predicted, confidence = _predict(rng, spec, feats, np.full(REFERENCE_ROWS, v))
    truth = _true_labels(
        np.random.default_rng([seed, 5, MODELS.index(spec), v]), spec, feats,
        np.zeros(REFERENCE_ROWS, dtype=bool),
    )  # fmt: skip
    f1 = []
    for code in range(len(spec.labels)):
        tp = int(np.sum((predicted == code) & (truth == code)))
        fp = int(np.sum((predicted == code) & (truth != code)))
        fn = int(np.sum((predicted != code) & (truth == code)))
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    bins = np.minimum((confidence * 10).astype(np.int64), 9)
    correct = predicted == truth
    ece = (
        sum(
            abs(correct[bins == b].mean() - confidence[bins == b].mean()) * np.sum(bins == b)
            for b in range(10)
            if np.any(bins == b)
        )
        / REFERENCE_ROWS
    )
    return {
        "accuracy": round(float(correct.mean()), 4),
        "f1_macro": round(float(np.mean(f1)), 4),
        "ece": round(float(ece), 4),
        "holdout_rows": REFERENCE_ROWS,
    }


def _write_model_assets(lake: Lake, plan: Plan) -> None:
    for spec in MODELS:
        for v, version in enumerate(spec.versions):
            buf = io.BytesIO()
            pq.write_table(_reference_table(spec, v, plan.seed), buf)
            lake.write_bytes(f"reference/{spec.name}/{version}/reference.parquet", buf.getvalue())
            entry = {
                "model": spec.name,
                "version": version,
                **plan.metadata[spec.name, version],
                "training_metrics": {
                    **TRAINING_METRICS[spec.name, version],
                    **_holdout_metrics(spec, v, plan.seed),
                },
                "params": PARAMS[spec.name],
            }
            text = json.dumps(entry, indent=2) + "\n"
            lake.write_bytes(f"registry/{spec.name}/{version}.json", text.encode())


# ---------------------------------------------------------------- truth files
class _Truth:
    """Accumulates the truth hour by hour; a day's latencies are dropped once it is written."""

    def __init__(self) -> None:
        self.objects: list[tuple] = []
        self.malformed: list[tuple] = []
        self.hourly: list[tuple] = []
        self.duplicates: list[tuple] = []
        self.daily: list[tuple] = []
        self._open_days: dict[tuple[str, str, str], list] = {}

    def add(self, result: HourResult) -> None:
        self.objects += result.objects
        self.malformed += result.malformed
        self.duplicates += result.duplicates
        self.hourly += [
            (*key, requests, errors) for key, (requests, errors) in result.hourly.items()
        ]
        for model, version, day, requests, errors, latencies in result.daily:
            acc = self._open_days.setdefault((model, version, day), [0, 0, []])
            acc[0] += requests
            acc[1] += errors
            acc[2].append(latencies)

    def close_days_before(self, day: str | None) -> None:
        for key in sorted(k for k in self._open_days if day is None or k[2] < day):
            requests, errors, latencies = self._open_days.pop(key)
            p95 = float(np.percentile(np.concatenate(latencies), 95))
            self.daily.append((*key, requests, errors, p95))

    def write(self, truth_dir: Path) -> None:
        _write_csv(
            truth_dir / "daily.csv",
            ("model", "model_version", "day", "requests", "errors", "latency_p95_ms"),
            sorted(self.daily),
        )
        _write_csv(
            truth_dir / "hourly.csv",
            ("model", "model_version", "endpoint", "hour", "requests", "errors"),
            sorted(self.hourly),
        )
        _write_csv(
            truth_dir / "malformed.csv",
            ("object_key", "line_number", "kind"),
            sorted(self.malformed),
        )
        _write_csv(
            truth_dir / "objects.csv",
            ("object_key", "lines_read", "lines_blank", "lines_malformed", "lines_valid"),
            sorted(self.objects),
        )
        # Each re-delivered event: one row per object it was written to (always two).
        _write_csv(
            truth_dir / "duplicates.csv", ("event_id", "object_key"), sorted(self.duplicates)
        )


def _write_csv(path: Path, header: Sequence[str], rows: list[tuple]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


# ---------------------------------------------------------------- entry point
def _period(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """Whole UTC hours; the default is the two weeks up to the previous full hour."""
    for value in (start, end):
        if value is not None and value.tzinfo is None:
            raise ValueError("start and end must be timezone-aware (UTC) datetimes")
    if end is None:
        end = datetime.now(UTC)
    end = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    start = (end - timedelta(days=14)) if start is None else start.astimezone(UTC)
    start = start.replace(minute=0, second=0, microsecond=0)
    if start >= end:
        raise ValueError(f"empty period: start {start} is not before end {end}")
    return start, end


def simulate(
    lake_url: str,
    *,
    truth_dir: Path,
    start: datetime | None = None,
    end: datetime | None = None,
    events: int = 200_000,
    seed: int = 42,
    objects_per_hour: int = 1,
    storage_options: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Write simulated raw logs, references and registry entries into the lake; return a summary.

    ``events`` distinct event lines (valid and malformed) are spread over ``[start, end)``;
    ``objects_per_hour`` raw objects are written per model and hour. The truth (CSV files and
    ``summary.json``) goes to the local folder ``truth_dir``.
    """
    if events < 0 or objects_per_hour < 1:
        raise ValueError("events must be >= 0 and objects_per_hour >= 1")
    start, end = _period(start, end)
    hours = int((end - start) / timedelta(hours=1))
    lake = Lake(lake_url, storage_options)
    truth_dir = Path(truth_dir)
    truth_dir.mkdir(parents=True, exist_ok=True)
    plan = _make_plan(seed, _us(start), hours, events, objects_per_hour)
    _write_model_assets(lake, plan)

    truth, totals = _Truth(), HourResult()
    for hour in range(hours):
        result = _simulate_hour(plan, hour, lake)
        truth.add(result)
        _add_totals(totals, result)
        totals.labels += result.labels
        truth.close_days_before(_iso(plan.hour_start_us(hour + 1))[:10])
        if progress and ((hour + 1) % PROGRESS_EVERY_HOURS == 0 or hour + 1 == hours):
            progress(
                f"simulated {hour + 1}/{hours} hours: {len(totals.objects)} objects, "
                f"{totals.lines} lines"
            )
    truth.close_days_before(None)
    truth.write(truth_dir)
    summary = _summary(plan, start, end, events, truth, totals)
    summary["labels"] = _write_labels(lake, totals.labels)
    first, last = _concept_drift_days(plan)
    summary["concept_drift"] = {
        "model": CONCEPT_DRIFT_MODEL,
        "model_version": CONCEPT_DRIFT_VERSION,
        "start": _iso(first),
        "end": _iso(last),
        "inputs_changed": False,
        "ground_truth": {
            "feature": "card_present",
            "effect_before": CONCEPT_DRIFT_EFFECT[0],
            "effect_during": CONCEPT_DRIFT_EFFECT[1],
        },
    }
    summary["fairness_gap"] = {
        "model": FRAUD.name,
        "segment_feature": "country",
        "segment": FAIRNESS_GAP_COUNTRY,
        "ground_truth_effect": FAIRNESS_GAP_EFFECT,
    }
    (truth_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _add_totals(totals: HourResult, result: HourResult) -> None:
    totals.objects += result.objects
    for name in ("lines", "blank", "gzip", "crlf", "no_final_newline", "lost_events"):
        setattr(totals, name, getattr(totals, name) + getattr(result, name))
    totals.bom_keys += result.bom_keys
    totals.truncated = totals.truncated or result.truncated


def _summary(
    plan: Plan, start: datetime, end: datetime, events: int, truth: _Truth, totals: HourResult
) -> dict:
    by_kind: dict[str, int] = defaultdict(int)
    for _, _, kind in truth.malformed:
        by_kind[kind] += 1

    def window(kind: str, spec: ModelSpec, w: Window, **extra: Any) -> dict:
        first = plan.hour_start_us(w.first)
        return {
            "kind": kind,
            "model": spec.name,
            "start": _iso(first),
            "end": _iso(first + w.hours * HOUR_US),
            **extra,
        }

    churn_v2 = plan.metadata[CHURN.name, "v2"]
    return {
        "seed": plan.seed,
        "period": {"start": _iso(_us(start)), "end": _iso(_us(end)), "hours": plan.hours},
        "objects_per_hour": plan.parts,
        "events_generated": events,
        "events_accepted": sum(row[3] for row in truth.daily),
        "events_lost_in_truncated_object": totals.lost_events,
        "objects": len(totals.objects),
        "objects_gzip": totals.gzip,
        "objects_crlf": totals.crlf,
        "objects_without_final_newline": totals.no_final_newline,
        "objects_with_bom": sorted(totals.bom_keys),
        "truncated_object": totals.truncated,
        "lines_read": totals.lines,
        "lines_blank": totals.blank,
        "malformed_lines": len(truth.malformed),
        "malformed_by_kind": dict(sorted(by_kind.items())),
        "duplicates": len({event_id for event_id, _ in truth.duplicates}),
        "models": {
            spec.name: {"versions": list(spec.versions), "endpoints": list(spec.endpoints)}
            for spec in MODELS
        },
        "timestamp_forms": [name for name, _ in TIMESTAMP_FORMS],
        "deployments": [
            {
                "model": CHURN.name,
                "version": "v2",
                "deployed_at": churn_v2["deployed_at"],
                "canary_start": _iso(plan.canary_start_us),
                "canary_end": _iso(plan.canary_end_us),
                "canary_share": CANARY_SHARE,
                "share_after_canary": FULL_ROLLOUT_SHARE,
            }
        ],
        "incidents": [
            window(
                "error_burst",
                FRAUD,
                plan.error_burst,
                model_version="v3",
                error_rate=ERROR_BURST_RATE,
            ),
            window("latency_spike", CHURN, plan.latency_spike, factor=LATENCY_SPIKE_FACTOR),
            window("usage_spike", LLM, plan.usage_spike, factor=USAGE_SPIKE_FACTOR),
            {
                "kind": "feature_drift",
                "model": CHURN.name,
                "start": _iso(plan.drift_start_us),
                "end": _iso(_us(end)),
                "numeric": {
                    "feature": "monthly_charges",
                    "mean_before": CHARGES_MEAN,
                    "mean_after": CHARGES_MEAN + CHARGES_SHIFT,
                    "std": CHARGES_STD,
                },
                "categorical": {
                    "feature": "plan",
                    "shares_before": dict(zip(PLANS, PLAN_SHARES, strict=True)),
                    "shares_after": dict(zip(PLANS, PLAN_SHARES_DRIFTED, strict=True)),
                },
            },
        ],
    }
