-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_days, called only when incremental)
{{ config(**incremental_by_day('day')) }}

{#- Incremental: the days to recompute are listed before the query runs, so that DuckDB prunes
    fct_inferences by day before unnesting features (a semi-join on a subquery is planned after
    the unnest). They are the days new events touch, the days built against a reference that
    changed since (or vanished), and the days of versions that have a reference but no rows. -#}
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
{%- set rebuild_day_list = (
    "date '" ~ (rebuild_days | join("', date '")) ~ "'" if rebuild_days else "null"
) %}

-- Production counts and shares per model version, feature, day and reference bin, with the
-- reference's share beside them; every bin of the reference appears, empty ones with 0.
-- Incremental by UTC day: a build recomputes whole days (see above).
with matched_versions as (

    select * from {{ ref('int_model_versions_matched_to_references') }}
    where reference_version is not null

),

feature_values as (

    select * from {{ ref('int_inference_features_unpivoted') }}
    {% if is_incremental() %}
        where event_day in ({{ rebuild_day_list }})
    {% endif %}

),

bins as (

    select * from {{ ref('int_reference_bins') }}

),

categories as (

    select * from {{ ref('int_reference_categories_binned') }}

),

watermark as (

    {{ events_watermark() }}

),

reference_features as (

    select distinct
        model,
        reference_version,
        feature,
        feature_type
    from bins

),

compared_values as (

    -- production values of the features the reference has, numbers for numeric ones
    select
        feature_values.event_day as day,
        feature_values.model,
        feature_values.model_version,
        matched_versions.reference_version,
        feature_values.feature,
        reference_features.feature_type,
        feature_values.value_num,
        feature_values.value_cat,
        feature_values.value_count
    from feature_values
    inner join matched_versions
        on feature_values.model = matched_versions.model
            and feature_values.model_version = matched_versions.model_version
    inner join reference_features
        on matched_versions.model = reference_features.model
            and matched_versions.reference_version = reference_features.reference_version
            and feature_values.feature = reference_features.feature
    where
        (reference_features.feature_type = 'numeric' and feature_values.value_num is not null)
        or (reference_features.feature_type = 'categorical' and feature_values.value_cat is not null)

),

numeric_values as (

    select
        day,
        model,
        model_version,
        reference_version,
        feature,
        value_num,
        sum(value_count) as value_count
    from compared_values
    where feature_type = 'numeric'
    group by day, model, model_version, reference_version, feature, value_num

),

value_bins as (

    -- each distinct value once (over days and versions), in its bin of each numeric kind
    select
        distinct_values.model,
        distinct_values.reference_version,
        distinct_values.feature,
        distinct_values.value_num,
        bins.bin_kind,
        bins.bin_index
    from (
        select distinct
            model,
            reference_version,
            feature,
            value_num
        from numeric_values
    ) as distinct_values
    cross join (values ('psi'), ('ks')) as kinds (bin_kind)
    {{ join_bin_of_value('bins', 'distinct_values.value_num', [
        ('distinct_values.model', 'bins.model'),
        ('distinct_values.reference_version', 'bins.reference_version'),
        ('distinct_values.feature', 'bins.feature'),
        ('kinds.bin_kind', 'bins.bin_kind'),
    ]) }}

),

numeric_counts as (

    select
        numeric_values.day,
        numeric_values.model,
        numeric_values.model_version,
        numeric_values.feature,
        value_bins.bin_kind,
        value_bins.bin_index,
        sum(numeric_values.value_count) as production_count
    from numeric_values
    inner join value_bins
        on numeric_values.model = value_bins.model
            and numeric_values.reference_version = value_bins.reference_version
            and numeric_values.feature = value_bins.feature
            and numeric_values.value_num = value_bins.value_num
    group by all

),

category_counts as (

    select
        compared_values.day,
        compared_values.model,
        compared_values.model_version,
        compared_values.feature,
        'category' as bin_kind,
        coalesce(categories.bin_index, 0) as bin_index,
        sum(compared_values.value_count) as production_count
    from compared_values
    left join categories
        on compared_values.model = categories.model
            and compared_values.reference_version = categories.reference_version
            and compared_values.feature = categories.feature
            and compared_values.value_cat = categories.category
    where compared_values.feature_type = 'categorical'
    group by all

),

production_counts as (

    select * from numeric_counts
    union all
    select * from category_counts

),

production_totals as (

    select
        day,
        model,
        model_version,
        reference_version,
        feature,
        cast(sum(value_count) as bigint) as production_total
    from compared_values
    group by day, model, model_version, reference_version, feature

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
