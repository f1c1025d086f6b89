{#- A format without files reads as no rows: DuckDB's readers fail on a glob matching nothing. -#}
{%- set has_parquet = lake_has_files('reference/*/*/*.parquet') -%}
{%- set has_csv = lake_has_files('reference/*/*/*.csv') -%}

-- Training reference samples: every Parquet and CSV file under reference/<model>/<version>/,
-- columns unioned by name (one per input feature, plus optional prediction and confidence).
with parquet_files as (

    {% if has_parquet -%}
        select * from {{ source('lake', 'reference_parquet') }}
    {%- else -%}
        select cast(null as varchar) as filename
        where false
    {%- endif %}

),

csv_files as (

    {% if has_csv -%}
        select * from {{ source('lake', 'reference_csv') }}
    {%- else -%}
        select cast(null as varchar) as filename
        where false
    {%- endif %}

),

unioned as (

    select * from parquet_files
    union all by name
    select * from csv_files

)

select
    ---------- ids (from the path: reference/<model>/<version>/<file>)
    regexp_extract(filename, 'reference/([^/]+)/[^/]+/[^/]+$', 1) as model,
    regexp_extract(filename, 'reference/[^/]+/([^/]+)/[^/]+$', 1) as model_version,
    filename as reference_file,
    ---------- one column per feature, then prediction and confidence when present
    * exclude (filename)
from unioned
