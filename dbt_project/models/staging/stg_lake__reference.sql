{#- A format without files reads as no rows: DuckDB's readers fail on a glob matching nothing. -#}
{%- set has_parquet = lake_has_files('reference/*/*/*.parquet') -%}
{%- set has_csv = lake_has_files('reference/*/*/*.csv') -%}

-- Training reference samples: every Parquet and CSV file under reference/<model>/<version>/,
-- columns unioned by name (one per input feature, plus optional prediction and confidence).
with unioned as (

    {{ reference_files_by_name(
        source('lake', 'reference_parquet') if has_parquet else none,
        source('lake', 'reference_csv') if has_csv else none
    ) }}

)

select
    ---------- ids (from the path: reference/<model>/<version>/<file>)
    regexp_extract(filename, 'reference/([^/]+)/[^/]+/[^/]+$', 1) as model,
    regexp_extract(filename, 'reference/[^/]+/([^/]+)/[^/]+$', 1) as model_version,
    filename as reference_file,
    ---------- one column per feature, then prediction and confidence when present
    {{ star_except('unioned', ['filename'], spark_reference_columns() | map(attribute=0) | list) }}
from unioned
