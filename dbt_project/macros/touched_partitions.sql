{# Data tests on the touched partitions (DuckDB target).

   Every data test gets `where: __touched_partitions__` (dbt_project.yml). On DuckDB it reads
   only the rows of the tested model built from data ingested since the last build whose data
   tests all passed began: rows whose watermark column (`source_watermark`, else `ingested_at`:
   both a maximum of ingest times) is later than `checked_through` in
   inferwatch_data_test_state. inferwatch.transform writes that table after each full build
   that passed, and empties it when the project changed or on --full-refresh, so a first build,
   a full refresh or a new version of the models tests every row again. Rows an earlier build
   wrote were tested by it: a violation there failed that build, which then did not move
   `checked_through`, so the next build tests those rows again.

   Grain tests (unique, unique_combination) keep their whole-table meaning at the cost of a
   semi-join: every row sharing a key with a touched row is tested, so a new event_id equal to
   an old one is still a duplicate. Models without a watermark column (reference bins, the
   registry, seeds), --full-refresh builds and the Spark target test every row. #}

{% macro data_test_state_relation() -%}
    inferwatch_data_test_state
{%- endmacro %}


{# on-run-start: the state table exists (empty: every row is tested) on the DuckDB target. #}
{% macro create_data_test_state() %}
    {{ return(adapter.dispatch('create_data_test_state', 'inferwatch')()) }}
{% endmacro %}

{% macro default__create_data_test_state() %}{% endmacro %}

{% macro duckdb__create_data_test_state() %}
    create table if not exists {{ data_test_state_relation() }} (
        checked_through timestamp,
        project_fingerprint varchar
    )
{% endmacro %}


{# The tested model's watermark column, from its documented columns (no query). #}
{% macro tested_model_watermark() %}
    {%- set node = graph.nodes.get(model.attached_node) if model.attached_node else none -%}
    {%- if node is none -%}{{ return(none) }}{%- endif -%}
    {%- for column in ('source_watermark', 'ingested_at') -%}
        {%- if column in node.columns -%}{{ return(column) }}{%- endif -%}
    {%- endfor -%}
    {{ return(none) }}
{% endmacro %}


{# dbt's hook for a test's `where` config, dispatched per adapter: every target the project
   builds on needs its own, or dbt's default would paste the marker into the SQL as a filter.
   Off DuckDB, `touched_rows` is the whole relation. #}
{% macro duckdb__get_where_subquery(relation) -%}
    {{ return(touched_partitions_where_subquery(relation)) }}
{%- endmacro %}

{% macro spark__get_where_subquery(relation) -%}
    {{ return(touched_partitions_where_subquery(relation)) }}
{%- endmacro %}

{% macro touched_partitions_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where != '__touched_partitions__' -%}
        {{ return(dbt.default__get_where_subquery(relation)) }}
    {%- endif -%}
    {%- set name = model.test_metadata.name if model.test_metadata else '' -%}
    {%- if name == 'model_checks' -%}
        {#- it scopes each check it runs itself (macros/model_checks.sql) -#}
        {{ return(relation) }}
    {%- endif -%}
    {{ return(touched_rows(relation, grain_keys(model.test_metadata))) }}
{%- endmacro %}


{# The key columns of a grain test (whose scope is every row sharing a key with a touched row),
   from its test_metadata; [] for any other test. #}
{% macro grain_keys(test_metadata) %}
    {%- set kwargs = test_metadata.kwargs if test_metadata else {} -%}
    {%- set name = test_metadata.name if test_metadata else '' -%}
    {%- if name == 'unique' -%}
        {{ return([kwargs.column_name]) }}
    {%- elif name == 'unique_combination' -%}
        {{ return(kwargs.columns) }}
    {%- endif -%}
    {{ return([]) }}
{% endmacro %}


{# The rows of `relation` (the tested model) a test reads: those with a watermark later than
   `checked_through` or, with `keys`, every row sharing those keys with such a row. The whole
   relation when the model has no watermark column, on --full-refresh and off DuckDB. #}
{% macro touched_rows(relation, keys=[]) %}
    {{ return(adapter.dispatch('touched_rows', 'inferwatch')(relation, keys)) }}
{% endmacro %}

{% macro default__touched_rows(relation, keys) %}
    {{ return(relation) }}
{% endmacro %}

{% macro duckdb__touched_rows(relation, keys) -%}
    {%- set watermark = tested_model_watermark() -%}
    {%- if watermark is none or flags.FULL_REFRESH -%}
        {{ return(relation) }}
    {%- endif -%}
    {%- set touched -%}
        {{ watermark }} > (
            select coalesce(max(checked_through), timestamp '-infinity')
            from {{ data_test_state_relation() }}
        )
    {%- endset -%}
    {%- if keys -%}
        {%- set scoped -%}
            (select * from {{ relation }} as scoped where exists (
                select 1 from {{ relation }} as touched where touched.{{ touched }}
                {%- for key in keys %} and touched.{{ key }} is not distinct from scoped.{{ key }}{% endfor %}
            )) as dbt_subquery
        {%- endset -%}
    {%- else -%}
        {%- set scoped -%}
            (select * from {{ relation }} where {{ touched }}) as dbt_subquery
        {%- endset -%}
    {%- endif -%}
    {{ return(scoped) }}
{%- endmacro %}
