{#- A select of one row per `keys` group of `counts` (a relation or CTE with the keys, `value`
    and `events`: how many events had that value; rows with a null value are ignored) with
    `name` = the continuous quantile `fraction` of the group's values, the value repeated
    `events` times: what quantile() (DuckDB's quantile_cont) gives over the events themselves,
    bit for bit. The order statistics either side of rank (n - 1) * fraction (0-based, as a
    double, like quantile_cont) are the first values whose running count exceeds floor and
    ceil of that rank; they are interpolated as lower * (1 - d) + upper * d. So a partial
    aggregate with one row per (group, hour, value) gives exact quantiles of any set of hours.
    Groups with no non-null value have no row. -#}
{% macro quantile_of_counts(counts, keys, value, events, fraction, name) %}
    {%- set key_list = keys | join(', ') %}
    with merged as (

        select {{ key_list }}, {{ value }} as value, sum({{ events }}) as events
        from {{ counts }}
        where {{ value }} is not null
        group by {{ key_list }}, {{ value }}

    ),

    running as (

        select
            merged.*,
            sum(events) over (
                partition by {{ key_list }} order by value
                rows between unbounded preceding and current row
            ) as events_up_to,
            cast(sum(events) over (partition by {{ key_list }}) - 1 as double)
                * {{ fraction }} as rank_at
        from merged

    ),

    picked as (

        select
            {{ key_list }},
            max(rank_at) - floor(max(rank_at)) as fraction_above,
            min(case when events_up_to > floor(rank_at) then value end) as lower_value,
            min(case when events_up_to > ceil(rank_at) then value end) as upper_value
        from running
        group by {{ key_list }}

    )

    select
        {{ key_list }},
        case
            when fraction_above = 0 then lower_value
            else lower_value * (1 - fraction_above) + upper_value * fraction_above
        end as {{ name }}
    from picked
{% endmacro %}
