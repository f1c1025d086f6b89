{# Days whose events arrived since `relation` was last built: late data recomputes only these. #}
{% macro touched_days(relation, events) %}
    select distinct event_day
    from {{ events }}
    where ingested_at > (
        select coalesce(max(source_watermark), timestamp '1970-01-01') from {{ relation }}
    )
{% endmacro %}
