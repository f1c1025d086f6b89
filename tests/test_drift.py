"""Drift marts against a plain NumPy/SciPy computation from the simulator's raw events.

The expected figures come from `raw_reader` (zlib + json) and the reference Parquet files read
with pyarrow, binned by NumPy: deciles and percentiles of the reference (``np.quantile``,
linear), right-closed bins (``np.searchsorted(side="left")``), shares floored at 1e-4 for PSI;
KS from ``scipy.stats.ks_2samp`` on the raw samples; Jensen–Shannon from
``scipy.spatial.distance.jensenshannon(base=2)``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from conftest import settings_for
from inferwatch import pipeline, transform
from inferwatch.lake import Lake
from inferwatch.simulate import simulate
from raw_reader import reread

FLOOR = 1e-4
TOP_K = 20  # var drift_categorical_top_k
KS_BINS = 100  # var drift_ks_bins
OUTPUTS = ("prediction", "confidence")
UNSEEN, OTHER = "__unseen__", "__other__"
#: A day's categorical drift must reach `drift` (not only `warning`) from this many values on:
#: the injected plan shift has PSI 0.27, just above 0.25, and small days scatter around it.
LARGE_SAMPLE = 2000


# ---------------------------------------------------------------- the plain computation
def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_text(value) -> str:
    """A categorical value as the marts name it: strings as they are, other scalars as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def version_key(version: str) -> tuple:
    return tuple(int(digits) for digits in re.findall(r"\d+", version)), version


def read_references(lake: Path) -> dict[tuple[str, str], dict[str, list]]:
    """(model, version) -> column -> non-null values, from every Parquet and CSV reference."""
    references: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for path in sorted((lake / "reference").glob("*/*/*")):
        if path.suffix == ".parquet":
            columns = pq.read_table(path).to_pydict()
        elif path.suffix == ".csv":
            columns = pacsv.read_csv(path).to_pydict()
        else:
            continue
        model, version = path.parts[-3], path.parts[-2]
        for name, values in columns.items():
            references[model, version][name].extend(v for v in values if v is not None)
    return references


def reference_for(model: str, version: str, references) -> str | None:
    """Its own reference, else the newest earlier version's (by the numbers in the name)."""
    earlier = [
        ref
        for (name, ref) in references
        if name == model and version_key(ref) <= version_key(version)
    ]
    return max(earlier, key=version_key) if earlier else None


def production_values(lake: Path) -> dict[tuple[str, str, str, date], list]:
    """(model, version, feature, day) -> the values of every accepted, de-duplicated event."""
    values: dict[tuple[str, str, str, date], list] = defaultdict(list)
    for event in reread(lake).events.values():
        obj, day = event["obj"], event["when"].date()
        key = event["name"], event["version"]
        for name, value in (obj.get("input_features") or {}).items():
            if name not in OUTPUTS and value is not None:
                values[(*key, name, day)].append(value)
        for name in OUTPUTS:
            if obj.get(name) is not None:
                values[(*key, name, day)].append(obj[name])
    return values


def right_closed_counts(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Counts in (-inf, e1], (e1, e2], ..., (en, inf)."""
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)


def psi_of(production: np.ndarray, reference: np.ndarray) -> float:
    p, q = np.maximum(production, FLOOR), np.maximum(reference, FLOOR)
    return float(np.sum((p - q) * np.log(p / q)))


@dataclass
class Expected:
    feature_type: str
    production_count: int
    reference_count: int
    psi: float
    counts: dict[str, list[int]] = field(default_factory=dict)  # bin kind -> counts in order
    ks: float | None = None
    ks_resolution: float | None = None
    js_distance: float | None = None


def expected_figures(lake: Path) -> dict[tuple[str, str, str, date], Expected]:
    references = read_references(lake)
    out = {}
    for (model, version, feature, day), raw in production_values(lake).items():
        ref_version = reference_for(model, version, references)
        if ref_version is None or feature not in references[model, ref_version]:
            continue
        ref = references[model, ref_version][feature]
        if all(is_number(v) for v in ref):
            x = np.asarray([v for v in raw if is_number(v)], dtype=float)
            if len(x) == 0:
                continue
            r = np.asarray(ref, dtype=float)
            deciles = np.unique(np.quantile(r, np.arange(1, 10) / 10))
            fine = np.unique(np.quantile(r, np.arange(KS_BINS + 1) / KS_BINS))
            counts = {"psi": right_closed_counts(deciles, x), "ks": right_closed_counts(fine, x)}
            psi = psi_of(counts["psi"] / len(x), right_closed_counts(deciles, r) / len(r))
            out[model, version, feature, day] = Expected(
                "numeric", len(x), len(r), psi, {k: c.tolist() for k, c in counts.items()},
                ks=float(ks_2samp(x, r).statistic),
                ks_resolution=float(np.max(right_closed_counts(fine, r)) / len(r)),
            )  # fmt: skip
        else:
            ranked = sorted(Counter(map(as_text, ref)).items(), key=lambda kv: (-kv[1], kv[0]))
            bins = {category: i for i, (category, _) in enumerate(ranked[:TOP_K], start=1)}
            bins |= {category: TOP_K + 1 for category, _ in ranked[TOP_K:]}
            size = 1 + min(len(ranked), TOP_K) + (len(ranked) > TOP_K)  # unseen, top-k, other
            p = np.bincount([bins.get(as_text(v), 0) for v in raw], minlength=size)
            q = np.bincount([bins[as_text(v)] for v in ref], minlength=size)
            p_share, q_share = p / p.sum(), q / q.sum()
            out[model, version, feature, day] = Expected(
                "categorical", int(p.sum()), len(ref), psi_of(p_share, q_share),
                {"category": p.tolist()},
                js_distance=float(jensenshannon(p_share, q_share, base=2)),
            )  # fmt: skip
    return out


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def expected(sim_lake) -> dict:
    return expected_figures(sim_lake[0])


@pytest.fixture(scope="module")
def drift_rows(pipeline_run) -> dict:
    with pipeline_run.serving() as con:
        frame = con.sql("select * from mart_drift_daily").df()
    return {
        (r.model, r.model_version, r.feature, r.day.date() if hasattr(r.day, "date") else r.day): r
        for r in frame.itertuples(index=False)
    }


@pytest.fixture(scope="module")
def distribution(pipeline_run) -> dict:
    with pipeline_run.serving() as con:
        rows = con.sql("""
            select model, model_version, feature, day, bin_kind,
                   list(production_count order by bin_index) as counts
            from mart_feature_distribution_daily group by all
        """).fetchall()
    return {(m, v, f, d, kind): counts for m, v, f, d, kind, counts in rows}


def feature_drift(truth_dir: Path) -> tuple[dict, datetime, datetime]:
    summary = json.loads((truth_dir / "summary.json").read_text())
    incident = next(i for i in summary["incidents"] if i["kind"] == "feature_drift")
    start, end = (
        datetime.fromisoformat(incident[k].replace("Z", "+00:00")) for k in ("start", "end")
    )
    return incident, start, end


def whole_days(start: datetime, end: datetime) -> set[date]:
    """UTC days lying entirely inside [start, end)."""
    first = start.date() if start.time() == datetime.min.time() else start.date() + timedelta(1)
    return {first + timedelta(n) for n in range((end.date() - first).days)}


# ---------------------------------------------------------------- figures
def test_drift_rows_are_the_expected_groups(expected, drift_rows):
    assert set(drift_rows) == set(expected)
    assert {k[0] for k in expected} == {"customer_churn", "fraud_detector", "support_llm"}
    for key, want in expected.items():
        got = drift_rows[key]
        assert (got.feature_type, got.production_count, got.reference_count) == (
            want.feature_type, want.production_count, want.reference_count,
        ), key  # fmt: skip
        assert got.reference_version == key[1] and not got.uses_fallback_reference, key


def test_bin_counts_equal_numpy(expected, distribution):
    compared = 0
    for (model, version, feature, day), want in expected.items():
        for kind, counts in want.counts.items():
            assert distribution[model, version, feature, day, kind] == counts, (
                model, version, feature, day, kind,
            )  # fmt: skip
            compared += 1
    assert compared == len(distribution)


def test_psi_equals_numpy(expected, drift_rows, record_property):
    deviation = max(
        abs(drift_rows[k].psi - e.psi) / max(abs(e.psi), 1e-300) for k, e in expected.items()
    )
    record_property("psi_max_relative_deviation", deviation)
    print(f"\nPSI: largest relative deviation from NumPy {deviation:.3g} over {len(expected)} rows")
    for key, want in expected.items():
        assert math.isclose(drift_rows[key].psi, want.psi, rel_tol=1e-9, abs_tol=1e-15), key


def test_ks_within_bin_bound_of_scipy(expected, drift_rows, record_property):
    numeric = {k: e for k, e in expected.items() if e.feature_type == "numeric"}
    shortfall = {k: e.ks - drift_rows[k].ks for k, e in numeric.items()}
    worst = max(shortfall, key=shortfall.get)
    record_property("ks_max_shortfall", shortfall[worst])
    print(
        f"\nKS: binned statistic short of scipy by at most {shortfall[worst]:.4f} "
        f"({worst}, bound there {numeric[worst].ks_resolution:.4f}); "
        f"bounds range {min(e.ks_resolution for e in numeric.values()):.4f}"
        f"..{max(e.ks_resolution for e in numeric.values()):.4f}"
    )
    for key, want in numeric.items():
        got = drift_rows[key]
        assert math.isclose(got.ks_resolution, want.ks_resolution, rel_tol=1e-12), key
        # the binned statistic never exceeds the exact one, and misses it by at most the bound
        assert -1e-12 <= want.ks - got.ks <= got.ks_resolution + 1e-12, (key, want.ks, got.ks)
        assert math.isnan(got.js_distance)


def test_js_equals_scipy(expected, drift_rows, record_property):
    categorical = {k: e for k, e in expected.items() if e.feature_type == "categorical"}
    deviation = max(abs(drift_rows[k].js_distance - e.js_distance) for k, e in categorical.items())
    record_property("js_max_abs_deviation", deviation)
    print(f"\nJS: largest deviation from scipy {deviation:.3g} over {len(categorical)} rows")
    for key, want in categorical.items():
        got = drift_rows[key]
        assert math.isclose(got.js_distance, want.js_distance, rel_tol=1e-9, abs_tol=1e-12), key
        assert math.isnan(got.ks)


# ---------------------------------------------------------------- verdicts
def test_injected_drift_is_detected(pipeline_run, drift_rows):
    incident, start, end = feature_drift(pipeline_run.truth_dir)
    numeric, categorical = incident["numeric"]["feature"], incident["categorical"]["feature"]
    days = whole_days(start, end)
    assert days
    drifted = {k: r for k, r in drift_rows.items() if k[0] == incident["model"] and k[3] in days}
    for feature in (numeric, categorical):
        assert {k[3] for k in drifted if k[2] == feature} == days, feature
    for key, row in drifted.items():
        if key[2] == numeric:
            assert row.status == "drift" and row.ks_warning, (key, row.psi, row.ks)
        if key[2] == categorical:
            assert row.status in ("warning", "drift") and row.js_warning, (key, row.psi)
            if row.production_count >= LARGE_SAMPLE:
                assert row.status == "drift", (key, row.psi)
    before = [r for k, r in drift_rows.items() if k[0] == incident["model"] and k[3] < start.date()]
    assert before and all(
        r.status == "stable" for r in before if r.feature in (numeric, categorical)
    )


def test_clean_features_stay_stable(pipeline_run, drift_rows, record_property):
    incident, start, end = feature_drift(pipeline_run.truth_dir)
    affected = {incident["numeric"]["feature"], incident["categorical"]["feature"], *OUTPUTS}
    first, last = start.date(), end.date()
    clean = [
        r for (model, _, feature, day), r in drift_rows.items()
        if not (model == incident["model"] and feature in affected and first <= day < last)
    ]  # fmt: skip
    false_status = [r for r in clean if r.status != "stable"]
    false_flags = [r for r in clean if r.ks_warning or r.js_warning]
    record_property("clean_rows", len(clean))
    record_property("false_status_warnings", len(false_status))
    record_property("false_ks_js_warnings", len(false_flags))
    print(
        f"\nclean rows {len(clean)}: {len(false_status)} not stable, "
        f"{len(false_flags)} with a KS/JS warning"
    )
    assert len(clean) > 200
    assert len(false_status) <= 0.01 * len(clean), [
        (r.model, r.feature, r.day) for r in false_status
    ]
    assert len(false_flags) <= 0.02 * len(clean), [(r.model, r.feature, r.day) for r in false_flags]


# ---------------------------------------------------------------- fallback, end to end
DRIFT_MARTS = ("mart_feature_distribution_daily", "mart_drift_daily")


def drift_marts(settings) -> dict[str, list]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return {
            name: con.sql(
                f"select columns(* exclude (source_watermark)) from {name} order by all"
                if name == DRIFT_MARTS[0]
                else f"select * from {name} order by all"
            ).fetchall()
            for name in DRIFT_MARTS
        }


def references_used(settings) -> set[tuple]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return set(
            con.sql(
                "select distinct model, model_version, reference_version, uses_fallback_reference "
                "from mart_drift_daily"
            ).fetchall()
        )


def test_reference_fallback_and_late_reference(tmp_path_factory):
    """Without its own reference churn v2 is compared with v1's; when v2's arrives later, the
    next incremental build re-bins v2's days against it and equals a full rebuild."""
    root = tmp_path_factory.mktemp("drift-fallback")
    lake = Lake(str(root / "lake"))
    simulate(
        lake.url, truth_dir=root / "truth", events=4000, seed=5,
        start=datetime(2025, 5, 1, tzinfo=UTC), end=datetime(2025, 5, 4, tzinfo=UTC),
    )  # fmt: skip
    own = root / "lake" / "reference" / "customer_churn" / "v2"
    shutil.move(own, root / "v2-reference")
    settings = settings_for(lake.url, root / "incremental")
    pipeline.ingest(settings, lake, pipeline.discover(lake), "fallback")
    build_drift(settings, lake)
    used = references_used(settings)
    assert ("customer_churn", "v2", "v1", True) in used
    assert ("customer_churn", "v1", "v1", False) in used

    shutil.move(root / "v2-reference", own)
    build_drift(settings, lake)
    used = references_used(settings)
    assert ("customer_churn", "v2", "v2", False) in used
    assert not any(fallback for *_, fallback in used)
    incremental = drift_marts(settings)

    # the same bronze rebuilt whole, in the same data dir (dbt's parse reused); its data tests
    # passed on the same rows in the builds above
    build_drift(settings, lake, full_refresh=True, data_tests=False)
    rebuilt = drift_marts(settings)
    for name in DRIFT_MARTS:
        assert len(incremental[name]) > 0, name
        assert incremental[name] == rebuilt[name], name


def build_drift(settings, lake: Lake, **options) -> None:
    """``dbt build`` of the drift marts, what they read and their data tests (the rest of the
    project has no part in which reference a day is binned against)."""
    transform.build(settings, lake, select=" ".join(f"+{name}" for name in DRIFT_MARTS), **options)
