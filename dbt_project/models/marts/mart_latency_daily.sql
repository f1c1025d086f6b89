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
        list(struct_pack(bucket := bucket, events := events)) as latency_buckets
    from buckets
    group by model, model_version, event_day

),

final as (

    select
        model,
        model_version,
        event_day,
        events,
        round(latency_quantile(latency_buckets, 0.50), 3) as latency_p50_ms,
        round(latency_quantile(latency_buckets, 0.95), 3) as latency_p95_ms,
        round(latency_quantile(latency_buckets, 0.99), 3) as latency_p99_ms
    from daily

)

select * from final
