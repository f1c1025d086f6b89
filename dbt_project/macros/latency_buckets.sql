{#
    Mergeable latency buckets (DDSketch-style, log-spaced): bucket i holds latencies in
    (gamma^(i-1), gamma^i] with gamma = (1 + a) / (1 - a), and stands for 2·gamma^i / (gamma + 1),
    which is within relative error a of every latency in it. Counts of the same bucket add up
    across hours, endpoints and versions, so a percentile over any range and grouping is exact
    to within a — never an average of percentiles. a = var('latency_relative_error', 0.01).

    The functions are DuckDB macros created in the warehouse before every run and copied into
    serving.duckdb at publish time, so that dbt models and Superset metrics call the same code.
    Spark 3.5 has no SQL functions: there the models inline the same expressions
    (latency_bucket_of, latency_bucket_value_of, latency_bucket_quantile below).
#}

{% macro latency_gamma() -%}
    {%- set alpha = var('latency_relative_error', 0.01) | float -%}
    {{ (1 + alpha) / (1 - alpha) }}
{%- endmacro %}

{% macro define_latency_functions() %}
    {{ return(adapter.dispatch('define_latency_functions', 'inferwatch')()) }}
{% endmacro %}

{% macro spark__define_latency_functions() %}{% endmacro %}

{% macro duckdb__define_latency_functions() %}
    {#- Latencies at or below 1 µs share one bucket standing for 0 ms. -#}
    create or replace macro latency_bucket(latency_ms) as
        case
            when latency_ms is null then null
            when latency_ms <= 0.001 then -100000
            else ceil(ln(latency_ms) / ln({{ latency_gamma() }}))::integer
        end;

    create or replace macro latency_bucket_value(bucket) as
        case
            when bucket = -100000 then 0.0
            else 2 * pow({{ latency_gamma() }}, bucket) / ({{ latency_gamma() }} + 1)
        end;

    {#- q-quantile (linear interpolation between order statistics, like quantile_cont) of
        the latencies summarised by a list of {bucket, events} structs, e.g. in Superset:
        latency_quantile(list(struct_pack(bucket := bucket, events := events)), 0.95).
        Each bucket's value is repeated `events` times and DuckDB's own quantile_cont runs on
        the list: no subquery per group, so a chart of a thousand groups costs milliseconds
        (a correlated unnest + window per group cost seconds), and the same bucket arriving
        from several hours or endpoints needs no merging first. Memory: 8 bytes per event of
        the largest group. -#}
    create or replace macro latency_quantile(buckets, q) as list_aggregate(
        flatten(list_transform(
            buckets,
            b -> list_resize(
                [latency_bucket_value(b.bucket)], b.events, latency_bucket_value(b.bucket)
            )
        )),
        'quantile_cont',
        q
    );
{% endmacro %}


{# The bucket of a latency (SQL expression): DuckDB's function, inlined on Spark. #}
{% macro latency_bucket_of(latency) -%}
    {{ return(adapter.dispatch('latency_bucket_of', 'inferwatch')(latency)) }}
{%- endmacro %}

{% macro duckdb__latency_bucket_of(latency) -%}
    latency_bucket({{ latency }})
{%- endmacro %}

{% macro spark__latency_bucket_of(latency) -%}
    case
        when {{ latency }} is null then null
        when {{ latency }} <= 0.001 then -100000
        else cast(ceil(ln({{ latency }}) / ln({{ latency_gamma() }})) as int)
    end
{%- endmacro %}


{# The latency a bucket stands for (SQL expression). #}
{% macro latency_bucket_value_of(bucket) -%}
    {{ return(adapter.dispatch('latency_bucket_value_of', 'inferwatch')(bucket)) }}
{%- endmacro %}

{% macro duckdb__latency_bucket_value_of(bucket) -%}
    latency_bucket_value({{ bucket }})
{%- endmacro %}

{% macro spark__latency_bucket_value_of(bucket) -%}
    case
        when {{ bucket }} = -100000 then 0.0
        else 2 * pow({{ latency_gamma() }}, {{ bucket }}) / ({{ latency_gamma() }} + 1)
    end
{%- endmacro %}


{# Aggregate: the q-quantile of the latencies summarised by the group's (bucket, events) rows,
   interpolated like quantile_cont. DuckDB: latency_quantile over the list of buckets; Spark:
   its exact percentile weighted by the events of each bucket (the same order statistics). #}
{% macro latency_bucket_quantile(bucket, events, fraction) -%}
    {{ return(adapter.dispatch('latency_bucket_quantile', 'inferwatch')(bucket, events, fraction)) }}
{%- endmacro %}

{% macro duckdb__latency_bucket_quantile(bucket, events, fraction) -%}
    latency_quantile(list(struct_pack(bucket := {{ bucket }}, events := {{ events }})), {{ fraction }})
{%- endmacro %}

{% macro spark__latency_bucket_quantile(bucket, events, fraction) -%}
    percentile({{ latency_bucket_value_of(bucket) }}, {{ fraction }}, {{ events }})
{%- endmacro %}
