"""Vertex AI request-response logging (the BigQuery table exported as JSON lines) → contract v1.

``request_payload`` and ``response_payload`` are arrays of JSON strings, one per instance: one
instance gives the input features and the prediction, several give one line with a ``batch``
array (instance i with response i; ``batch_size`` is kept). Newer schema versions add
``model``, ``model_version``, ``full_request`` and ``full_response``, used when present. There
is no latency.
"""

from __future__ import annotations

from inferwatch.adapters import sql
from inferwatch.adapters.base import Adapter


def _last_segment(expr: str) -> str:
    """``projects/p/locations/l/endpoints/123`` → ``123`` (a plain name stays as it is)."""
    return f"nullif(regexp_extract({expr}, '[^/]+$'), '')"


def _json_field(path: str) -> str:
    """A JSON-typed column exported as an object, or as a string holding JSON."""
    return f"""case when {sql.jtype("rec", path)} = 'VARCHAR'
        then {sql.parse_json_text(f"(rec ->> '{path}')")} else {sql.value("rec", path)} end"""


def _payloads(column: str) -> str:
    """``request_payload`` / ``response_payload``: JSON strings, one per instance → JSON list."""
    return f"list_transform(json_extract_string(rec, '$.{column}[*]'), p -> try_cast(p as JSON))"


class VertexAI(Adapter):
    name = "vertex_ai"

    def select(self, records: str) -> str:
        first_request = sql.parse_json_text("(rec ->> '$.request_payload[0]')")
        first_response = sql.parse_json_text("(rec ->> '$.response_payload[0]')")
        return f"""
with base as (
    select
        object_key, line_number, rec,
        {sql.text("rec", "$.logging_time")} as logging_time,
        coalesce(opt_model, {_last_segment(sql.text("rec", "$.model"))},
                 {sql.text("rec", "$.deployed_model_id")}) as model_name,
        coalesce(opt_model_version, {sql.text("rec", "$.model_version")},
                 {sql.text("rec", "$.deployed_model_id")}) as version_name,
        coalesce(opt_endpoint, {_last_segment(sql.text("rec", "$.endpoint"))}) as endpoint_name,
        case when {sql.jtype("rec", "$.request_payload")} = 'ARRAY'
                  and json_array_length(rec, '$.request_payload') > 0
             then {sql.instance_to_features(first_request)}
             else {sql.features(_json_field("$.full_request"))} end as features,
        case when {sql.jtype("rec", "$.response_payload")} = 'ARRAY'
                  and json_array_length(rec, '$.response_payload') > 0
             then {sql.raw_prediction(first_response)}
             else {sql.raw_prediction(_json_field("$.full_response"))} end as raw_pred,
        case when {sql.jtype("rec", "$.request_payload")} = 'ARRAY'
             then json_array_length(rec, '$.request_payload')
             else {sql.batch_size(_json_field("$.full_request"))} end as batch_size,
        case when {sql.jtype("rec", "$.request_payload")} = 'ARRAY'
             then {sql.batch_features(_payloads("request_payload"))}
             else {sql.batch_features(sql.instances(_json_field("$.full_request")))}
             end as instance_features,
        case when {sql.jtype("rec", "$.response_payload")} = 'ARRAY'
             then {_payloads("response_payload")}
             else {sql.predictions(_json_field("$.full_response"))} end as instance_predictions
    from {records}
),
batched as (
    select *, {sql.batch("instance_features", "instance_predictions")} as batch from base
),
judged as (
    select *,
        case
            when logging_time is null then {self.reason("no logging_time")}
            when model_name is null
                then {self.reason("no model or deployed_model_id and none configured")}
        end as adapter_reason
    from batched
)
select
    object_key, line_number, adapter_reason,
    case when adapter_reason is null then {sql.with_batch("line", "batch")}::VARCHAR
    end as out_line,
    null::BIGINT as merged_into
from (select *, json_object(
        'schema_version', 1,
        'timestamp', coalesce({sql.utc_time("logging_time")}, logging_time),
        'model', model_name,
        'model_version', version_name,
        'event_id', {sql.value("rec", "$.request_id")},
        'request_id', {sql.value("rec", "$.request_id")},
        'endpoint', endpoint_name,
        'input_features', features,
        'prediction', {sql.prediction("raw_pred")},
        'confidence', {sql.confidence("raw_pred")},
        'producer', json_object(
            'format', '{self.name}',
            'endpoint', {sql.text("rec", "$.endpoint")},
            'deployed_model_id', {sql.text("rec", "$.deployed_model_id")},
            'model', {sql.text("rec", "$.model")},
            'batch_size', batch_size)
    ) as line from judged)
"""
