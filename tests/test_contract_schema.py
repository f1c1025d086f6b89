"""The versioned JSON Schema producers validate against agrees with what the reader accepts."""

from __future__ import annotations

import json
from importlib.resources import files

import jsonschema
import pytest

from raw_reader import read_lines

ARTICLE_LINE = (
    '{"timestamp": "2025-05-20T14:52:00Z", "model": "customer_churn_v2", "input_features": '
    '{"age": 35, "plan": "premium"}, "prediction": "churn", "confidence": 0.87, "latency_ms": 122}'
)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(files("inferwatch").joinpath("schemas/inference_log.v1.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_article_line_is_valid(validator):
    assert validator.is_valid(json.loads(ARTICLE_LINE))


def test_every_simulated_line_the_reader_accepts_is_valid(validator, pipeline_run, sim_lake):
    """Every line loaded into fct_inferences validates: the schema is no stricter than we are."""
    lake = sim_lake[0]
    with pipeline_run.serving() as con:
        loaded = con.sql(
            "select object_key, line_number from fct_inferences using sample 2000 rows"
        ).fetchall()
    cache: dict[str, list[str]] = {}
    for key, number in loaded:
        lines = cache.setdefault(key, read_lines(lake / key))
        instance = json.loads(lines[number - 1])
        errors = [e.message for e in validator.iter_errors(instance)]
        assert errors == [], (key, number)


def test_quarantined_json_objects_are_invalid_too(validator, pipeline_run, sim_lake):
    """Lines the reader rejected for a contract rule (not for broken JSON) fail the schema."""
    lake = sim_lake[0]
    with pipeline_run.ops() as con:
        rejected = con.sql(
            "select object_key, line_number, reason from fct_quarantine "
            "where reason not in ('invalid JSON', 'not a JSON object')"
        ).fetchall()
    assert len(rejected) > 100
    for key, number, reason in rejected:
        instance = json.loads(read_lines(lake / key)[number - 1])
        assert not validator.is_valid(instance), (key, number, reason)
