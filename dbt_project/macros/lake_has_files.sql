{# Whether a glob under the lake root matches a file: DuckDB's file readers fail on an empty glob. #}
{% macro lake_has_files(relative_glob) %}
    {%- if not execute -%}
        {{ return(true) }}
    {%- endif -%}
    {{ return(adapter.dispatch('lake_has_files', 'inferwatch')(relative_glob)) }}
{% endmacro %}

{% macro duckdb__lake_has_files(relative_glob) %}
    {%- set pattern = (bronze_root() ~ '/' ~ relative_glob) | replace("'", "''") -%}
    {%- set found = run_query("select count(*) from glob('" ~ pattern ~ "')") -%}
    {{ return(found.columns[0].values()[0] > 0) }}
{% endmacro %}

{# Spark SQL has no glob(): the runner lists the lake (inferwatch.transform.spark_lake_listing)
   and passes what it found as var spark_lake. #}
{% macro spark__lake_has_files(relative_glob) %}
    {{ return(relative_glob in var('spark_lake', {}).get('globs_with_files', [])) }}
{% endmacro %}
