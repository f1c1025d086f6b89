-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_days, called only when incremental)
{{ config(**incremental_by_day('event_day')) }}

-- The failed-prediction log: one row per error event, what the Errors dashboard searches.
-- Incremental by UTC day: days touched by newly ingested events are rewritten whole.
with events as (

    select * from {{ ref('fct_inferences') }}
    where status = 'error'
        {% if is_incremental() %}
            and event_day in ({{ touched_days(this, ref('fct_inferences')) }})
        {% endif %}

),

watermark as (

    {{ events_watermark() }}

),

failed as (

    select
        ---------- ids
        events.event_id,
        events.request_id,
        ---------- time
        events.event_ts,
        events.event_day,
        ---------- where
        events.model,
        events.model_version,
        coalesce(events.endpoint, 'unknown') as endpoint,
        coalesce(events.client_id, 'unknown') as client_id,
        events.user_hash,
        ---------- what went wrong
        coalesce(events.error_type, 'unspecified') as error_type,
        events.error_message,
        events.retry_count,
        events.fallback,
        events.latency_ms,
        ---------- lineage to the raw line
        events.object_key,
        events.line_number,
        watermark.source_watermark
    from events
    cross join watermark

)

select * from failed
