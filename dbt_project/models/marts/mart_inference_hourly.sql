-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_hours, read when incremental)
{#- a table built before batched requests gains their columns in place (macros/predictions.sql),
    outside the build's transaction -#}
{%- set add_columns = "{{ add_columns_in_place({'predictions': ['bigint', 'requests']}) }}" %}
{{ config(**incremental_by_hour('hour', 'event_day', [{"sql": add_columns, "transaction": false}])) }}
{#- the touched hours' requests as a query of its own for predictions_of (see there) #}
{%- set touched_requests = '(' ~ events_of_touched_hours() ~ ')' %}

-- Requests, predictions, errors and latency per model, version, endpoint and hour. Each build
-- recomputes whole hours: the hours whose events arrived since the last build (late data
-- included; incremental_by_hour). Confidence is averaged over predictions (every element of a
-- batched request).
with events as (

    {{ events_of_touched_hours() }}

),

predictions as (

    {{ predictions_of(touched_requests, ['model', 'model_version', 'endpoint', 'event_ts']) }}

),

confidence_hourly as (

    select
        model,
        model_version,
        coalesce(endpoint, 'unknown') as endpoint,
        date_trunc('hour', event_ts) as hour,
        avg(confidence) as confidence_mean
    from predictions
    group by model, model_version, coalesce(endpoint, 'unknown'), date_trunc('hour', event_ts)

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
        cast(sum(predictions) as bigint) as predictions,
        count(*) filter (where status = 'error') as errors,
        count(distinct user_hash) as distinct_users,
        ---------- latency (exact within the hour; see mergeable buckets for other ranges)
        {{ quantile('latency_ms', 0.50) }} as latency_p50_ms,
        {{ quantile('latency_ms', 0.95) }} as latency_p95_ms,
        {{ quantile('latency_ms', 0.99) }} as latency_p99_ms,
        avg(latency_ms) as latency_mean_ms
    from events
    group by model, model_version, coalesce(endpoint, 'unknown'), date_trunc('hour', event_ts), event_day

),

final as (

    select
        hourly.*,
        ---------- outputs (over predictions)
        confidence_hourly.confidence_mean,
        hourly.errors / hourly.requests as error_rate,
        watermark.source_watermark
    from hourly
    left join confidence_hourly
        on hourly.model = confidence_hourly.model
            and hourly.model_version = confidence_hourly.model_version
            and hourly.endpoint = confidence_hourly.endpoint
            and hourly.hour = confidence_hourly.hour
    cross join watermark

)

select * from final
