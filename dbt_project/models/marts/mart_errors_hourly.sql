-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_hours, read when incremental)
{{ config(**incremental_by_hour('hour', 'event_day')) }}

-- Errors, retries and fallbacks per model, version, endpoint, hour and error type. Successful
-- requests make the row with error_type `none`, so every hour with traffic is present and
-- retries that ended in success count too. Incremental by UTC hour, like mart_inference_hourly.
with events as (

    {{ events_of_touched_hours() }}

),

watermark as (

    {{ events_watermark() }}

),

outcomes as (

    select
        model,
        model_version,
        coalesce(endpoint, 'unknown') as endpoint,
        date_trunc('hour', event_ts) as hour,
        event_day,
        case
            when status = 'error' then coalesce(error_type, 'unspecified') else 'none'
        end as error_type,
        status = 'error' as is_error,
        retry_count,
        fallback
    from events

),

by_error_type as (

    select
        ---------- grain
        model,
        model_version,
        endpoint,
        hour,
        event_day,
        error_type,
        ---------- counts
        count(*) as events,
        count(*) filter (where is_error) as errors,
        cast(coalesce(sum(retry_count), 0) as bigint) as retries,
        count(*) filter (where retry_count > 0) as events_with_retries,
        count(retry_count) as events_reporting_retries,
        count(*) filter (where fallback) as fallbacks
    from outcomes
    group by model, model_version, endpoint, hour, event_day, error_type

),

with_hour_totals as (

    select
        *,
        cast(sum(events) over (
            partition by model, model_version, endpoint, hour
        ) as bigint) as hour_requests
    from by_error_type

),

final as (

    select
        with_hour_totals.*,
        with_hour_totals.errors / with_hour_totals.hour_requests as error_rate,
        watermark.source_watermark
    from with_hour_totals
    cross join watermark

)

select * from final
