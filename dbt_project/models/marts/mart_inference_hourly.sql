-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_days, called only when incremental)
{{ config(**incremental_by_day('event_day')) }}

-- Requests, errors and latency per model, version, endpoint and hour. Each build recomputes
-- whole days: the days whose events arrived since the last build (late data included).
with events as (

    {{ events_of_touched_days() }}

),

watermark as (

    {{ events_watermark() }}

),

hourly as (

    select
        ---------- grain
        model,
        model_version,
        coalesce(endpoint, 'unknown') as endpoint,
        date_trunc('hour', event_ts) as hour,
        event_day,
        ---------- counts
        count(*) as requests,
        count(*) filter (where status = 'error') as errors,
        count(distinct user_hash) as distinct_users,
        ---------- latency (exact within the hour; see mergeable buckets for other ranges)
        {{ quantile('latency_ms', 0.50) }} as latency_p50_ms,
        {{ quantile('latency_ms', 0.95) }} as latency_p95_ms,
        {{ quantile('latency_ms', 0.99) }} as latency_p99_ms,
        avg(latency_ms) as latency_mean_ms,
        ---------- outputs
        avg(confidence) as confidence_mean
    from events
    group by model, model_version, coalesce(endpoint, 'unknown'), date_trunc('hour', event_ts), event_day

),

final as (

    select
        hourly.*,
        errors / requests as error_rate,
        watermark.source_watermark
    from hourly
    cross join watermark

)

select * from final
