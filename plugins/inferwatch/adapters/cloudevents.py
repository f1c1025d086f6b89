"""Inference-logger CloudEvents (structured JSON) → contract v1: shared by KServe and Seldon.

The logger writes a request event and a response event per inference, sharing an attribute
(KServe: ``id``; Seldon: ``requestid``, the two events having ids of their own). Within one raw
object they are joined into one contract event, written at the response's line; the request's
line is counted as merged (``lines_merged``). A request of several instances becomes one line
with a ``batch`` array. The event's
``timestamp`` is the request's ``time``, ``latency_ms`` is response ``time`` − request ``time``.

A record without its partner in the same object still becomes an event (``event_id`` = the
CloudEvents id, so the two halves of a pair split across two objects count once after
de-duplication): a lone request has no prediction and no latency, a lone response has no input
features, its own ``time`` and no latency; ``producer.unmatched`` says which half it was.
"""

from __future__ import annotations

from inferwatch.adapters import sql
from inferwatch.adapters.base import Adapter


def attr(name: str) -> str:
    """A CloudEvents attribute in structured form (``name``), or kept as a header (``ce-name``,
    or Go's canonical ``Ce-Name``). Older loggers (spec 0.2) send header values quoted
    (``"iris"``): the quotes are not part of the value."""
    forms = (name, f"ce-{name}", f"Ce-{name.capitalize()}")
    found = ", ".join(sql.text("rec", f'$."{form}"') for form in forms)
    return f"nullif(trim(coalesce({found}), '\"'), '')"


def _data() -> str:
    """``data`` as JSON: an object or array as is, a JSON string parsed, or ``data_base64``."""
    return f"""case
        when {sql.jtype("rec", "$.data")} in ('OBJECT', 'ARRAY') then rec -> '$.data'
        when {sql.jtype("rec", "$.data")} = 'VARCHAR'
            then {sql.parse_json_text("(rec ->> '$.data')")}
        when {sql.jtype("rec", "$.data_base64")} = 'VARCHAR'
            then {sql.parse_json_text("try(decode(try(from_base64(rec ->> '$.data_base64'))))")}
        end"""


class CloudEventsAdapter(Adapter):
    #: The attributes that name the model, most specific first.
    model_attributes: tuple[str, ...] = ("inferenceservicename",)
    #: Attributes kept under ``producer`` (an unknown field of the contract, stored as JSON).
    kept_attributes: tuple[str, ...] = ("namespace", "component", "source")
    #: The attributes a request and its response share, first present wins; the event is known
    #: by it (``event_id``), so both halves of a pair split across two objects count once.
    join_attributes: tuple[str, ...] = ("id",)

    def select(self, records: str) -> str:
        model = ", ".join(attr(a) for a in self.model_attributes)
        kept = ", ".join(f"'{a}', {attr(a)}" for a in self.kept_attributes)
        join = ", ".join(attr(a) for a in self.join_attributes)
        return f"""
with base as (
    select
        object_key, line_number, rec,
        coalesce({join}) as ce_id,
        {attr("type")} as ce_type,
        {attr("time")} as ce_time,
        {sql.epoch_us(attr("time"))} as time_us,
        coalesce(opt_model, {model}) as model_name,
        opt_model_version as version_name,
        coalesce(opt_endpoint, {attr("endpoint")}) as endpoint_name,
        {attr("requestid")} as request_id,
        json_object({kept}) as producer_attributes,
        {_data()} as payload,
        case when {attr("type")} like '%.request' then 'request'
             when {attr("type")} like '%.response' then 'response' end as kind
    from {records}
),
judged as (
    select *,
        case
            when {attr("id")} is null then {self.reason("no id (ce-id)")}
            when ce_type is null then {self.reason("no type (ce-type)")}
            when kind is null then {self.reason("type is neither a request nor a response: ")}
                || ce_type
            when ce_time is null then {self.reason("no time (ce-time)")}
            when time_us is null then {self.reason("unparseable time (ce-time)")}
            when model_name is null then {
            self.reason(
                "no model: no " + " or ".join(self.model_attributes) + " and none configured"
            )
        }
        end as adapter_reason
    from base
),
ranked as (
    select *, row_number() over (partition by object_key, ce_id, kind order by line_number) as nth
    from judged
    where adapter_reason is null
),
requests as (select * from ranked where kind = 'request' and nth = 1),
responses as (select * from ranked where kind = 'response' and nth = 1),
pairs as (
    select
        coalesce(req.object_key, resp.object_key) as object_key,
        req.line_number as request_line,
        resp.line_number as response_line,
        coalesce(req.ce_id, resp.ce_id) as ce_id,
        coalesce(req.ce_time, resp.ce_time) as event_time,
        (resp.time_us - req.time_us) / 1000.0 as latency_ms,
        coalesce(req.model_name, resp.model_name) as model_name,
        coalesce(req.version_name, resp.version_name) as version_name,
        coalesce(req.endpoint_name, resp.endpoint_name) as endpoint_name,
        coalesce(req.request_id, resp.request_id) as request_id,
        coalesce(req.producer_attributes, resp.producer_attributes) as producer_attributes,
        req.payload as request_payload,
        resp.payload as response_payload,
        case when req.line_number is null then 'response'
             when resp.line_number is null then 'request' end as unmatched
    from requests as req
    full outer join responses as resp
        on req.object_key = resp.object_key and req.ce_id = resp.ce_id
),
events as (
    select *,
        {sql.raw_prediction("response_payload")} as raw_pred,
        {
            sql.batch_features(
                sql.instances("request_payload"), sql.seldon_names("request_payload")
            )
        } as instance_features,
        {sql.predictions("response_payload")} as instance_predictions,
        case when {sql.jtype("response_payload", "$.error")} = 'VARCHAR'
             then json_object('type', 'model_error', 'message', response_payload ->> '$.error')
        end as error,
        case when latency_ms < 0
             then {self.reason("response time is before request time")} end as pair_reason
    from pairs
),
batched as (
    select *, {sql.batch("instance_features", "instance_predictions")} as batch from events
)
select object_key, line_number, adapter_reason, null as out_line, null::BIGINT as merged_into
from judged where adapter_reason is not null
union all
select object_key, line_number,
       {self.reason(f"duplicate record for its {self.join_attributes[0]} and type: ")} || ce_id,
       null, null
from ranked where nth > 1
union all
select object_key, request_line, pair_reason, null, case when pair_reason is null
    then response_line end
from events where request_line is not null and response_line is not null
union all
select
    object_key, line_number, pair_reason,
    case when pair_reason is null then {sql.with_batch("line", "batch")}::VARCHAR end, null
from (select *, coalesce(response_line, request_line) as line_number, json_object(
        'schema_version', 1,
        'timestamp', event_time,
        'model', model_name,
        'model_version', version_name,
        'event_id', ce_id,
        'request_id', request_id,
        'endpoint', endpoint_name,
        'input_features', {sql.features("request_payload")},
        'prediction', {sql.prediction("raw_pred")},
        'confidence', {sql.confidence("raw_pred")},
        'latency_ms', latency_ms,
        'error', error,
        'producer', json_merge_patch(producer_attributes, json_object(
            'format', '{self.name}',
            'batch_size', {sql.batch_size("request_payload")},
            'unmatched', unmatched))
    ) as line from batched)
"""
