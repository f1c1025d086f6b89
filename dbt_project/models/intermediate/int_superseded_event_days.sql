{{ config(materialized='table') }}

-- Days and hours of bronze events that dropped out of the current rows of their raw object:
-- the object was rewritten and its new version no longer holds them. fct_inferences deletes
-- such rows, and the day- and hour-incremental marts must rebuild those days and hours too
-- (macros touched_days, touched_hours), else a shrinking rewrite would leave its old events
-- counted.
with events as (

    select
        object_key,
        batch_id,
        cast(event_ts as date) as event_day,
        date_trunc('hour', event_ts) as event_hour
    from {{ source('bronze', 'events') }}

),

current_batches as (

    select
        object_key,
        batch_id
    from {{ ref('stg_bronze__object_batches') }}

),

current_objects as (

    select
        object_key,
        ingested_at
    from {{ ref('stg_bronze__objects') }}

)

select distinct
    events.object_key,
    events.event_day,
    events.event_hour,
    -- when the version that superseded these rows was ingested: builds before it must redo the day
    current_objects.ingested_at as superseded_at
from events
inner join current_objects
    on events.object_key = current_objects.object_key
where not exists (
        select 1
        from current_batches
        where current_batches.object_key = events.object_key
            and current_batches.batch_id = events.batch_id
    )
