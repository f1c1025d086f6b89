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

    {#- q-quantile of the latencies summarised by a list of {bucket, events} structs, e.g. in
        Superset: latency_quantile(list(struct_pack(bucket := bucket, events := events)), 0.95).
        It equals DuckDB's quantile_cont over the list with each bucket's value repeated
        `events` times, bit for bit, without building that list (which cost the number of
        events: 9M for a 90-day chart): quantile_cont takes the order statistics either side
        of rank (n - 1)·q, 0-based, and returns lower·(1 - f) + upper·f with f the rank's
        fraction; here they come from a walk over the buckets in order, summing events.
        Identical {bucket, events} entries (the same bucket arriving from many hours or
        endpoints) are first merged by a histogram, so the walk costs the distinct entries.
        No subquery: a chart of thousands of groups stays one vectorised expression. -#}
    create or replace macro latency_quantile_walk(merged, rank_position) as list_reduce(
        merged,
        (walk, entry) -> case
            when walk.result is not null or walk.seen + entry.events <= walk.lower_rank
                then struct_pack(
                    seen := walk.seen + entry.events,
                    lower_rank := walk.lower_rank,
                    upper_rank := walk.upper_rank,
                    fraction := walk.fraction,
                    lower_value := walk.lower_value,
                    result := walk.result
                )
            else struct_pack(
                seen := walk.seen + entry.events,
                lower_rank := walk.lower_rank,
                upper_rank := walk.upper_rank,
                fraction := walk.fraction,
                lower_value := coalesce(walk.lower_value, latency_bucket_value(entry.bucket)),
                result := case
                    when walk.seen + entry.events <= walk.upper_rank then null
                    when walk.fraction = 0 then coalesce(walk.lower_value, latency_bucket_value(entry.bucket))
                    else coalesce(walk.lower_value, latency_bucket_value(entry.bucket)) * (1 - walk.fraction)
                        + latency_bucket_value(entry.bucket) * walk.fraction
                end
            )
        end,
        struct_pack(
            seen := 0::hugeint,
            lower_rank := floor(rank_position),
            upper_rank := ceil(rank_position),
            fraction := rank_position - floor(rank_position),
            lower_value := null::double,
            result := null::double
        )
    ).result;

    {#- `merged`: {bucket, events} sorted by bucket (a bucket may repeat), events > 0. -#}
    create or replace macro latency_quantile_of_sorted(merged, q) as latency_quantile_walk(
        merged,
        (list_sum(list_transform(merged, entry -> entry.events)) - 1)::double * q::double
    );

    {#- Null buckets (no latency) and empty ones count as quantile_cont's nulls: not at all. -#}
    create or replace macro latency_quantile(buckets, q) as latency_quantile_of_sorted(
        list_transform(
            list_sort(map_entries(list_aggregate(
                list_filter(buckets, entry -> entry.bucket is not null and entry.events > 0),
                'histogram'
            ))),
            entry -> struct_pack(bucket := entry.key.bucket, events := entry.key.events * entry.value)
        ),
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
