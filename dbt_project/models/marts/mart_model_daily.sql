-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_days, called only when incremental)
{{ config(**incremental_by_day('event_day')) }}

-- Requests, predictions, errors and latency percentiles per model, version and UTC day, rolled
-- up from the hourly marts (endpoints and hours merged): what the per-version charts read.
-- Percentiles come from the merged latency buckets, exact for the day (never averaged).
with inference as (

    select * from {{ ref('mart_inference_hourly') }}
    {% if is_incremental() %}
        where event_day in ({{ touched_days(this, ref('fct_inferences')) }})
    {% endif %}

),

buckets as (

    select * from {{ ref('mart_latency_buckets_hourly') }}
    {% if is_incremental() %}
        where event_day in ({{ touched_days(this, ref('fct_inferences')) }})
    {% endif %}

),

counts as (

    select
        model,
        model_version,
        event_day,
        cast(sum(requests) as bigint) as requests,
        cast(sum(predictions) as bigint) as predictions,
        cast(sum(errors) as bigint) as errors
    from inference
    group by model, model_version, event_day

),

percentiles as (

    {{ latency_percentiles_by('buckets', ['model', 'model_version', 'event_day']) }}

),

watermark as (

    {{ events_watermark() }}

),

final as (

    select
        counts.model,
        counts.model_version,
        counts.event_day,
        counts.requests,
        counts.predictions,
        counts.errors,
        cast(counts.errors as double) / counts.requests as error_rate,
        coalesce(percentiles.events, 0) as latency_events,
        percentiles.latency_p50_ms,
        percentiles.latency_p95_ms,
        percentiles.latency_p99_ms,
        percentiles.latency_buckets,
        watermark.source_watermark
    from counts
    left join percentiles
        on counts.model = percentiles.model
            and counts.model_version = percentiles.model_version
            and counts.event_day = percentiles.event_day
    cross join watermark

)

select * from final
