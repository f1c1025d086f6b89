{# The reference files' rows, columns unioned by name, with the file's path as `filename`.
   DuckDB reads the two reference globs (an empty one as no rows). Spark, whose Parquet reader
   cannot merge a BOOLEAN with a STRING column across models, reads one table per reference
   folder (macros/lake_relations.sql) and unions them by name the way DuckDB does: a column
   that is a number everywhere stays a number, else it is text. #}
{% macro reference_files_by_name(parquet_files, csv_files) -%}
    {{ return(adapter.dispatch('reference_files_by_name', 'inferwatch')(parquet_files, csv_files)) }}
{%- endmacro %}

{% macro duckdb__reference_files_by_name(parquet_files, csv_files) -%}
    {%- if parquet_files is not none -%}
        select * from {{ parquet_files }}
    {%- else -%}
        select cast(null as varchar) as filename
        where false
    {%- endif %}
    union all by name
    {% if csv_files is not none -%}
        select * from {{ csv_files }}
    {%- else -%}
        select cast(null as varchar) as filename
        where false
    {%- endif %}
{%- endmacro %}

{% macro spark__reference_files_by_name(parquet_files, csv_files) -%}
    {%- set columns = spark_reference_columns() -%}
    {%- set folders = var('spark_lake', {}).get('reference_folders', []) -%}
    {%- for folder in folders %}
        {%- set relation = spark_reference_relation(loop.index) -%}
        {%- set present = spark_column_names(relation) %}
    select
        {%- for name, type in columns %}
        cast({{ adapter.quote(name) if name in present else 'null' }} as {{ type }}) as {{ adapter.quote(name) }},
        {%- endfor %}
        input_file_name() as filename
    from {{ relation }}
    {% if not loop.last %}union all{% endif %}
    {%- else %}
    select cast(null as string) as filename
    where false
    {%- endfor %}
{%- endmacro %}


{# The (name, type) of every column of the reference folders' tables, in order of appearance,
   typed as DuckDB's union by name would: all integers → bigint, all numbers → double, one
   type → that type, anything else → string. DuckDB: none needed. #}
{% macro spark_reference_columns() -%}
    {{ return(adapter.dispatch('spark_reference_columns', 'inferwatch')()) }}
{%- endmacro %}

{% macro default__spark_reference_columns() -%}
    {{ return([]) }}
{%- endmacro %}

{% macro spark__spark_reference_columns() -%}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set names = [] -%}
    {%- set types = {} -%}
    {%- for folder in var('spark_lake', {}).get('reference_folders', []) -%}
        {%- for column in adapter.get_columns_in_relation(spark_reference_relation(loop.index)) -%}
            {%- if column.name not in names -%}
                {%- do names.append(column.name) -%}
                {%- do types.update({column.name: []}) -%}
            {%- endif -%}
            {%- do types[column.name].append(column.dtype | lower) -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- set integers = ('tinyint', 'smallint', 'int', 'integer', 'bigint') -%}
    {%- set merged = [] -%}
    {%- for name in names -%}
        {%- set seen = types[name] | unique | list -%}
        {%- if seen | reject('in', integers) | list | length == 0 -%}
            {%- do merged.append((name, 'bigint')) -%}
        {%- elif seen | reject('in', integers + ('float', 'double')) | list | length == 0 -%}
            {%- do merged.append((name, 'double')) -%}
        {%- elif seen | length == 1 -%}
            {%- do merged.append((name, seen[0])) -%}
        {%- else -%}
            {%- do merged.append((name, 'string')) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(merged) }}
{%- endmacro %}


{% macro spark_column_names(relation) -%}
    {%- set names = [] -%}
    {%- for column in adapter.get_columns_in_relation(relation) -%}
        {%- do names.append(column.name) -%}
    {%- endfor -%}
    {{ return(names) }}
{%- endmacro %}
