{{ config(**incremental_by_day('day')) }}

{#- Incremental: the days to copy again are those whose rows in the source differ from the
    ones copied (a day the source rebuilt carries a newer watermark, or another reference's
    fingerprint; a vanished version's rows are gone from the source), listed before the query
    runs so that the copy reads only those days. -#}
{%- set rebuild_days = [] -%}
{%- if is_incremental() -%}
    {%- set rebuild_days_query -%}
        with source_days as (

            select distinct day, model, model_version, reference_fingerprint, source_watermark
            from {{ ref('mart_feature_distribution_daily') }}

        ),

        copied_days as (

            select distinct day, model, model_version, reference_fingerprint, source_watermark
            from {{ this }}

        ),

        changed as (

            (select * from source_days except select * from copied_days)
            union all
            (select * from copied_days except select * from source_days)

        )

        select distinct day from changed order by day
    {%- endset -%}
    {%- set rebuild_days = query_values(rebuild_days_query) -%}
{%- endif -%}
{%- set rebuild_day_list = date_literals(rebuild_days) %}

-- The reference-decile and category bins of mart_feature_distribution_daily (no `ks` rows, a
-- sixth of the mart or less), with only the columns the Inputs and outputs dashboard's bin
-- charts read: what "Input feature vs training reference" and "Confidence histogram vs
-- reference" sum, so that they read a few rows per feature and day. Same grain and figures as
-- the mart's psi and category rows. Incremental by UTC day: the days the mart rebuilt since.
with bins as (

    select * from {{ ref('mart_feature_distribution_daily') }}
    where
        bin_kind in ('psi', 'category')
        {% if is_incremental() %}
            and day in ({{ rebuild_day_list }})
        {% endif %}

),

final as (

    select
        ---------- grain
        model,
        model_version,
        feature,
        day,
        bin_kind,
        bin_index,
        ---------- the bin and the feature
        bin_label,
        feature_role,
        ---------- counts and shares
        production_count,
        reference_share,
        ---------- what the next build compares
        reference_fingerprint,
        source_watermark
    from bins

)

select * from final
