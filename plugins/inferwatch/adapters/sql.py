"""DuckDB expressions the adapters share: payload shapes → contract fields, times → RFC 3339.

Each function returns SQL text over JSON expressions. All of them are total: a shape they do
not know gives NULL (the field is left out), never an error that would stop a chunk.
"""

from __future__ import annotations

from inferwatch.ingest.pii import sql_literal


def text(expr: str, path: str) -> str:
    """The value at ``path`` as text (strings unquoted), NULL when absent or JSON null."""
    return f"nullif(json_extract_string({expr}, {sql_literal(path)}), '')"


def jtype(expr: str, path: str = "$") -> str:
    return f"coalesce(json_type({expr}, {sql_literal(path)}), 'NULL')"


def value(expr: str, path: str) -> str:
    """The JSON value at ``path`` (NULL when absent or JSON null)."""
    extracted = f"json_extract({expr}, {sql_literal(path)})"
    return f"case when {jtype(expr, path)} <> 'NULL' then {extracted} end"


def first_of(*exprs: str) -> str:
    return f"coalesce({', '.join(exprs)})"


def utc_time(expr: str) -> str:
    """A time string (RFC 3339, BigQuery's ``… UTC``, up to 9 fraction digits) → RFC 3339 UTC."""
    return f"strftime(try_cast({expr} as TIMESTAMPTZ) at time zone 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ')"


def epoch_us(expr: str) -> str:
    return f"epoch_us(try_cast({expr} as TIMESTAMPTZ))"


def parse_json_text(expr: str) -> str:
    """A VARCHAR holding JSON → JSON, or NULL when it is not JSON."""
    return f"case when json_valid({expr}) then ({expr})::JSON end"


def _array_to_object(array: str, names: str = "[]::VARCHAR[]") -> str:
    """``[6.8, 2.8]`` → ``{"f0": 6.8, "f1": 2.8}``, or the given ``names`` when they are unique."""
    key = (
        f"case when len(list_distinct({names})) = len({names}) and len({names}) > 0"
        f" then ({names})[k] end"
    )
    return (
        f"try(to_json(map_from_entries(list_transform(json_extract({array}, '$[*]'),"
        f" (v, k) -> struct_pack(key := coalesce({key}, 'f' || (k - 1)), value := v)))))"
    )


def instance_to_features(instance: str, names: str = "[]::VARCHAR[]") -> str:
    """One instance (object, array of values, or a scalar) → a features object."""
    return f"""(case {jtype(instance)}
        when 'OBJECT' then ({instance})::VARCHAR
        when 'ARRAY' then {_array_to_object(instance, names)}
        when 'NULL' then null
        else json_object('f0', {instance})::VARCHAR end)::JSON"""


def first_instance(array: str) -> str:
    """The first row of a batch: ``[[1, 2], [3, 4]]`` → ``[1, 2]``; ``[1, 2]`` stays as it is."""
    return f"""case when {jtype(array, "$[0]")} in ('ARRAY', 'OBJECT')
        then json_extract({array}, '$[0]') else {array} end"""


def batch_size(payload: str) -> str:
    """How many instances a request payload carries (NULL when it is not a known batch shape)."""
    return f"""case
        when {jtype(payload, "$.instances")} = 'ARRAY'
            then json_array_length({payload}, '$.instances')
        when {jtype(payload, "$.data.ndarray[0]")} = 'ARRAY'
            then json_array_length({payload}, '$.data.ndarray')
        when {jtype(payload, "$[0]")} in ('ARRAY', 'OBJECT') then json_array_length({payload})
        end"""


def features(payload: str) -> str:
    """Request payloads of the common serving protocols → a contract ``input_features`` object.

    KServe/TF-serving v1 ``{"instances": [...]}`` (first instance), Open Inference Protocol v2
    ``{"inputs": [{"name", "data"}]}`` (each tensor's first value by name), Seldon
    ``{"data": {"names", "ndarray" | "tensor"}}`` and ``{"jsonData": {...}}``,
    ``{"features": ...}``, a bare array (first row) or a bare object (the features themselves).
    """
    seldon_names = f"coalesce(json_extract_string({payload}, '$.data.names[*]'), [])"
    ndarray = first_instance(value(payload, "$.data.ndarray"))
    v2 = (
        f"try(to_json(map_from_entries(list_transform(json_extract({payload}, '$.inputs[*]'),"
        f" (t, k) -> struct_pack(key := coalesce(t ->> '$.name', 'f' || (k - 1)),"
        f" value := {first_instance('(t -> ' + sql_literal('$.data') + ')')})))))::JSON"
    )
    return f"""case
        when {jtype(payload)} = 'ARRAY' then {instance_to_features(first_instance(payload))}
        when {jtype(payload)} <> 'OBJECT' then null
        when {jtype(payload, "$.instances")} = 'ARRAY'
            then {instance_to_features(first_instance(value(payload, "$.instances")))}
        when {jtype(payload, "$.inputs[0].data")} = 'ARRAY' then {v2}
        when {jtype(payload, "$.inputs")} in ('ARRAY', 'OBJECT')
            then {instance_to_features(first_instance(value(payload, "$.inputs")))}
        when {jtype(payload, "$.data.ndarray")} = 'ARRAY'
            then {instance_to_features(ndarray, seldon_names)}
        when {jtype(payload, "$.data.tensor.values")} = 'ARRAY'
            then {instance_to_features(value(payload, "$.data.tensor.values"), seldon_names)}
        when {jtype(payload, "$.jsonData")} = 'OBJECT' then {value(payload, "$.jsonData")}
        when {jtype(payload, "$.features")} <> 'NULL'
            then {instance_to_features(value(payload, "$.features"))}
        else {payload} end"""


def raw_prediction(payload: str) -> str:
    """A response payload → the first prediction as JSON (object, array or scalar)."""
    return f"""case
        when {jtype(payload)} = 'ARRAY' then {value(payload, "$[0]")}
        when {jtype(payload)} <> 'OBJECT' then {payload}
        when {jtype(payload, "$.predictions")} = 'ARRAY' then {value(payload, "$.predictions[0]")}
        when {jtype(payload, "$.predictions")} <> 'NULL' then {value(payload, "$.predictions")}
        when {jtype(payload, "$.outputs[0].data")} = 'ARRAY'
            then {value(payload, "$.outputs[0].data[0]")}
        when {jtype(payload, "$.data.ndarray")} = 'ARRAY' then {value(payload, "$.data.ndarray[0]")}
        when {jtype(payload, "$.data.tensor.values")} = 'ARRAY'
            then {value(payload, "$.data.tensor.values[0]")}
        when {jtype(payload, "$.jsonData")} <> 'NULL' then {value(payload, "$.jsonData")}
        when {jtype(payload, "$.strData")} <> 'NULL' then {value(payload, "$.strData")}
        when {jtype(payload, "$.prediction")} <> 'NULL' then {value(payload, "$.prediction")}
        else {payload} end"""


_LABEL_KEYS = ("label", "predicted_label", "class", "predicted_class")
_SCORE_KEYS = ("confidence", "score", "probability")


def prediction(pred: str) -> str:
    """A prediction object's label (``label``, ``predicted_label``, ``class``), else the value."""
    labels = ", ".join(value(pred, f"$.{k}") for k in _LABEL_KEYS)
    return f"case when {jtype(pred)} = 'OBJECT' then coalesce({labels}, {pred}) else {pred} end"


def confidence(pred: str) -> str:
    """A prediction object's ``confidence``/``score``/``probability`` when it lies in [0, 1]."""
    scores = ", ".join(
        f"case when {jtype(pred, f'$.{k}')} in ('DOUBLE', 'BIGINT', 'UBIGINT')"
        f" then try_cast(json_extract({pred}, '$.{k}') as DOUBLE) end"
        for k in _SCORE_KEYS
    )
    score = f"coalesce({scores})"
    return f"case when {jtype(pred)} = 'OBJECT' and {score} between 0 and 1 then {score} end"


def instances(payload: str) -> str:
    """A request payload's instances as a list of JSON, one per instance: KServe/TF-serving v1
    ``instances`` rows, SeldonMessage ``data.ndarray`` rows, a bare array of rows. NULL for
    other shapes (one instance: :func:`features` reads it)."""
    return f"""case
        when {jtype(payload, "$.instances[0]")} in ('ARRAY', 'OBJECT')
            then json_extract({payload}, '$.instances[*]')
        when {jtype(payload, "$.data.ndarray[0]")} = 'ARRAY'
            then json_extract({payload}, '$.data.ndarray[*]')
        when {jtype(payload, "$[0]")} in ('ARRAY', 'OBJECT') then json_extract({payload}, '$[*]')
        end"""


def predictions(payload: str) -> str:
    """A response payload's predictions as a list of JSON, one per instance (NULL when it is not
    a list: :func:`raw_prediction` reads a single one)."""
    return f"""case
        when {jtype(payload)} = 'ARRAY' then json_extract({payload}, '$[*]')
        when {jtype(payload, "$.predictions")} = 'ARRAY'
            then json_extract({payload}, '$.predictions[*]')
        when {jtype(payload, "$.data.ndarray")} = 'ARRAY'
            then json_extract({payload}, '$.data.ndarray[*]')
        when {jtype(payload, "$.outputs[0].data")} = 'ARRAY'
            then json_extract({payload}, '$.outputs[0].data[*]')
        end"""


def seldon_names(payload: str) -> str:
    """SeldonMessage ``data.names`` (feature names of ndarray/tensor rows), else an empty list."""
    return f"coalesce(json_extract_string({payload}, '$.data.names[*]'), [])"


def batch(features_list: str, predictions_list: str) -> str:
    """The contract's ``batch`` array when a record holds more than one instance: element i is
    instance i's features with prediction i (and its confidence when derivable); fields that
    are unknown are left out of the element. NULL for one instance or none: such a record keeps
    the top-level ``input_features``/``prediction``/``confidence`` (docs/producers.md)."""
    # zipped, not indexed: an index into a list inside the lambda costs a copy per access
    pairs = (
        f"list_zip({features_list},"
        f" coalesce(list_slice({predictions_list}, 1, len({features_list})), []::JSON[]))"
    )
    element = (
        "json_merge_patch(case when e[1] is null then '{}'::JSON"
        " else json_object('input_features', e[1]) end,"
        f" json_object('prediction', {prediction('e[2]')}, 'confidence', {confidence('e[2]')}))"
    )
    return f"""case when len({features_list}) > 1
        then to_json(list_transform({pairs}, e -> {element})) end"""


def batch_features(instances_list: str, names: str = "[]::VARCHAR[]") -> str:
    """Each instance of a list → its features object."""
    return f"list_transform({instances_list}, x -> {instance_to_features('x', names)})"


def with_batch(line: str, batch_expr: str) -> str:
    """A contract line with the ``batch`` array added when there is one; such a line must not
    carry the top-level input_features, prediction and confidence (a null in a merge patch
    removes the key)."""
    patch = (
        f"json_object('batch', {batch_expr}, 'input_features', null, 'prediction', null,"
        f" 'confidence', null)"
    )
    return f"""case when {batch_expr} is null then {line}
        else json_merge_patch({line}, {patch}) end"""
