-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_days, called only when incremental)
{{ config(**incremental_by_day('day')) }}

{#- Incremental: the days to recompute are listed before the query runs, so that DuckDB prunes
    the hourly partial counts by day. They are the days new events touch, the days built
    against a reference that changed since (or vanished), and the days of versions that have a
    reference but no rows. -#}
{%- set rebuild_days = [] -%}
{%- if is_incremental() -%}
    {%- set rebuild_days_query -%}
        with matched_versions as (

            select * from {{ ref('int_model_versions_matched_to_references') }}
            where reference_version is not null

        ),

        built as (

            select distinct
                day,
                model,
                model_version,
                reference_fingerprint
            from {{ this }}

        )

        {{ touched_days(this, ref('fct_inferences')) }}
        union
        select built.day as event_day
        from built
        left join matched_versions
            on built.model = matched_versions.model
                and built.model_version = matched_versions.model_version
        where built.reference_fingerprint is distinct from matched_versions.reference_fingerprint
        union
        select {{ days_between('first_day', 'last_day') }}
        from matched_versions
        where not exists (
            select 1 from built
            where built.model = matched_versions.model
                and built.model_version = matched_versions.model_version
        )
        order by event_day
    {%- endset -%}
    {%- set rebuild_days = query_values(rebuild_days_query) -%}
{%- endif -%}
{%- set rebuild_day_list = date_literals(rebuild_days) %}

-- Production counts and shares per model version, feature, day and reference bin, with the
-- reference's share beside them; every bin of the reference appears, empty ones with 0.
-- The day's counts are the sums of its hours' in int_feature_bin_counts_hourly (exact: counts
-- merge), so a late event costs its hour's binning and a re-sum of 24 small rows per bin, not
-- a rescan of its day's events. Incremental by UTC day: a build recomputes whole days (above).
with matched_versions as (

    select * from {{ ref('int_model_versions_matched_to_references') }}
    where reference_version is not null

),

hourly_counts as (

    -- rows binned against the version's current reference only
    select hourly.*
    from {{ ref('int_feature_bin_counts_hourly') }} as hourly
    inner join matched_versions
        on hourly.model = matched_versions.model
            and hourly.model_version = matched_versions.model_version
            and hourly.reference_version = matched_versions.reference_version
            and hourly.reference_fingerprint = matched_versions.reference_fingerprint
    {% if is_incremental() %}
        where hourly.event_day in ({{ rebuild_day_list }})
    {% endif %}

),

bins as (

    select * from {{ ref('int_reference_bins') }}

),

watermark as (

    {{ events_watermark() }}

),

production_counts as (

    select
        event_day as day,
        model,
        model_version,
        feature,
        bin_kind,
        bin_index,
        sum(production_count) as production_count
    from hourly_counts
    where bin_kind != 'total'
    group by event_day, model, model_version, feature, bin_kind, bin_index

),

production_totals as (

    select
        event_day as day,
        model,
        model_version,
        reference_version,
        feature,
        cast(sum(production_count) as bigint) as production_total
    from hourly_counts
    where bin_kind = 'total'
    group by event_day, model, model_version, reference_version, feature

),

final as (

    select
        ---------- grain
        production_totals.model,
        production_totals.model_version,
        production_totals.feature,
        production_totals.day,
        bins.bin_kind,
        bins.bin_index,
        ---------- the bin
        bins.bin_label,
        bins.bin_lower,
        bins.bin_upper,
        bins.feature_type,
        bins.feature_role,
        ---------- production
        coalesce(production_counts.production_count, 0) as production_count,
        production_totals.production_total,
        coalesce(production_counts.production_count, 0) / production_totals.production_total
            as production_share,
        ---------- reference
        bins.reference_version,
        bins.reference_count,
        bins.reference_total,
        bins.reference_share,
        bins.reference_fingerprint,
        watermark.source_watermark
    from production_totals
    inner join bins
        on production_totals.model = bins.model
            and production_totals.reference_version = bins.reference_version
            and production_totals.feature = bins.feature
    left join production_counts
        on production_totals.day = production_counts.day
            and production_totals.model = production_counts.model
            and production_totals.model_version = production_counts.model_version
            and production_totals.feature = production_counts.feature
            and bins.bin_kind = production_counts.bin_kind
            and bins.bin_index = production_counts.bin_index
    cross join watermark

)

select * from final
