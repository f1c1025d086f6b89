{%- set has_quarantine = lake_has_files('bronze/labels/quarantine/*/*.parquet') -%}

-- Rejected label lines of the current version of each label object.
with quarantine as (

    {% if has_quarantine -%}
        select * from {{ source('labels', 'quarantine') }}
    {%- else -%}
        select
            cast(null as string) as object_key,
            cast(null as bigint) as line_number,
            cast(null as string) as reason,
            cast(null as string) as raw_line,
            cast(null as string) as raw_sha256,
            cast(null as string) as batch_id,
            cast(null as timestamp) as ingested_at
        where false
    {%- endif %}

),

current_objects as (

    select
        object_key,
        batch_id
    from {{ ref('stg_bronze__label_objects') }}

)

select
    quarantine.object_key,
    quarantine.line_number,
    quarantine.reason,
    quarantine.raw_line,
    quarantine.raw_sha256,
    quarantine.batch_id,
    quarantine.ingested_at
from quarantine
inner join current_objects
    on quarantine.object_key = current_objects.object_key
        and quarantine.batch_id = current_objects.batch_id
