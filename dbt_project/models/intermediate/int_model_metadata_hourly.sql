-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_hours, read when incremental)
{{ config(**incremental_by_hour('event_hour', 'event_day')) }}


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
        max(event_ts) filter (where git_commit is not null) as git_commit_event_ts,
        {{ arg_max('event_id', ['event_ts', 'event_id']) }} filter (
            where git_commit is not null
        ) as git_commit_event_id,
        {{ arg_max('training_data_hash', ['event_ts', 'event_id']) }} filter (
            where training_data_hash is not null
        ) as training_data_hash,
        max(event_ts) filter (where training_data_hash is not null) as training_data_hash_event_ts,
        {{ arg_max('event_id', ['event_ts', 'event_id']) }} filter (
            where training_data_hash is not null
        ) as training_data_hash_event_id,
        {{ arg_max('deployed_at', ['event_ts', 'event_id']) }} filter (
            where deployed_at is not null
        ) as deployed_at,
        max(event_ts) filter (where deployed_at is not null) as deployed_at_event_ts,
        {{ arg_max('event_id', ['event_ts', 'event_id']) }} filter (
            where deployed_at is not null
        ) as deployed_at_event_id,
        {{ arg_max('training_metrics', ['event_ts', 'event_id']) }} filter (
            where training_metrics is not null
        ) as training_metrics,
        max(event_ts) filter (where training_metrics is not null) as training_metrics_event_ts,
        {{ arg_max('event_id', ['event_ts', 'event_id']) }} filter (
            where training_metrics is not null
        ) as training_metrics_event_id,
        {{ arg_max('params', ['event_ts', 'event_id']) }} filter (
            where params is not null
        ) as params,
        max(event_ts) filter (where params is not null) as params_event_ts,
        {{ arg_max('event_id', ['event_ts', 'event_id']) }} filter (
            where params is not null
        ) as params_event_id
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
