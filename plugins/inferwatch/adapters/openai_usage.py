"""OpenAI-style usage records (Chat Completions and Responses API objects) → contract v1.

Token counts are renamed to the contract's: ``prompt_tokens`` (or the Responses API's
``input_tokens``) and ``completion_tokens`` (or ``output_tokens``); cached and reasoning token
details are kept beside them. Message content is not copied (size and personal data).
A dated snapshot name ``gpt-4o-mini-2024-07-18`` is model ``gpt-4o-mini``, version ``2024-07-18``.
"""

from __future__ import annotations

from inferwatch.adapters import sql
from inferwatch.adapters.base import Adapter

_SNAPSHOT = r"^(.+)-([0-9]{4}-[0-9]{2}-[0-9]{2})$"


def _tokens(*paths: str) -> str:
    return sql.first_of(*(sql.value("rec", p) for p in paths))


class OpenAIUsage(Adapter):
    name = "openai_usage"

    def select(self, records: str) -> str:
        error = sql.value("rec", "$.error")
        return f"""
with base as (
    select
        object_key, line_number, rec, opt_model, opt_model_version, opt_endpoint,
        {sql.first_of(*(sql.value("rec", p) for p in ("$.timestamp", "$.created_at", "$.created")))}
            as event_time,
        {sql.text("rec", "$.model")} as record_model,
        {sql.text("rec", "$.model_version")} as record_version
    from {records}
),
named as (
    select *,
        case when opt_model is not null then opt_model
             when record_version is null and regexp_matches(record_model, '{_SNAPSHOT}')
             then regexp_extract(record_model, '{_SNAPSHOT}', 1)
             else record_model end as model_name,
        coalesce(opt_model_version, record_version,
                 nullif(regexp_extract(record_model, '{_SNAPSHOT}', 2), '')) as version_name,
        case
            when {sql.jtype("rec", "$.usage")} <> 'OBJECT' then {self.reason("no usage object")}
            when event_time is null
                then {self.reason("no created, created_at or timestamp")}
            when opt_model is null and record_model is null
                then {self.reason("no model and none configured")}
        end as adapter_reason
    from base
)
select
    object_key, line_number, adapter_reason,
    case when adapter_reason is null then json_object(
        'schema_version', 1,
        'timestamp', event_time,
        'model', model_name,
        'model_version', version_name,
        'event_id', {sql.value("rec", "$.id")},
        'request_id', {
            sql.first_of(sql.value("rec", "$.request_id"), sql.value("rec", "$.x_request_id"))
        },
        'endpoint', coalesce(opt_endpoint, {sql.text("rec", "$.endpoint")},
                             {sql.text("rec", "$.object")}),
        'client_id', {
            sql.first_of(sql.value("rec", "$.client_id"), sql.value("rec", "$.metadata.client_id"))
        },
        'user_id', {sql.first_of(sql.value("rec", "$.user_id"), sql.value("rec", "$.user"))},
        'latency_ms', {sql.value("rec", "$.latency_ms")},
        'prediction', {
            sql.first_of(
                sql.value("rec", "$.choices[0].finish_reason"),
                sql.value("rec", "$.incomplete_details.reason"),
                sql.value("rec", "$.status"),
            )
        },
        'error', case
            when {sql.jtype("rec", "$.error")} = 'OBJECT' then json_object(
                'type', coalesce({error} ->> '$.code', {error} ->> '$.type', 'api_error'),
                'message', {error} ->> '$.message')
            when {sql.jtype("rec", "$.error")} = 'VARCHAR' then {error}
            when {sql.text("rec", "$.status")} = 'failed'
                then json_object('type', 'api_error', 'message', 'status failed')
            end,
        'usage', json_object(
            'prompt_tokens', {_tokens("$.usage.prompt_tokens", "$.usage.input_tokens")},
            'completion_tokens', {_tokens("$.usage.completion_tokens", "$.usage.output_tokens")},
            'total_tokens', {_tokens("$.usage.total_tokens")},
            'cached_tokens', {
            _tokens(
                "$.usage.prompt_tokens_details.cached_tokens",
                "$.usage.input_tokens_details.cached_tokens",
            )
        },
            'reasoning_tokens', {
            _tokens(
                "$.usage.completion_tokens_details.reasoning_tokens",
                "$.usage.output_tokens_details.reasoning_tokens",
            )
        },
            'cost_usd', {_tokens("$.usage.cost_usd", "$.cost_usd")}),
        'producer', json_object(
            'format', '{self.name}',
            'object', {sql.text("rec", "$.object")},
            'service_tier', {sql.text("rec", "$.service_tier")})
    )::VARCHAR end as out_line,
    null::BIGINT as merged_into
from named
"""
