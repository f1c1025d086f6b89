-- Latency percentiles per model, version and UTC day, merged from the hourly buckets
-- (never averaged from hourly percentiles): within the buckets' relative error of exact.
with buckets as (

    select * from {{ ref('mart_latency_buckets_hourly') }}

),

daily as (

    select
        model,
        model_version,
        event_day,
        sum(events) as events,
        {{ latency_bucket_quantile('bucket', 'events', 0.50) }} as latency_p50_ms,
        {{ latency_bucket_quantile('bucket', 'events', 0.95) }} as latency_p95_ms,
        {{ latency_bucket_quantile('bucket', 'events', 0.99) }} as latency_p99_ms
    from buckets
    group by model, model_version, event_day

),

final as (

    select
        model,
        model_version,
        event_day,
        events,
        round(latency_p50_ms, 3) as latency_p50_ms,
        round(latency_p95_ms, 3) as latency_p95_ms,
        round(latency_p99_ms, 3) as latency_p99_ms
    from daily

)

select * from final
