-- One row per model version in the registry (registry/<model>/<version>.json). Model and
-- version come from the document, else from its path; if two documents claim the same
-- version, the one at the first path wins.
with registry_files as (

    select * from {{ source('lake', 'registry') }}

),

parsed as (

    select
        filename as registry_path,
        try_cast(content as json) as entry,
        regexp_extract(
            filename, 'registry/([^/]+)/([^/]+)\.json$', ['model', 'version']
        ) as path_parts
    from registry_files

),

entries as (

    select
        ---------- ids
        coalesce(entry ->> 'model', nullif(path_parts.model, '')) as model,
        coalesce(
            entry ->> 'version', entry ->> 'model_version', nullif(path_parts.version, '')
        ) as model_version,
        ---------- lineage
        entry ->> 'git_commit' as git_commit,
        entry ->> 'training_data_hash' as training_data_hash,
        try_cast(entry ->> 'deployed_at' as timestamptz) at time zone 'UTC' as deployed_at,
        entry -> 'training_metrics' as training_metrics,
        entry -> 'params' as params,
        registry_path
    from parsed

)

select * from entries
where model is not null and model_version is not null
qualify row_number() over (partition by model, model_version order by registry_path) = 1
