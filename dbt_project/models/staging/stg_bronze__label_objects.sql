{#- No label object ingested yet reads as no rows: DuckDB's readers fail on an empty glob. -#}
{%- set has_labels = lake_has_files('bronze/labels/manifest/*/*.parquet') -%}

-- The current version of every ingested label object: its newest manifest row (a rewritten
-- object's new batch replaces the rows of its older ones).
with manifest as (

    {% if has_labels -%}
        -- label manifests older than the size caps lack limit_exceeded: it reads as null
        {{ with_optional_columns(source('labels', 'manifest'), {'limit_exceeded': 'string'}) }}
    {%- else -%}
        select
            cast(null as string) as object_key,
            cast(null as string) as batch_id,
            cast(null as string) as object_version,
            cast(null as bigint) as object_size,
            cast(null as bigint) as lines_read,
            cast(null as bigint) as lines_loaded,
            cast(null as bigint) as lines_quarantined,
            cast(null as bigint) as lines_blank,
            cast(null as boolean) as truncated,
            cast(null as string) as limit_exceeded,
            cast(null as timestamp) as ingested_at
        where false
    {%- endif %}

),

ranked as (

    select
        *,
        row_number() over (
            partition by object_key order by ingested_at desc, batch_id desc
        ) as version_rank
    from manifest

)

select
    ---------- ids
    object_key,
    batch_id,
    object_version,
    ---------- numerics
    object_size,
    lines_read,
    lines_loaded,
    lines_quarantined,
    lines_blank,
    ---------- flags and times
    truncated,
    limit_exceeded,
    ingested_at
from ranked
where version_rank = 1
