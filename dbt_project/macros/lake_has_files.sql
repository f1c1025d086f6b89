{# Whether a glob under the lake root matches a file: DuckDB's file readers fail on an empty glob. #}
{% macro lake_has_files(relative_glob) %}
    {%- if not execute -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set pattern = (env_var('INFERWATCH_BRONZE_ROOT') ~ '/' ~ relative_glob) | replace("'", "''") -%}
    {%- set found = run_query("select count(*) from glob('" ~ pattern ~ "')") -%}
    {{ return(found.columns[0].values()[0] > 0) }}
{% endmacro %}
