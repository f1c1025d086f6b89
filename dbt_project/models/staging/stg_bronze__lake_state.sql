{#- No file means no ingested object is gone: DuckDB's readers fail on a glob matching nothing. -#}
{%- set has_state = lake_has_files('bronze/lake_state/*.parquet') -%}

-- Ingested raw objects that the lake no longer lists, one row per object: gone (missing from
-- the last listing) and whether retention deleted it on purpose.
with lake_state as (

    {% if has_state -%}
        select * from {{ source('bronze', 'lake_state') }}
    {%- else -%}
        select
            cast(null as string) as object_key,
            cast(null as string) as cause,
            cast(null as timestamp) as noticed_at
        where false
    {%- endif %}

)

select
    object_key,
    bool_or(cause = 'missing_from_lake') as missing_from_lake,
    min(noticed_at) filter (where cause = 'missing_from_lake') as missing_since,
    -- retention's record is a log: an object uploaded again later is compared by time
    max(noticed_at) filter (where cause = 'expired_by_retention') as expired_at
from lake_state
group by object_key
