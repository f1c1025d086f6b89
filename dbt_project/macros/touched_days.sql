{# Days whose events arrived since `relation` was last built (late data recomputes only these),
   plus days whose events a rewritten object dropped since then. #}
{% macro touched_days(relation, events) %}
    select distinct event_day
    from {{ events }}
    where ingested_at > (
        select coalesce(max(source_watermark), timestamp '1970-01-01') from {{ relation }}
    )
    union
    select event_day
    from {{ ref('int_superseded_event_days') }}
    where superseded_at > (
        select coalesce(max(source_watermark), timestamp '1970-01-01') from {{ relation }}
    )
{% endmacro %}


{# The events a day-incremental mart reads: all of them on a full build, else the touched days. #}
{% macro events_of_touched_days() %}
    select * from {{ ref('fct_inferences') }}
    {% if is_incremental() %}
        where event_day in ({{ touched_days(this, ref('fct_inferences')) }})
    {% endif %}
{% endmacro %}


{# The watermark a day-incremental mart stores in every row it builds (see touched_days). #}
{% macro events_watermark() %}
    select max(ingested_at) as source_watermark from {{ ref('fct_inferences') }}
{% endmacro %}
