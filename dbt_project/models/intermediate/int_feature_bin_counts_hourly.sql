-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_hours, read when incremental)
{{ config(**incremental_by_hour('hour', 'event_day')) }}

{#- Incremental: the hours to recompute are listed before the query runs, so that DuckDB prunes
    fct_inferences before unnesting features. They are the hours new events touch, the hours
    built against a reference that changed since (or vanished), and the hours of versions that
    have a reference but no rows. -#}
{%- set rebuild_hours = [] -%}
{%- if is_incremental() -%}
    {%- set rebuild_hours_query -%}
        with matched_versions as (

            select * from {{ ref('int_model_versions_matched_to_references') }}
            where reference_version is not null

        ),

        built as (

            select distinct
                hour,
                model,
                model_version,
                reference_fingerprint
            from {{ this }}

        ),

        rebuilt as (

            {{ touched_hours(this, ref('fct_inferences')) }}
            union
            select built.hour as event_hour
            from built
            left join matched_versions
                on built.model = matched_versions.model
                    and built.model_version = matched_versions.model_version
            where built.reference_fingerprint is distinct from matched_versions.reference_fingerprint
            union
            select {{ hours_between(
                'cast(first_day as timestamp)', 'cast(last_day as timestamp) + interval 23 hours'
            ) }}
            from matched_versions
            where not exists (
                select 1 from built
                where built.model = matched_versions.model
                    and built.model_version = matched_versions.model_version
            )

        )

        select event_hour from rebuilt
        where event_hour is not null
        order by event_hour
    {%- endset -%}
    {%- set rebuild_hours = query_values(rebuild_hours_query) -%}
{%- endif %}

-- Production values of each model version, feature and UTC hour counted in the bins of the
-- version's reference (the mergeable partial aggregate of mart_feature_distribution_daily):
-- one row per non-empty bin, and a `total` row per feature with the hour's compared values.
-- Counts of the same bin add up across hours, so a day's distribution (and its PSI, KS and JS)
-- is the sum of its hours', exactly. Incremental by UTC hour (see above).
with matched_versions as (

    select * from {{ ref('int_model_versions_matched_to_references') }}
    where reference_version is not null

),

feature_values as (

    select * from {{ ref('int_inference_features_unpivoted') }}
    {% if is_incremental() %}
        where {{ in_hours('hour', 'event_day', rebuild_hours) }}
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
        feature_values.hour,
        feature_values.event_day,
        feature_values.model,
        feature_values.model_version,
        matched_versions.reference_version,
        matched_versions.reference_fingerprint,
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
        hour,
        event_day,
        model,
        model_version,
        reference_version,
        reference_fingerprint,
        feature,
        value_num,
        sum(value_count) as value_count
    from compared_values
    where feature_type = 'numeric'
    group by
        hour, event_day, model, model_version, reference_version, reference_fingerprint, feature,
        value_num

),

value_bins as (

    -- each distinct value once (over hours and versions), in its bin of each numeric kind
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
        numeric_values.hour,
        numeric_values.event_day,
        numeric_values.model,
        numeric_values.model_version,
        numeric_values.reference_version,
        numeric_values.reference_fingerprint,
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
        compared_values.hour,
        compared_values.event_day,
        compared_values.model,
        compared_values.model_version,
        compared_values.reference_version,
        compared_values.reference_fingerprint,
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

production_totals as (

    select
        hour,
        event_day,
        model,
        model_version,
        reference_version,
        reference_fingerprint,
        feature,
        'total' as bin_kind,
        0 as bin_index,
        sum(value_count) as production_count
    from compared_values
    group by
        hour, event_day, model, model_version, reference_version, reference_fingerprint, feature

),

counts as (

    select * from numeric_counts
    union all
    select * from category_counts
    union all
    select * from production_totals

),

final as (

    select
        counts.*,
        watermark.source_watermark
    from counts
    cross join watermark

)

select * from final
