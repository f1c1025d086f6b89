-- One row per model version: where it came from (registry first, else the metadata embedded
-- in its events, newest value per field), how it has served over its whole life, and its
-- drift on the latest day drift was measured. Versions known only to the registry appear with
-- no traffic. Small output, rebuilt whole, but from the hourly partial aggregates
-- (int_client_usage_hourly, int_model_metadata_hourly), never from the events: its cost
-- follows the versions' hours and latency values, not their events.
with usage as (

    select * from {{ ref('int_client_usage_hourly') }}

),

metadata as (

    select * from {{ ref('int_model_metadata_hourly') }}

),

registry as (

    select * from {{ ref('stg_lake__registry') }}

),

drift as (

    select * from {{ ref('mart_drift_daily') }}

),

traffic_counts as (

    select
        model,
        model_version,
        min(first_seen) as first_seen,
        max(last_seen) as last_seen,
        cast(sum(requests) as bigint) as requests,
        sum(predictions) as predictions,
        cast(sum(errors) as bigint) as errors
    from usage
    group by model, model_version

),

latency_p95 as (

    {{ quantile_of_counts(
        'usage', ['model', 'model_version'], 'latency_ms', 'requests', 0.95, 'latency_p95_ms'
    ) }}

),

traffic as (

    select
        traffic_counts.*,
        latency_p95.latency_p95_ms
    from traffic_counts
    left join latency_p95
        on traffic_counts.model = latency_p95.model
            and traffic_counts.model_version = latency_p95.model_version

),

embedded as (

    -- a field's newest value over the version's hours: the hour row with its newest event
    select
        model,
        model_version,
        {{ arg_max('git_commit', ['git_commit_event_ts', 'git_commit_event_id']) }} filter (
            where git_commit is not null
        ) as git_commit,
        {{ arg_max(
            'training_data_hash', ['training_data_hash_event_ts', 'training_data_hash_event_id']
        ) }} filter (
            where training_data_hash is not null
        ) as training_data_hash,
        {{ arg_max('deployed_at', ['deployed_at_event_ts', 'deployed_at_event_id']) }} filter (
            where deployed_at is not null
        ) as deployed_at,
        {{ arg_max('training_metrics', ['training_metrics_event_ts', 'training_metrics_event_id']) }} filter (
            where training_metrics is not null
        ) as training_metrics,
        {{ arg_max('params', ['params_event_ts', 'params_event_id']) }} filter (
            where params is not null
        ) as params,
        count(distinct git_commit) as embedded_git_commits
    from metadata
    group by model, model_version

),

drift_with_latest_day as (

    select
        model,
        model_version,
        day,
        feature,
        status,
        max(day) over (partition by model, model_version) as latest_day
    from drift

),

drift_on_latest_day as (

    select
        model,
        model_version,
        day,
        feature,
        status
    from drift_with_latest_day
    where day = latest_day

),

latest_drift as (

    select
        model,
        model_version,
        day as latest_drift_day,
        -- the worst verdict over the version's features (inputs and outputs) that day
        case max(case status when 'drift' then 3 when 'warning' then 2 when 'stable' then 1 end)
            when 3 then 'drift'
            when 2 then 'warning'
            when 1 then 'stable'
        end as latest_drift_status,
        {{ sorted_string_agg('feature', ', ', where="status = 'drift'") }} as latest_drifting_features
    from drift_on_latest_day
    group by model, model_version, day

),

versions as (

    select
        model,
        model_version
    from traffic
    union
    select
        model,
        model_version
    from registry

),

joined as (

    select
        ---------- grain
        versions.model,
        versions.model_version,
        ---------- lineage (registry first)
        coalesce(registry.git_commit, embedded.git_commit) as git_commit,
        coalesce(registry.training_data_hash, embedded.training_data_hash) as training_data_hash,
        coalesce(registry.deployed_at, embedded.deployed_at) as deployed_at,
        coalesce(registry.training_metrics, embedded.training_metrics) as training_metrics,
        coalesce(registry.params, embedded.params) as params,
        case
            when registry.model is not null then 'registry'
            when embedded.model is not null then 'events'
            else 'none'
        end as lineage_source,
        coalesce(embedded.embedded_git_commits, 0) as embedded_git_commits,
        ---------- serving
        traffic.first_seen,
        traffic.last_seen,
        coalesce(traffic.requests, 0) as requests,
        cast(coalesce(traffic.predictions, 0) as bigint) as predictions,
        coalesce(traffic.errors, 0) as errors,
        traffic.latency_p95_ms,
        ---------- drift
        latest_drift.latest_drift_day,
        latest_drift.latest_drift_status,
        latest_drift.latest_drifting_features
    from versions
    left join registry
        on versions.model = registry.model and versions.model_version = registry.model_version
    left join embedded
        on versions.model = embedded.model and versions.model_version = embedded.model_version
    left join traffic
        on versions.model = traffic.model and versions.model_version = traffic.model_version
    left join latest_drift
        on versions.model = latest_drift.model
            and versions.model_version = latest_drift.model_version

),

final as (

    select
        *,
        errors / nullif(requests, 0) as error_rate,
        requests / nullif(sum(requests) over (partition by model), 0) as traffic_share
    from joined

)

select * from final
