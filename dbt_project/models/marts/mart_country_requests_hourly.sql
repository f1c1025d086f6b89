-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_hours, read when incremental)
{{ config(**incremental_by_hour('hour', 'event_day')) }}

-- Requests per country, client, endpoint, model, version and UTC hour: what the Clients and
-- usage dashboard's country map counts, pre-merged so that it sums a few rows per hour
-- instead of counting fct_inferences at request time. client_id, endpoint and geo_country are
-- kept as the events carry them (null included), so the dashboard's filters select the rows
-- they selected on fct_inferences. Incremental by UTC hour, like mart_inference_hourly.
with events as (

    {{ events_of_touched_hours() }}

),

watermark as (

    {{ events_watermark() }}

),

hourly as (

    select
        ---------- grain
        date_trunc('hour', event_ts) as hour,
        event_day,
        model,
        model_version,
        endpoint,
        client_id,
        geo_country,
        ---------- counts
        count(*) as requests
    from events
    group by date_trunc('hour', event_ts), event_day, model, model_version, endpoint, client_id, geo_country

),

final as (

    select
        hourly.*,
        watermark.source_watermark
    from hourly
    cross join watermark

)

select * from final
