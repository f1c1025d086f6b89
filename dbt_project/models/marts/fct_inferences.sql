{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        post_hook=[
            """
            -- rows of a rewritten object's older version that its new version dropped
            delete from {{ this }} as fact
            where not exists (
                select 1
                from {{ ref('stg_bronze__object_batches') }} as current_batch
                where current_batch.object_key = fact.object_key
                    and current_batch.batch_id = fact.batch_id
            )
            """
        ],
    )
}}

-- One row per distinct event. The first object an event arrived in owns it; a rewritten
-- object (same key, new batch) replaces its own earlier rows, and the post-hook deletes those
-- its new version no longer holds (their days are rebuilt through touched_days).
with new_events as (

    select * from {{ ref('stg_inference_events') }}
    {% if is_incremental() %}
        where ingested_at > (
                select coalesce(max(ingested_at), timestamp '1970-01-01') from {{ this }}
            )
    {% endif %}

),

ranked as (

    select
        *,
        row_number() over (
            partition by event_id order by ingested_at, object_key, line_number
        ) as arrival_rank
    from new_events

),

deduplicated as (

    select * exclude (arrival_rank) from ranked
    where arrival_rank = 1

),

not_seen_elsewhere as (

    select deduplicated.*
    from deduplicated
    {% if is_incremental() %}
        where not exists (
                select 1
                from {{ this }} as existing
                where existing.event_id = deduplicated.event_id
                    and existing.object_key <> deduplicated.object_key
            )
    {% endif %}

)

select * from not_seen_elsewhere
