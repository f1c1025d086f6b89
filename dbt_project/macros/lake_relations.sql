{# The lake's files as relations. DuckDB reads them in place (sources' external_location);
   Spark needs catalog tables, created before each run (on-run-start) in the schemas the
   sources name: one external Parquet/CSV/text table per source glob that matches files
   (meta lake_glob, lake_format), and one per reference folder (var spark_lake). #}
{% macro create_lake_relations() %}
    {{ return(adapter.dispatch('create_lake_relations', 'inferwatch')()) }}
{% endmacro %}

{% macro duckdb__create_lake_relations() %}{% endmacro %}

{% macro spark__create_lake_relations() %}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set root = bronze_root() -%}
    {%- for node in graph.sources.values() if node.package_name == 'inferwatch' and node.meta.get('lake_glob') -%}
        {%- set format = node.meta.get('lake_format', 'parquet') -%}
        {%- do run_query('create database if not exists ' ~ node.schema) -%}
        {%- if format == 'text' -%}
            {%- do run_query('drop view if exists ' ~ node.schema ~ '.' ~ node.identifier) -%}
            {%- do run_query('drop table if exists ' ~ node.schema ~ '.' ~ node.identifier ~ '__files') -%}
        {%- else -%}
            {%- do run_query('drop table if exists ' ~ node.schema ~ '.' ~ node.identifier) -%}
        {%- endif -%}
        {%- if lake_has_files(node.meta.lake_glob) -%}
            {%- set location = root ~ '/' ~ node.meta.lake_glob -%}
            {%- if format == 'text' -%}
                {#- like DuckDB's read_text: one row per file, `filename` and `content` -#}
                {%- do run_query(lake_table_sql(node.schema ~ '.' ~ node.identifier ~ '__files', 'text', location, {'wholetext': 'true'})) -%}
                {%- do run_query(
                    'create view ' ~ node.schema ~ '.' ~ node.identifier
                    ~ ' as select input_file_name() as filename, value as content from '
                    ~ node.schema ~ '.' ~ node.identifier ~ '__files'
                ) -%}
            {%- else -%}
                {%- do run_query(lake_table_sql(node.schema ~ '.' ~ node.identifier, format, location)) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for folder in var('spark_lake', {}).get('reference_folders', []) -%}
        {%- set relation = spark_reference_relation(loop.index) -%}
        {%- do run_query('create database if not exists ' ~ relation.schema) -%}
        {%- do run_query('drop table if exists ' ~ relation) -%}
        {%- do run_query(lake_table_sql(relation, folder.format, root ~ '/' ~ folder.glob)) -%}
    {%- endfor -%}
{% endmacro %}


{# An external table over files: columns merged by name across Parquet files (DuckDB's
   union_by_name); CSV with a header and inferred types (DuckDB's read_csv). #}
{% macro lake_table_sql(name, format, location, options={}) %}
    {%- set all_options = {'path': location} -%}
    {%- do all_options.update({'mergeSchema': 'true'} if format == 'parquet' else {}) -%}
    {%- do all_options.update({'header': 'true', 'inferSchema': 'true'} if format == 'csv' else {}) -%}
    {%- do all_options.update(options) -%}
    {%- set rendered = [] -%}
    {%- for key, value in all_options.items() -%}
        {%- do rendered.append(key ~ " '" ~ (value | replace("'", "\\'")) ~ "'") -%}
    {%- endfor -%}
    {{ return('create table ' ~ name ~ ' using ' ~ format ~ ' options (' ~ rendered | join(', ') ~ ')') }}
{% endmacro %}


{# The table of the n-th reference folder of var spark_lake (Spark only). #}
{% macro spark_reference_relation(index) %}
    {{ return(api.Relation.create(schema=target.schema ~ '_lake', identifier='reference_' ~ index)) }}
{% endmacro %}


{# `relation` with `columns` ({name: type}) added as nulls where its files lack them. #}
{% macro with_optional_columns(relation, columns) -%}
    {{ return(adapter.dispatch('with_optional_columns', 'inferwatch')(relation, columns)) }}
{%- endmacro %}

{% macro duckdb__with_optional_columns(relation, columns) -%}
select * from {{ relation }}
    union all by name
    select
        {%- for name, type in columns.items() %}
        null::{{ 'varchar' if type == 'string' else type }} as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    where false
{%- endmacro %}

{% macro spark__with_optional_columns(relation, columns) %}
    {%- set present = [] -%}
    {%- if execute -%}
        {%- for column in adapter.get_columns_in_relation(relation) -%}
            {%- do present.append(column.name) -%}
        {%- endfor -%}
    {%- endif -%}
    select
        *
        {%- for name, type in columns.items() if name not in present %},
        cast(null as {{ type }}) as {{ name }}
        {%- endfor %}
    from {{ relation }}
{% endmacro %}
