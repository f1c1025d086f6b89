-- One row per label object (current version): every line read is loaded, quarantined or
-- blank, and how many of its labels found their prediction. Published in ops.duckdb.
with objects as (

    select * from {{ ref('stg_bronze__label_objects') }}

),

labels as (

    select
        object_key,
        event_id,
        request_id
    from {{ ref('stg_bronze__labels') }}

),

matched as (

    select
        label_object_key as object_key,
        count(*) as labels_matched
    from {{ ref('int_labels_joined_to_inferences') }}
    group by label_object_key

),

loaded as (

    select
        object_key,
        count(*) as labels_loaded
    from labels
    group by object_key

),

reconciled as (

    select
        objects.object_key,
        objects.object_size,
        objects.lines_read,
        objects.lines_loaded,
        objects.lines_quarantined,
        objects.lines_blank,
        objects.lines_read = objects.lines_loaded + objects.lines_quarantined + objects.lines_blank
            as reconciles,
        -- the newest label of a prediction wins: an older label of the same prediction, or one
        -- whose prediction has not arrived (yet), is loaded but not matched
        coalesce(matched.labels_matched, 0) as labels_matched,
        coalesce(loaded.labels_loaded, 0) - coalesce(matched.labels_matched, 0)
            as labels_unmatched,
        {{ object_read_status('objects') }} as status,
        objects.truncated,
        objects.batch_id,
        objects.ingested_at
    from objects
    left join matched on objects.object_key = matched.object_key
    left join loaded on objects.object_key = loaded.object_key

)

select * from reconciled
