"""OpenAI-style usage records (Chat Completions and Responses API objects) → contract v1.

Token counts are renamed to the contract's: ``prompt_tokens`` (or the Responses API's
``input_tokens``) and ``completion_tokens`` (or ``output_tokens``); cached and reasoning token
details are kept beside them. Message content is not copied (size and personal data).
A dated snapshot name ``gpt-4o-mini-2024-07-18`` is model ``gpt-4o-mini``, version ``2024-07-18``.

Besides plain objects, three shapes the vendor writes:

- Batch API output lines ``{"id", "custom_id", "response": {"status_code", "request_id",
  "body"}, "error"}``: the object is ``response.body``; a failed request has ``response: null``
  and an ``error`` object (or an error ``body``), and no time or model of its own: it takes
  those of the successful lines of the same output file (a batch targets one model).
- Streamed Chat Completions: chunks (``chat.completion.chunk``) sharing ``id``; usage is only on
  the last one (empty ``choices``, with ``stream_options.include_usage``). The last chunk
  carries the event, the other chunks are merged into it.
- Streamed Responses API events (``response.created`` … ``response.completed``): the event is
  the last one holding the ``response`` object (with its usage); the others, and the deltas
  before it, are merged into it.
"""

from __future__ import annotations

from inferwatch.adapters import sql
from inferwatch.adapters.base import Adapter

_SNAPSHOT = r"^(.+)-([0-9]{4}-[0-9]{2}-[0-9]{2})$"


def _tokens(*paths: str) -> str:
    return sql.first_of(*(sql.value("body", p) for p in paths))


def _kind() -> str:
    return f"""case
        when json_exists(rec, '$.custom_id') and json_exists(rec, '$.response') then 'batch'
        when {sql.text("rec", "$.object")} = 'chat.completion.chunk' then 'chunk'
        when {sql.text("rec", "$.type")} like 'response.%' then 'stream'
        else 'record' end"""


class OpenAIUsage(Adapter):
    name = "openai_usage"

    def select(self, records: str) -> str:
        return f"""
with kinds as (
    select object_key, line_number, rec, opt_model, opt_model_version, opt_endpoint,
        {_kind()} as kind
    from {records}
),
bodies as (
    select *,
        case kind when 'batch' then {sql.value("rec", "$.response.body")}
                  when 'stream' then {sql.value("rec", "$.response")}
                  else rec end as body
    from kinds
),
base as (
    select *,
        {
            sql.first_of(
                *(sql.value("body", p) for p in ("$.timestamp", "$.created_at", "$.created"))
            )
        }
            as own_time,
        {sql.text("body", "$.model")} as own_model,
        case when kind = 'chunk' then {sql.text("rec", "$.id")}
             when kind = 'stream' then {sql.text("body", "$.id")} end as stream_id
    from bodies
),
{self._streams()},
named as (
    select *,
        case when opt_model is not null then opt_model
             when record_version is null and regexp_matches(record_model, '{_SNAPSHOT}')
             then regexp_extract(record_model, '{_SNAPSHOT}', 1)
             else record_model end as model_name,
        coalesce(opt_model_version, record_version,
                 nullif(regexp_extract(record_model, '{_SNAPSHOT}', 2), '')) as version_name,
        {self._error()} as error,
        case
            when kind = 'stream' and carrier_line is null then {
            self.reason("stream event with no final response event after it in its file")
        }
            when kind = 'batch' and event_time is null then {
            self.reason(
                "batch output line with no time of its own"
                " and no successful line in its file to take it from"
            )
        }
            when {sql.jtype("body", "$.usage")} <> 'OBJECT' and kind not in ('chunk', 'stream')
                 and {self._error()} is null
                then {self.reason("no usage object")}
            when event_time is null
                then {self.reason("no created, created_at or timestamp")}
            when opt_model is null and record_model is null
                then {self.reason("no model and none configured")}
        end as adapter_reason
    from carried
)
select object_key, line_number, null as adapter_reason, null as out_line,
       carrier_line::BIGINT as merged_into
from named where carrier_line is not null and carrier_line <> line_number
union all
select
    object_key, line_number, adapter_reason,
    -- a merge patch onto {{}} leaves out what the record lacks (no "usage": null on errors)
    case when adapter_reason is null then json_merge_patch('{{}}', json_object(
        'schema_version', 1,
        'timestamp', event_time,
        'model', model_name,
        'model_version', version_name,
        'event_id', case when kind = 'batch' then {sql.value("rec", "$.id")}
                         else {sql.value("body", "$.id")} end,
        'request_id', case when kind = 'batch' then {sql.value("rec", "$.custom_id")} else {
            sql.first_of(sql.value("body", "$.request_id"), sql.value("body", "$.x_request_id"))
        } end,
        'endpoint', coalesce(opt_endpoint, {sql.text("body", "$.endpoint")},
                             {sql.text("body", "$.object")}),
        'client_id', {
            sql.first_of(
                sql.value("body", "$.client_id"), sql.value("body", "$.metadata.client_id")
            )
        },
        'user_id', {sql.first_of(sql.value("body", "$.user_id"), sql.value("body", "$.user"))},
        'latency_ms', {sql.value("body", "$.latency_ms")},
        'prediction', {
            sql.first_of(
                "finish_reason",
                sql.value("body", "$.choices[0].finish_reason"),
                sql.value("body", "$.incomplete_details.reason"),
                sql.value("body", "$.status"),
            )
        },
        'error', error,
        'usage', case when {sql.jtype("body", "$.usage")} = 'OBJECT' then json_object(
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
            'cost_usd', {_tokens("$.usage.cost_usd", "$.cost_usd")}) end,
        'producer', json_object(
            'format', '{self.name}',
            'object', {sql.text("body", "$.object")},
            'service_tier', {sql.text("body", "$.service_tier")},
            'custom_id', {sql.text("rec", "$.custom_id")},
            'openai_request_id', {sql.text("rec", "$.response.request_id")},
            'status_code', {sql.value("rec", "$.response.status_code")},
            'stream', kind in ('chunk', 'stream'))
    ))::VARCHAR end as out_line,
    null::BIGINT as merged_into
from named
where carrier_line is null or carrier_line = line_number
"""

    @staticmethod
    def _streams() -> str:
        """``carried``: each record with the line that carries its event (NULL for a record that
        is its own event), the stream's finish reason, and the time and model a batch error
        line takes from its file's successful lines."""
        return f"""
finals as (
    -- the last record of each stream carries its event (usage is on the last chunk)
    select object_key, kind, stream_id, max(line_number) as carrier_line,
           max({sql.text("rec", "$.choices[0].finish_reason")}) as finish_reason
    from base where stream_id is not null
    group by all
),
deltas as (
    -- Responses API deltas name no response: the next final stream event in the file is theirs
    select d.object_key, d.line_number, f.carrier_line
    from (select * from base where kind = 'stream' and stream_id is null) as d
    asof left join (select object_key, carrier_line from finals where kind = 'stream') as f
        on d.object_key = f.object_key and f.carrier_line >= d.line_number
),
batch_files as (
    -- a batch's output file holds one model's results: error lines are dated by them
    select object_key, arg_min(own_time, line_number) as first_time,
           arg_min(own_model, line_number) as model
    from base where kind = 'batch' and own_time is not null
    group by object_key
),
carried as (
    select base.*,
        coalesce(finals.carrier_line, deltas.carrier_line) as carrier_line,
        to_json(finals.finish_reason) as finish_reason,
        coalesce(own_time, batch_files.first_time) as event_time,
        coalesce(own_model, batch_files.model) as record_model,
        {sql.text("body", "$.model_version")} as record_version
    from base
    left join finals using (object_key, kind, stream_id)
    left join deltas using (object_key, line_number)
    left join batch_files
        on base.kind = 'batch' and base.object_key = batch_files.object_key
)"""

    @staticmethod
    def _error() -> str:
        def from_object(obj: str) -> str:
            return (
                f"json_object('type', coalesce({obj} ->> '$.code', {obj} ->> '$.type',"
                f" 'api_error'), 'message', {obj} ->> '$.message')"
            )

        return f"""case
            when {sql.jtype("rec", "$.error")} = 'OBJECT' then {from_object("rec -> '$.error'")}
            when {sql.jtype("body", "$.error")} = 'OBJECT' then {from_object("body -> '$.error'")}
            when {sql.jtype("rec", "$.error")} = 'VARCHAR' then {sql.value("rec", "$.error")}
            when {sql.text("body", "$.status")} = 'failed'
                then json_object('type', 'api_error', 'message', 'status failed')
            end"""
