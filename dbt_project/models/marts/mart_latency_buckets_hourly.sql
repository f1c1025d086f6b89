-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_hours, read when incremental)
{{ config(**incremental_by_hour('hour', 'event_day')) }}

-- Event counts per log-spaced latency bucket, per model, version, endpoint and hour: the
-- mergeable form of latency that gives p50/p95/p99 for any range via latency_quantile().
-- Incremental by UTC hour, like mart_inference_hourly.
with events as (

    {{ events_of_touched_hours('latency_ms is not null') }}

),

watermark as (

    {{ events_watermark() }}

),

bucketed as (

    select
        model,
        model_version,
        coalesce(endpoint, 'unknown') as endpoint,
        date_trunc('hour', event_ts) as hour,
        event_day,
        {{ latency_bucket_of('latency_ms') }} as bucket,
        count(*) as events
    from events
    group by all

),

final as (

    select
        bucketed.*,
        {{ latency_bucket_value_of('bucketed.bucket') }} as bucket_latency_ms,
        watermark.source_watermark
    from bucketed
    cross join watermark

)

select * from final
