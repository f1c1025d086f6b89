{{ config(materialized='table') }}

-- Each labelled prediction: an accepted event of fct_inferences with its newest ground-truth
-- label, matched by event_id, else by request_id (a producer that writes no event_id). A
-- corrected label (a later `labeled_at` for the same prediction) replaces the earlier one.
-- Labels matching no event (yet) are left out here; they join when their event arrives.
{#- The event columns each match reads. fct_inferences is read once per match, not through a
    shared CTE: DuckDB materialises a CTE read twice (the whole wide table, every build, even
    with no label to match), and reading it in each join lets an empty label side skip it. -#}
{%- set inference_columns = [
    'event_id', 'request_id', 'model', 'model_version', 'event_ts', 'event_day', 'status',
    'prediction', 'confidence', 'input_features', 'geo_country', 'geo_region', 'ingested_at',
] -%}
{%- set inferences -%}
    (select {{ inference_columns | join(', ') }} from {{ ref('fct_inferences') }}) as inferences
{%- endset %}

with labels as (

    select * from {{ ref('stg_bronze__labels') }}

),

matched_by_event_id as (

    select
        inferences.*,
        labels.label,
        labels.label_value,
        labels.labeled_at,
        labels.ingested_at as label_ingested_at,
        labels.object_key as label_object_key,
        labels.line_number as label_line_number
    from labels
    inner join {{ inferences }} on labels.event_id = inferences.event_id
    where labels.event_id is not null

),

matched_by_request_id as (

    select
        inferences.*,
        labels.label,
        labels.label_value,
        labels.labeled_at,
        labels.ingested_at as label_ingested_at,
        labels.object_key as label_object_key,
        labels.line_number as label_line_number
    from labels
    inner join {{ inferences }} on labels.request_id = inferences.request_id
    where labels.event_id is null and labels.request_id is not null

),

matched as (

    select * from matched_by_event_id
    union all
    select * from matched_by_request_id

),

ranked as (

    select
        *,
        row_number() over (
            partition by event_id
            order by
                labeled_at desc,
                label_ingested_at desc,
                label_object_key desc,
                label_line_number desc
        ) as label_rank
    from matched

),

newest_label as (

    select * from ranked
    where label_rank = 1

)

select
    ---------- ids
    event_id,
    request_id,
    model,
    model_version,
    ---------- time: the prediction's day is the grain every performance mart uses
    event_ts,
    event_day,
    labeled_at,
    -- a double, not 3600.0: Spark divides by a decimal literal in decimal (6 places)
    cast({{ timestamp_diff('second', 'event_ts', 'labeled_at') }} as double) / 3600
        as label_delay_hours,
    ---------- prediction and truth
    status,
    prediction,
    try_cast(prediction as double) as prediction_value,
    confidence,
    label,
    label_value,
    prediction = label as is_correct,
    ---------- segments
    input_features,
    geo_country,
    geo_region,
    ---------- watermarks
    ingested_at as event_ingested_at,
    label_ingested_at,
    label_object_key,
    label_line_number
from newest_label
