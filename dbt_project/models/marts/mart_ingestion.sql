-- One row per raw object: every line read is loaded, quarantined, blank or merged (an adapter
-- folded it into another line's event).
with objects as (

    select * from {{ ref('stg_bronze__objects') }}

),

owned_events as (

    select
        object_key,
        count(*) as events_owned
    from {{ ref('fct_inferences') }}
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
        objects.lines_merged,
        -- events this object delivered that another object (or an earlier line) already had
        objects.lines_loaded - coalesce(owned_events.events_owned, 0) as lines_duplicate,
        objects.lines_read
        = objects.lines_loaded + objects.lines_quarantined + objects.lines_blank
        + objects.lines_merged
            as reconciles,
        objects.truncated,
        case
            when objects.truncated then 'truncated'
            when objects.lines_quarantined > 0 then 'loaded_with_quarantine'
            else 'loaded'
        end as status,
        objects.batch_id,
        objects.ingested_at
    from objects
    left join owned_events on objects.object_key = owned_events.object_key

)

select * from reconciled
