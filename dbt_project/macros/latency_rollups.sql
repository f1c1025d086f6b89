{#
    Pre-merged latency for the dashboards (issue 20): the q-quantiles of a group's latency
    buckets computed once, at build time, with window functions over the merged buckets
    instead of latency_quantile()'s per-element walk, which a 90-day hourly chart cannot
    afford at request time. The result equals latency_quantile() over the same buckets bit
    for bit (same order statistics, same interpolation expression), so a chart reading a
    rollup shows the figures the buckets mart gave it.
#}

{#- The quantile fractions every rollup carries, as column suffixes. -#}
{% macro rollup_quantiles() -%}
    {{ return([(50, 0.50), (95, 0.95), (99, 0.99)]) }}
{%- endmacro %}


{#- The group's buckets as one list of {bucket, events}, sorted by bucket: what a chart merges
    when it must (several rollup rows in one point), with latency_quantile(). -#}
{% macro sorted_bucket_list(bucket, events) -%}
    {{ return(adapter.dispatch('sorted_bucket_list', 'inferwatch')(bucket, events)) }}
{%- endmacro %}

{#- DuckDB: list_sort of the plain list, not an ordered aggregate (list(... order by)), which
    buffers every group's rows apart and ran out of 1 GB on a 90-day full build; a group's
    buckets are distinct, so sorting the structs sorts by bucket. -#}
{% macro duckdb__sorted_bucket_list(bucket, events) -%}
    list_sort(list(struct_pack(bucket := {{ bucket }}, events := {{ events }})))
{%- endmacro %}

{% macro spark__sorted_bucket_list(bucket, events) -%}
    array_sort(collect_list(named_struct('bucket', {{ bucket }}, 'events', {{ events }})))
{%- endmacro %}


{#- A select of one row per `keys` group of `buckets` (a relation or CTE with the keys, bucket
    and events): events, latency_p50/p95/p99_ms and latency_buckets. quantile_cont's order
    statistics either side of rank (n - 1)·q (0-based) are the first buckets whose running
    count exceeds floor and ceil of that rank. -#}
{% macro latency_percentiles_by(buckets, keys) %}
    {%- set key_list = keys | join(', ') %}
    with merged as (

        select {{ key_list }}, bucket, cast(sum(events) as bigint) as events
        from {{ buckets }}
        where bucket is not null and events > 0
        group by {{ key_list }}, bucket

    ),

    running as (

        select
            merged.*,
            sum(events) over (
                partition by {{ key_list }} order by bucket rows between unbounded preceding and current row
            ) as events_up_to,
            cast(sum(events) over (partition by {{ key_list }}) as bigint) as events_total
        from merged

    ),

    ranked as (

        select
            running.*,
            {%- for name, q in rollup_quantiles() %}
                cast(events_total - 1 as double) * {{ q }} as rank_{{ name }}{{ "," if not loop.last }}
            {%- endfor %}
        from running

    ),

    picked as (

        select
            {{ key_list }},
            max(events_total) as events,
            {%- for name, q in rollup_quantiles() %}
                max(rank_{{ name }}) - floor(max(rank_{{ name }})) as fraction_{{ name }},
                min(case when events_up_to > floor(rank_{{ name }}) then bucket end) as lower_{{ name }},
                min(case when events_up_to > ceil(rank_{{ name }}) then bucket end) as upper_{{ name }},
            {%- endfor %}
            {{ sorted_bucket_list('bucket', 'events') }} as latency_buckets
        from ranked
        group by {{ key_list }}

    )

    select
        {{ key_list }},
        events,
        {%- for name, q in rollup_quantiles() %}
            case
                when fraction_{{ name }} = 0 then {{ latency_bucket_value_of('lower_' ~ name) }}
                else {{ latency_bucket_value_of('lower_' ~ name) }} * (1 - fraction_{{ name }})
                    + {{ latency_bucket_value_of('upper_' ~ name) }} * fraction_{{ name }}
            end as latency_p{{ name }}_ms,
        {%- endfor %}
        latency_buckets
    from picked
{% endmacro %}
