"""Bring a team's own model onto the dashboards (docs/onboarding.md): its registry entry and its
training reference, written into the lake where and as the pipeline reads them, and a check
that reads both back and says what the next run will do with them.

The formats are the pipeline's own, nothing new: ``registry/<model>/<version>.json`` is the
JSON document ``stg_lake__registry`` reads (``model``, ``version``, ``git_commit``,
``training_data_hash``, ``deployed_at``, ``training_metrics``, ``params``; ``task`` is kept
for the reader), and ``reference/<model>/<version>/reference.parquet`` is one of the files
``stg_lake__reference`` unions by name (one column per input feature, plus ``prediction`` and
``confidence``). How the marts then type and bin a reference column is in
``int_reference_values_unpivoted``, ``int_reference_bins`` and
``int_reference_categories_binned``; :func:`feature_plan` says the same in words.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from inferwatch import names
from inferwatch.config import DBT_PROJECT_DIR
from inferwatch.lake import Lake

OUTPUTS = ("prediction", "confidence")
#: Columns ``stg_lake__reference`` adds itself (or DuckDB's reader does): a feature of that
#: name would be lost or clash.
RESERVED = ("model", "model_version", "reference_file", "filename")
REFERENCE_FILE = "reference.parquet"
TASKS = ("classification", "regression")
#: The dbt project's defaults (vars ``drift_categorical_top_k``, ``drift_ks_bins``).
CATEGORICAL_TOP_K = 20
KS_BINS = 100
#: Training metrics the performance mart compares production with, per task.
COMPARED_METRICS = {
    "classification": ("accuracy", "f1_macro", "ece"),
    "regression": ("mae", "rmse"),
}


class OnboardError(ValueError):
    """A registry entry or reference that the pipeline would misread, or a refused overwrite."""


@dataclass(frozen=True)
class Finding:
    """One line of a report: ``ok`` and ``info`` are facts, ``warning`` a gap the dashboards
    will show, ``error`` something the pipeline would misread."""

    level: str
    subject: str
    text: str

    def line(self) -> str:
        prefix = {"warning": "WARNING ", "error": "ERROR "}.get(self.level, "")
        return f"{prefix}{self.subject}: {self.text}"


def registry_key(model: str, version: str) -> str:
    return f"registry/{model}/{version}.json"


def reference_folder(model: str, version: str) -> str:
    return f"reference/{model}/{version}"


def require_names(model: str, version: str) -> None:
    """The names become lake paths: they must pass the log contract's own rules (names.py)."""
    if not names.is_valid("model", model):
        raise OnboardError(
            f"invalid model name {model!r}: letters, digits and _ . : @ - "
            f"(pattern {names.MODEL_PATTERN})"
        )
    if not names.is_valid("model_version", version):
        raise OnboardError(
            f"invalid version {version!r}: letters, digits and _ . + - "
            f"(pattern {names.MODEL_VERSION_PATTERN})"
        )


# ---------------------------------------------------------------- registry
def utc_text(value: str) -> str:
    """An ISO 8601 time as UTC text with a ``Z``; a time without an offset is taken as UTC."""
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise OnboardError(
            f"--deployed-at {value!r} is not an ISO 8601 time, e.g. 2025-04-30T12:00:00Z"
        ) from error
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    spec = "seconds" if when.microsecond == 0 else "microseconds"
    return when.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def parse_pairs(pairs: Iterable[str], what: str, numeric: bool) -> dict:
    """``name=value`` options as a dict; values are numbers (``numeric``) or any JSON scalar,
    else text."""
    out: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise OnboardError(f"--{what} {pair!r}: expected name=value")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        if numeric and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise OnboardError(f"--{what} {pair!r}: the value must be a finite number")
        out[key.strip()] = value
    return out


def registry_entry(
    model: str,
    version: str,
    *,
    git_commit: str,
    training_data_hash: str,
    deployed_at: str,
    metrics: dict | None = None,
    params: dict | None = None,
    task: str | None = None,
) -> dict:
    """The registry document for one version, as ``stg_lake__registry`` reads it."""
    require_names(model, version)
    for option, value in (
        ("--git-commit", git_commit),
        ("--training-data-hash", training_data_hash),
    ):
        if not value or not value.strip():
            raise OnboardError(f"{option} is empty")
    if task is not None and task not in TASKS:
        raise OnboardError(f"--task {task!r}: one of {', '.join(TASKS)}")
    entry = {
        "model": model,
        "version": version,
        "git_commit": git_commit.strip(),
        "training_data_hash": training_data_hash.strip(),
        "deployed_at": utc_text(deployed_at),
        "training_metrics": metrics or {},
    }
    if params:
        entry["params"] = params
    if task:
        entry["task"] = task
    return entry


def write_registry(lake: Lake, entry: dict, *, force: bool = False) -> str:
    """Write the entry; the same entry again changes nothing, a different one needs ``force``."""
    key = registry_key(entry["model"], entry["version"])
    if lake.exists(key):
        try:
            present = json.loads(lake.read_bytes(key))
        except ValueError:
            present = None
        if present == entry:
            return f"{key} already holds this entry: unchanged"
        if not force:
            raise OnboardError(
                f"{key} already holds a different entry "
                f"(git_commit {(present or {}).get('git_commit')!r}); pass --force to replace it"
            )
    lake.write_bytes(key, (json.dumps(entry, indent=2) + "\n").encode())
    return f"wrote {lake.full_url(key)}"


# ---------------------------------------------------------------- reference
def read_sample(path: Path) -> pa.Table:
    """A Parquet or CSV (with a header) sample of training data."""
    if not path.exists():
        raise OnboardError(f"--from {path}: no such file")
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if suffixes[-1:] == [".parquet"]:
            return pq.read_table(path)
        if ".csv" in suffixes[-2:]:
            return pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise OnboardError(f"--from {path}: cannot be read ({error})") from error
    raise OnboardError(f"--from {path}: expected a .parquet or .csv (.csv.gz) file")


def feature_kind(arrow_type: pa.DataType) -> str | None:
    """numeric, boolean or categorical, as the marts will treat the column; None if none."""
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return "numeric"
    if pa.types.is_decimal(arrow_type):
        return "numeric"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "categorical"
    if pa.types.is_dictionary(arrow_type) and pa.types.is_string(arrow_type.value_type):
        return "categorical"
    return None


def split_columns(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


def build_reference(
    table: pa.Table,
    *,
    features: Sequence[str] | None = None,
    prediction_column: str | None = None,
    confidence_column: str | None = None,
) -> tuple[pa.Table, list[Finding]]:
    """The reference as the pipeline reads it (features, then ``prediction`` and
    ``confidence``), and what was found on the way; OnboardError for what it would misread."""
    if table.num_rows == 0:
        raise OnboardError("the sample has no rows")
    outputs = {
        "prediction": prediction_column
        or ("prediction" if "prediction" in table.column_names else None),
        "confidence": confidence_column
        or ("confidence" if "confidence" in table.column_names else None),
    }
    chosen = (
        list(features) if features else [c for c in table.column_names if c not in outputs.values()]
    )
    missing = [c for c in [*chosen, *filter(None, outputs.values())] if c not in table.column_names]
    if missing:
        raise OnboardError(
            f"no column {', '.join(map(repr, missing))} in the sample "
            f"(it has {', '.join(table.column_names)})"
        )
    problems, findings, columns = [], [], {}
    for name in chosen:
        if not names.is_valid("feature", name):
            problems.append(
                f"feature name {name!r} breaks the feature-key rule ({names.FEATURE_PATTERN})"
            )
        elif name in RESERVED or name in OUTPUTS:
            problems.append(
                f"feature name {name!r} is reserved (the reference's own columns: "
                f"{', '.join(RESERVED + OUTPUTS)}); rename it in the sample and the logs"
            )
        columns[name] = table.column(name)
    for output, source in outputs.items():
        if source:
            columns[output] = table.column(source)
    for name, column in columns.items():
        column, notes, problem = _clean_column(name, column)
        columns[name] = column
        findings += notes
        if problem:
            problems.append(problem)
    if problems:
        raise OnboardError("; ".join(problems))
    if outputs["confidence"] and feature_kind(columns["confidence"].type) != "numeric":
        raise OnboardError(f"confidence column {outputs['confidence']!r} must be numeric")
    findings.append(
        Finding(
            "ok",
            "reference",
            f"{table.num_rows} rows, features {', '.join(chosen)}; outputs "
            + (", ".join(k for k, v in outputs.items() if v) or "none"),
        )
    )
    return pa.table(columns), findings


def _clean_column(
    name: str, column: pa.ChunkedArray
) -> tuple[pa.ChunkedArray, list[Finding], str | None]:
    """The column as written (NaN as null, dictionaries decoded), notes, and a problem if any."""
    kind = feature_kind(column.type)
    if kind is None:
        return (
            column,
            [],
            (
                f"column {name!r} has type {column.type}: a feature must be numeric, "
                "categorical (text) or boolean; convert it first"
            ),
        )
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_floating(column.type):
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
    nulls = column.null_count
    if nulls == len(column):
        return column, [], f"column {name!r} has no value at all"
    notes = []
    if nulls:
        notes.append(
            Finding(
                "warning",
                name,
                f"{nulls} of {len(column)} values are null "
                f"({nulls / len(column):.1%}); left out of its reference shares",
            )
        )
    return column, notes, None


def write_reference(
    lake: Lake, model: str, version: str, reference: pa.Table, *, force: bool = False
) -> str:
    """Write ``reference/<model>/<version>/reference.parquet``; other files in that folder
    would be unioned into the same reference, so a folder holding anything else needs
    ``force`` (which removes them)."""
    require_names(model, version)
    folder = reference_folder(model, version)
    buffer = io.BytesIO()
    pq.write_table(reference, buffer)
    data = buffer.getvalue()
    key = f"{folder}/{REFERENCE_FILE}"
    present = [info.key for info in lake.list(folder)]
    if present == [key] and _same_rows(lake.read_bytes(key), reference):
        return f"{key} already holds this reference: unchanged"
    if present and not force:
        raise OnboardError(f"{folder}/ already holds {', '.join(present)}; pass --force to replace")
    for old in present:
        if old != key:
            lake.remove(old)
    lake.write_bytes(key, data)
    return f"wrote {lake.full_url(key)} ({reference.num_rows} rows)"


def _same_rows(data: bytes, reference: pa.Table) -> bool:
    try:
        return pq.read_table(io.BytesIO(data)).equals(reference)
    except pa.ArrowInvalid:
        return False


# ---------------------------------------------------------------- check
def _seed(name: str) -> list[dict]:
    with open(DBT_PROJECT_DIR / "seeds" / f"{name}.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def model_setting(seed: str, model: str, column: str) -> tuple[str, str]:
    """The seed's value for the model, else its ``*`` row's, and which row it came from."""
    rows = _seed(seed)
    own = next((r for r in rows if r["model"] == model and r.get(column)), None)
    if own:
        return own[column], f"{seed}.csv row {model}"
    default = next(r for r in rows if r["model"] == "*")
    return default[column], f"{seed}.csv default row *"


def read_registry(lake: Lake, model: str, version: str) -> tuple[dict | None, list[Finding]]:
    key = registry_key(model, version)
    subject = f"registry {model} {version}"
    if not lake.exists(key):
        return None, [
            Finding(
                "warning",
                subject,
                f"no registry entry ({key}): Models and lineage "
                "shows no commit, training data, deploy time or training metrics; "
                "add it with `inferwatch model register`",
            )
        ]
    try:
        entry = json.loads(lake.read_bytes(key))
    except ValueError as error:
        return None, [
            Finding(
                "error",
                subject,
                f"{key} is not JSON ({error}): the version gets no metadata from it",
            )
        ]
    if not isinstance(entry, dict):
        return None, [
            Finding(
                "error",
                subject,
                f"{key} is not a JSON object: the version gets no metadata from it",
            )
        ]
    findings = []
    named = entry.get("model", model), entry.get("version", entry.get("model_version", version))
    if named != (model, version):
        findings.append(
            Finding(
                "error",
                subject,
                f"{key} names {named[0]} {named[1]}: the "
                "pipeline files it under that model and version",
            )
        )
    for field in ("git_commit", "training_data_hash", "deployed_at"):
        if not entry.get(field):
            findings.append(
                Finding(
                    "warning", subject, f"no {field}: its cell on Models and lineage stays empty"
                )
            )
    if entry.get("deployed_at"):
        try:
            utc_text(str(entry["deployed_at"]))
        except OnboardError:
            findings.append(
                Finding(
                    "error",
                    subject,
                    f"deployed_at {entry['deployed_at']!r} is not an ISO 8601 time: read as null",
                )
            )
    metrics = entry.get("training_metrics") or {}
    findings.insert(
        0,
        Finding(
            "ok",
            subject,
            f"{key}: git_commit {entry.get('git_commit')}, "
            f"training_data_hash {entry.get('training_data_hash')}, deployed_at "
            f"{entry.get('deployed_at')}, training metrics "
            f"{', '.join(f'{k}={v}' for k, v in metrics.items()) or 'none'}",
        ),
    )
    return entry, findings


def read_reference(lake: Lake, model: str, version: str) -> tuple[pa.Table | None, list[Finding]]:
    """The version's reference files, unioned by name as the pipeline does."""
    folder = reference_folder(model, version)
    subject = f"reference {model} {version}"
    keys = [i.key for i in lake.list(folder) if i.key.endswith((".parquet", ".csv"))]
    if not keys:
        return None, [
            Finding(
                "warning",
                subject,
                f"no training reference ({folder}/): no feature "
                "distributions or drift unless an earlier version has one; add it "
                "with `inferwatch model reference`",
            )
        ]
    tables = []
    for key in keys:
        data = io.BytesIO(lake.read_bytes(key))
        try:
            tables.append(pq.read_table(data) if key.endswith(".parquet") else pacsv.read_csv(data))
        except pa.ArrowInvalid as error:
            return None, [
                Finding("error", subject, f"{key} cannot be read ({error}): the run fails on it")
            ]
    table = pa.concat_tables(tables, promote_options="permissive")
    return table, [Finding("ok", subject, f"{', '.join(keys)}: {table.num_rows} rows")]


def feature_plan(name: str, column: pa.ChunkedArray) -> Finding:
    """What the marts will do with one reference column, in one line."""
    kind, role = feature_kind(column.type), "output" if name in OUTPUTS else "feature"
    values = column.drop_null()
    if kind == "numeric":
        distinct = len(pc.unique(values))
        merged = (
            " (few distinct values: repeated deciles merge into fewer bins)"
            if distinct < 10
            else ""
        )
        return Finding(
            "ok",
            f"{role} {name}",
            f"numeric: decile bins for PSI{merged}, {KS_BINS} "
            f"quantile bins for KS; {len(values)} reference values, {distinct} distinct",
        )
    if kind is None:
        return Finding(
            "error", f"{role} {name}", f"type {column.type}: neither numeric, text nor boolean"
        )
    categories = len(pc.unique(values))
    rest = (
        f", the other {categories - CATEGORICAL_TOP_K} share __other__"
        if categories > CATEGORICAL_TOP_K
        else ""
    )
    label = "boolean, binned as the categories true/false" if kind == "boolean" else "categorical"
    return Finding(
        "ok",
        f"{role} {name}",
        f"{label}: top {min(categories, CATEGORICAL_TOP_K)} of "
        f"{categories} categories get bins{rest}, plus __unseen__; PSI and Jensen–Shannon",
    )


def reference_plan(reference: pa.Table) -> list[Finding]:
    """One line per column: how it will be binned; and a warning for its nulls."""
    findings = []
    for name in reference.column_names:
        findings.append(feature_plan(name, reference.column(name)))
        nulls = reference.column(name).null_count
        if nulls:
            text = (
                f"{nulls} of {reference.num_rows} reference values are null: left out of its shares"
            )
            findings.append(Finding("warning", name, text))
    return findings


def type_conflicts(lake: Lake, model: str, version: str, reference: pa.Table) -> list[Finding]:
    """Columns that are numbers here and not in another reference file (or the reverse): the
    pipeline unions every reference by name, so both would be read as text, i.e. categorical."""
    numeric = {
        n: feature_kind(reference.column(n).type) == "numeric" for n in reference.column_names
    }
    own = f"{reference_folder(model, version)}/"
    findings = []
    for info in lake.list("reference"):
        if info.key.startswith(own) or not info.key.endswith((".parquet", ".csv")):
            continue
        data = io.BytesIO(lake.read_bytes(info.key))
        schema = (
            pq.read_schema(data) if info.key.endswith(".parquet") else pacsv.read_csv(data).schema
        )
        for field in schema:
            if (
                field.name in numeric
                and (feature_kind(field.type) == "numeric") != numeric[field.name]
            ):
                here = "numeric" if numeric[field.name] else "not numeric"
                there = "is not" if numeric[field.name] else "is"
                text = (
                    f"{here} here but {there} in {info.key}: the union of all references reads "
                    "it as text, so its drift is categorical in both; rename one"
                )
                findings.append(Finding("warning", field.name, text))
    return findings


def drift_facts(model: str) -> Finding:
    values = {
        c: model_setting("drift_thresholds", model, c)
        for c in ("psi_warning", "psi_drift", "ks_warning", "js_warning")
    }
    source = values["psi_warning"][1]
    return Finding(
        "ok",
        "drift",
        f"status by PSI: warning ≥ {values['psi_warning'][0]}, drift ≥ "
        f"{values['psi_drift'][0]}; KS warning ≥ {values['ks_warning'][0]}, JS warning ≥ "
        f"{values['js_warning'][0]} ({source}); per feature and day on Inputs and outputs",
    )


def performance_facts(model: str, entry: dict | None, reference: pa.Table | None) -> list[Finding]:
    task, source = model_setting("performance_thresholds", model, "task")
    declared = (entry or {}).get("task")
    # The seed's own row wins, then the registry's task, then the seed's default (the
    # dbt macro model_settings reads them in the same order).
    if declared in TASKS and not source.endswith(f"row {model}"):
        task, source = declared, "registry entry's task"
    findings = [
        Finding(
            "ok",
            "performance",
            f"task {task} ({source}): measured on the predictions "
            "whose labels arrive under labels/ (docs/labels.md), by prediction day",
        )
    ]
    if declared and declared != task:
        findings.append(
            Finding(
                "warning",
                "performance",
                f"the registry says {declared} but the pipeline will score it as {task} ({source})",
            )
        )
    if entry is not None:
        compared = [
            m for m in COMPARED_METRICS.get(task, ()) if m in (entry.get("training_metrics") or {})
        ]
        text = (
            f"training {', '.join(compared)} shown beside production's"
            if compared
            else f"no training metric to compare ({', '.join(COMPARED_METRICS.get(task, ()))}): "
            "concept_drift_status stays no_training_metrics"
        )
        findings.append(Finding("ok" if compared else "warning", "performance", text))
    if reference is not None and "prediction" not in reference.column_names:
        findings.append(
            Finding(
                "warning",
                "outputs",
                "the reference has no prediction column: no output distribution or its KL check",
            )
        )
    return findings


def bronze_versions(lake: Lake, model: str) -> dict[str, dict]:
    """Per version of the model already in bronze: events, first and last day, features."""
    tables = []
    for info in lake.list("bronze/events"):
        if info.key.endswith(".parquet"):
            data = pq.read_table(
                io.BytesIO(lake.read_bytes(info.key)),
                columns=["event_id", "model", "model_version", "event_ts", "input_features"],
            )
            tables.append(data.filter(pc.equal(data["model"], model)))
    out: dict[str, dict] = {}
    for table in tables:
        for row in table.to_pylist():
            seen = out.setdefault(
                row["model_version"], {"events": set(), "days": set(), "features": set()}
            )
            seen["events"].add(row["event_id"])
            seen["days"].add(row["event_ts"].date())
            inputs = row["input_features"]
            inputs = json.loads(inputs) if isinstance(inputs, str) else inputs
            if isinstance(inputs, dict):
                seen["features"].update(inputs)
    return out


def _versions_with_files(lake: Lake, prefix: str, model: str) -> set[str]:
    out, folder = set(), f"{prefix}/{model}/"
    for info in lake.list(folder.rstrip("/")):
        if info.key.startswith(folder):
            out.add(info.key[len(folder) :].split("/")[0].removesuffix(".json"))
    return out


def _version_key(version: str) -> tuple:
    """Versions ordered as the marts order them: by the numbers in their names."""
    return tuple(int(d) for d in re.findall(r"\d+", version)), version


def check(lake: Lake, model: str, version: str | None = None) -> list[Finding]:
    """Everything the next run will do with the model (one version, or every version that has
    a registry entry, a reference or events in bronze)."""
    require_names(model, version or "v")
    in_bronze = bronze_versions(lake, model)
    with_reference = _versions_with_files(lake, "reference", model)
    versions = (
        [version]
        if version
        else sorted(
            set(in_bronze) | with_reference | _versions_with_files(lake, "registry", model),
            key=_version_key,
        )
    )
    if not versions:
        return [
            Finding(
                "error",
                model,
                "no registry entry, no training reference and no events in "
                "bronze: nothing to check (docs/onboarding.md)",
            )
        ]
    findings = [drift_facts(model)]
    for name in versions:
        findings += _check_version(lake, model, name, in_bronze.get(name), with_reference)
    if version and not any(
        f.level == "ok" and f.subject.startswith(("registry", "reference")) for f in findings
    ):
        findings.append(
            Finding("error", f"{model} {version}", "no registry entry and no training reference")
        )
    return findings


def _check_version(
    lake: Lake, model: str, version: str, bronze: dict | None, with_reference: set[str]
) -> list[Finding]:
    entry, findings = read_registry(lake, model, version)
    reference, notes = read_reference(lake, model, version)
    if reference is None and not any(n.level == "error" for n in notes):
        earlier = [v for v in with_reference if _version_key(v) < _version_key(version)]
        if earlier:
            used = max(earlier, key=_version_key)
            notes = [
                Finding(
                    "warning",
                    f"reference {model} {version}",
                    f"no reference of its own: "
                    f"drift is measured against {used}'s (reference/{model}/{used}/)",
                )
            ]
    findings += notes
    if reference is not None:
        findings += reference_plan(reference)
        findings += type_conflicts(lake, model, version, reference)
    findings += performance_facts(model, entry, reference)
    findings.append(_bronze_fact(model, version, bronze, reference))
    return findings


def _bronze_fact(
    model: str, version: str, bronze: dict | None, reference: pa.Table | None
) -> Finding:
    subject = f"bronze {model}"
    if not bronze:
        return Finding(
            "info", subject, f"{version}: no events in bronze yet (the next run ingests raw/)"
        )
    days = sorted(bronze["days"])
    seen = ", ".join(sorted(bronze["features"])) or "none"
    text = f"{version}: {len(bronze['events'])} events, {days[0]} to {days[-1]}, features {seen}"
    if reference is not None:
        missing = sorted(bronze["features"] - set(reference.column_names))
        if missing:
            return Finding(
                "warning",
                subject,
                f"{text}; not in the reference, so no drift for: {', '.join(missing)}",
            )
    return Finding("ok", subject, text)


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.level == "error" for f in findings)
