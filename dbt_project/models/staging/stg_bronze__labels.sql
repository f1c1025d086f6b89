{%- set has_labels = lake_has_files('bronze/labels/rows/*/*.parquet') -%}

-- Accepted label lines of the current version of each label object (a rewritten object's older
-- rows stay in bronze but drop out here).
with label_rows as (

    {% if has_labels -%}
        select * from {{ source('labels', 'rows') }}
    {%- else -%}
        select
            cast(null as string) as event_id,
            cast(null as string) as request_id,
            cast(null as string) as model,
            cast(null as string) as model_version,
            cast(null as string) as label,
            cast(null as timestamp) as labeled_at,
            cast(null as string) as label_source,
            cast(null as string) as comment,
            cast(null as string) as extra,
            cast(null as string) as object_key,
            cast(null as bigint) as line_number,
            cast(null as string) as batch_id,
            cast(null as timestamp) as ingested_at
        where false
    {%- endif %}

),

current_objects as (

    select
        object_key,
        batch_id
    from {{ ref('stg_bronze__label_objects') }}

)

select
    ---------- the prediction labelled
    label_rows.event_id,
    label_rows.request_id,
    label_rows.model,
    label_rows.model_version,
    ---------- the ground truth
    label_rows.label,
    try_cast(label_rows.label as double) as label_value,
    label_rows.labeled_at,
    label_rows.label_source,
    label_rows.comment,
    label_rows.extra,
    ---------- lineage to the label line
    label_rows.object_key,
    label_rows.line_number,
    label_rows.batch_id,
    label_rows.ingested_at
from label_rows
inner join current_objects
    on label_rows.object_key = current_objects.object_key
        and label_rows.batch_id = current_objects.batch_id
