{# The lake root as DuckDB (or Spark) reads it. inferwatch.transform sets INFERWATCH_BRONZE_ROOT;
   run by hand, it defaults as `inferwatch` does (dbt_project/README.md): INFERWATCH_LAKE_URL,
   else $INFERWATCH_DATA_DIR/lake, else ../data/lake (dbt runs in this folder: the checkout's
   data/lake). The sources' meta `bronze_root` holds the same expression (YAML has no macros). #}
{% macro bronze_root() %}
    {{ return(env_var('INFERWATCH_BRONZE_ROOT', env_var('INFERWATCH_LAKE_URL', env_var('INFERWATCH_DATA_DIR', '../data') ~ '/lake'))) }}
{% endmacro %}


{# on-run-start of `dbt build` / `dbt run`: the models read bronze, which only `inferwatch run`
   (its ingest step) writes. Without it DuckDB would stop on the first view with "No files found";
   say instead what to run first. #}
{% macro require_bronze() %}
    {%- if execute and flags.WHICH in ('build', 'run') and not lake_has_files('bronze/manifest/*/*.parquet') -%}
        {%- do exceptions.raise_compiler_error(
            'No bronze data under ' ~ bronze_root() ~ ' (bronze/manifest/ has no file), so there is '
            ~ 'nothing to build. Run `inferwatch run` first: it ingests the lake\'s raw/ logs into '
            ~ 'bronze and builds these models (`inferwatch simulate` writes a demo lake). Or point '
            ~ 'INFERWATCH_LAKE_URL / INFERWATCH_DATA_DIR at a lake that was ingested '
            ~ '(dbt_project/README.md).'
        ) -%}
    {%- endif -%}
{% endmacro %}
