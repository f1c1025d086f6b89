"""SageMaker Model Monitor data capture → contract v1 (docs/producers.md has the field table).

A capture record has no model name, version or latency: the model and version come from
configuration, else from the capture layout ``<any prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/``
(model = endpoint name, model_version = variant name: the two folders before the date);
latency is left out. A payload of several instances (CSV rows, JSON ``instances``, JSON Lines)
becomes one line with a ``batch`` array.
"""

from __future__ import annotations

from inferwatch.adapters import sql
from inferwatch.adapters.base import Adapter


def _payload_text(io: str) -> str:
    """``endpointInput``/``endpointOutput`` data as text (base64 decoded; NULL if not UTF-8)."""
    data = f"json_extract_string({io}, '$.data')"
    return f"""case upper(json_extract_string({io}, '$.encoding'))
        when 'BASE64' then try(decode(try(from_base64({data}))))
        when 'CSV' then {data} when 'JSON' then {data} end"""


def _payload_format(io: str) -> str:
    content_type = f"lower(coalesce(json_extract_string({io}, '$.observedContentType'), ''))"
    # a content type may carry parameters (``text/csv; charset=utf-8``): match the media type
    return f"""case
        when {content_type} like '%csv%' then 'csv'
        when {content_type} like '%jsonlines%' or {content_type} like '%ndjson%'
            or {content_type} like '%json-seq%' then 'jsonl'
        when {content_type} like '%json%' then 'json'
        when upper(json_extract_string({io}, '$.encoding')) = 'CSV' then 'csv'
        when upper(json_extract_string({io}, '$.encoding')) = 'JSON' then 'json' end"""


def _csv_rows(text: str) -> str:
    return f"list_filter(string_split(replace({text}, chr(13), ''), chr(10)), r -> trim(r) <> '')"


def _csv_value(cell: str) -> str:
    return f"coalesce(to_json(try_cast(trim({cell}) as DOUBLE)), to_json(trim({cell})))"


def _csv_row_features(row: str) -> str:
    """A CSV row (no header: SageMaker's CSV never has one) → ``{"f0": …, "f1": …}`` (plain
    CSV: no quoted commas)."""
    return (
        f"to_json(map_from_entries(list_transform(string_split({row}, ','),"
        f" (c, k) -> struct_pack(key := 'f' || (k - 1),"
        f" value := ({_csv_value('c')})::JSON))))::JSON"
    )


def _csv_predictions(rows: str, instances: str) -> str:
    """Output CSV → one prediction per instance: the first value of each row, or the values of a
    single row when it holds exactly one value per instance (``0.1,0.9,0.3`` for 3 rows in)."""
    cells = f"string_split({rows}[1], ',')"
    return f"""case when len({rows}) = 1 and {instances} > 1 and len({cells}) = {instances}
        then list_transform({cells}, c -> ({_csv_value("c")})::JSON)
        else list_transform({rows}, r -> ({_csv_value("string_split(r, ',')[1]")})::JSON) end"""


def _json_payload(text: str, fmt: str) -> str:
    """JSON text → JSON; JSON Lines (one instance or prediction a line) → a JSON array."""
    lines = f"array_to_string({_csv_rows(text)}, ',')"
    return f"""case {fmt}
        when 'json' then {sql.parse_json_text(text)}
        when 'jsonl' then {sql.parse_json_text("'[' || " + lines + " || ']'")} end"""


class SageMakerCapture(Adapter):
    name = "sagemaker_capture"

    def select(self, records: str) -> str:
        inp, out = "input", "output"
        meta = "$.eventMetadata"
        return f"""
with base as (
    select
        object_key, line_number, rec,
        coalesce(opt_model, path_model) as model_name,
        coalesce(opt_model_version, path_version) as version_name,
        coalesce(opt_endpoint, path_model) as endpoint_name,
        {sql.value("rec", "$.captureData.endpointInput")} as input,
        {sql.value("rec", "$.captureData.endpointOutput")} as output
    from {records}
),
decoded as (
    select *,
        {_payload_text(inp)} as input_text, {_payload_format(inp)} as input_format,
        {_payload_text(out)} as output_text, {_payload_format(out)} as output_format
    from base
),
parsed as (
    select *,
        {_json_payload("input_text", "input_format")} as input_json,
        {_json_payload("output_text", "output_format")} as output_json,
        case when input_format = 'csv' then {_csv_rows("input_text")} end as input_rows,
        case when output_format = 'csv' then {_csv_rows("output_text")} end as output_rows
    from decoded
),
shaped as (
    select *,
        case when input_format = 'csv' then {_csv_row_features("input_rows[1]")}
             else {sql.features("input_json")} end as features,
        case when input_format = 'csv' then len(input_rows)
             else {sql.batch_size("input_json")} end as batch_size,
        case when output_format = 'csv'
                 then ({_csv_value("string_split(output_rows[1], ',')[1]")})::JSON
             else {sql.raw_prediction("output_json")} end as raw_pred,
        case when input_format = 'csv'
                 then list_transform(input_rows, r -> {_csv_row_features("r")})
             else {sql.batch_features(sql.instances("input_json"))} end as instance_features
    from parsed
),
predicted as (
    select *,
        case when output_format = 'csv'
                 then {_csv_predictions("output_rows", "len(instance_features)")}
             else {sql.predictions("output_json")} end as instance_predictions
    from shaped
),
batched as (
    select *, {sql.batch("instance_features", "instance_predictions")} as batch from predicted
),
judged as (
    select *,
        case
            when {sql.jtype("rec", "$.captureData")} <> 'OBJECT'
                then {self.reason("no captureData object")}
            when input is null and output is null
                then {self.reason("captureData has neither endpointInput nor endpointOutput")}
            when {sql.text("rec", meta + ".inferenceTime")} is null
                then {self.reason("no eventMetadata.inferenceTime")}
            when input is not null and upper(coalesce(input ->> '$.encoding', ''))
                    not in ('CSV', 'JSON', 'BASE64')
                then {self.reason("unknown endpointInput.encoding (CSV, JSON or BASE64)")}
            when output is not null and upper(coalesce(output ->> '$.encoding', ''))
                    not in ('CSV', 'JSON', 'BASE64')
                then {self.reason("unknown endpointOutput.encoding (CSV, JSON or BASE64)")}
            when upper(input ->> '$.encoding') = 'BASE64'
                    and try(from_base64(input ->> '$.data')) is null
                then {self.reason("endpointInput.data is not valid base64")}
            when upper(output ->> '$.encoding') = 'BASE64'
                    and try(from_base64(output ->> '$.data')) is null
                then {self.reason("endpointOutput.data is not valid base64")}
            when model_name is null then {
            self.reason(
                "no model name: set model for this prefix in INFERWATCH_PRODUCERS or keep the "
                "capture layout <prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/"
            )
        }
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
        'timestamp', {sql.text("rec", meta + ".inferenceTime")},
        'model', model_name,
        'model_version', version_name,
        'event_id', {sql.value("rec", meta + ".eventId")},
        'request_id', {sql.value("rec", meta + ".inferenceId")},
        'endpoint', endpoint_name,
        'input_features', features,
        'prediction', {sql.prediction("raw_pred")},
        'confidence', {sql.confidence("raw_pred")},
        'producer', json_object(
            'format', '{self.name}',
            'event_version', {sql.text("rec", "$.eventVersion")},
            'input_content_type', input ->> '$.observedContentType',
            'output_content_type', output ->> '$.observedContentType',
            'batch_size', batch_size)
    ) as line from judged)
"""
