-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_hours, read when incremental)
{{ config(**incremental_by_hour('event_hour', 'event_day')) }}

-- The partial aggregate of mart_client_usage_daily's users and countries: per client,
-- endpoint, model, UTC hour, user (hashed) and country, the events. A day's distinct users are
-- the distinct user hashes of its hours' rows (exact, unlike a sum of hourly counts), and its
-- events per country the sum of its hours'. Incremental by UTC hour, like
-- mart_inference_hourly.
with events as (

    {{ events_of_touched_hours() }}

),

watermark as (

    {{ events_watermark() }}

),

hourly as (

    select
        coalesce(client_id, 'unknown') as client_id,
        coalesce(endpoint, 'unknown') as endpoint,
        model,
        event_day,
        date_trunc('hour', event_ts) as event_hour,
        user_hash,
        geo_country,
        count(*) as requests
    from events
    group by
        coalesce(client_id, 'unknown'),
        coalesce(endpoint, 'unknown'),
        model,
        event_day,
        date_trunc('hour', event_ts),
        user_hash,
        geo_country

),

final as (

    select
        hourly.*,
        watermark.source_watermark
    from hourly
    cross join watermark

)

select * from final
