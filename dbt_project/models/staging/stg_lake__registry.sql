{#- No registry yet reads as no rows (on Spark, no table is made for an empty glob). -#}
{%- set has_registry = lake_has_files('registry/*/*.json') -%}

-- One row per model version in the registry (registry/<model>/<version>.json). Model and
-- version come from the document, else from its path; if two documents claim the same
-- version, the one at the first path wins.
with registry_files as (

    {% if has_registry -%}
        select * from {{ source('lake', 'registry') }}
    {%- else -%}
        select
            cast(null as string) as filename,
            cast(null as string) as content
        where false
    {%- endif %}

),

parsed as (

    select
        filename as registry_path,
        {{ try_json('content') }} as entry,
        regexp_extract(filename, 'registry/([^/]+)/([^/]+)[.]json$', 1) as path_model,
        regexp_extract(filename, 'registry/([^/]+)/([^/]+)[.]json$', 2) as path_version
    from registry_files

),

entries as (

    select
        ---------- ids
        coalesce({{ json_text('entry', 'model') }}, nullif(path_model, '')) as model,
        coalesce(
            {{ json_text('entry', 'version') }},
            {{ json_text('entry', 'model_version') }},
            nullif(path_version, '')
        ) as model_version,
        ---------- lineage
        {{ json_text('entry', 'git_commit') }} as git_commit,
        {{ json_text('entry', 'training_data_hash') }} as training_data_hash,
        {{ try_utc_timestamp(json_text('entry', 'deployed_at')) }} as deployed_at,
        {{ json_member('entry', 'training_metrics') }} as training_metrics,
        {{ json_member('entry', 'params') }} as params,
        ---------- settings
        {{ json_text('entry', 'task') }} as task,
        registry_path
    from parsed

),

ranked as (

    select
        *,
        row_number() over (partition by model, model_version order by registry_path) as path_rank
    from entries
    where model is not null and model_version is not null

)

select
    model,
    model_version,
    git_commit,
    training_data_hash,
    deployed_at,
    training_metrics,
    params,
    task,
    registry_path
from ranked
where path_rank = 1
