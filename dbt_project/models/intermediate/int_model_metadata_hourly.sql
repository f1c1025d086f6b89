-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_hours, read when incremental)
{{ config(**incremental_by_hour('event_hour', 'event_day')) }}

{%- set fields = ['git_commit', 'training_data_hash', 'deployed_at', 'training_metrics', 'params'] %}

-- The mergeable partial aggregate of mart_model_lineage's embedded lineage: per model version,
-- UTC hour and git commit its events claimed, the newest value of each model_metadata field
-- and which event it came from (event_ts, event_id). The newest value of a field over any set
-- of hours is the value of the row whose (event_ts, event_id) is largest, as over the events;
-- the distinct commits are the distinct values of the grain's git_commit. Incremental by UTC
-- hour, like mart_inference_hourly.
with events as (

    {{ events_of_touched_hours(where='model_metadata is not null') }}

),

watermark as (

    {{ events_watermark() }}

),

embedded_fields as (

    select
        model,
        model_version,
        event_day,
        date_trunc('hour', event_ts) as event_hour,
        event_ts,
        event_id,
        {{ json_text('model_metadata', 'git_commit') }} as git_commit,
        {{ json_text('model_metadata', 'training_data_hash') }} as training_data_hash,
        {{ try_utc_timestamp(json_text('model_metadata', 'deployed_at')) }} as deployed_at,
        {{ json_member('model_metadata', 'training_metrics') }} as training_metrics,
        {{ json_member('model_metadata', 'params') }} as params
    from events

),

hourly as (

    select
        ---------- grain
        model,
        model_version,
        event_day,
        event_hour,
        git_commit,
        ---------- the newest value of each field (git_commit: the grain's), and its event
        {%- for field in fields %}
        {%- if field != 'git_commit' %}
        {{ arg_max(field, ['event_ts', 'event_id']) }} filter (
            where {{ field }} is not null
        ) as {{ field }},
        {%- endif %}
        max(event_ts) filter (where {{ field }} is not null) as {{ field }}_event_ts,
        {{ arg_max('event_id', ['event_ts', 'event_id']) }} filter (
            where {{ field }} is not null
        ) as {{ field }}_event_id{{ "," if not loop.last }}
        {%- endfor %}
    from embedded_fields
    group by model, model_version, event_day, event_hour, git_commit

),

final as (

    select
        hourly.*,
        watermark.source_watermark
    from hourly
    cross join watermark

)

select * from final
