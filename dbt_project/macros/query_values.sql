{# The first column of a query's rows, for what a model must know before its SQL is written. #}
{% macro query_values(sql) %}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {{ return(run_query(sql).columns[0].values() | list) }}
{% endmacro %}
