{{ config(materialized='table') }}

{%- set top_k = var('drift_categorical_top_k', 20) | int %}

-- Every category of a categorical reference feature and the bin it counts in: the top
-- {{ top_k }} by reference frequency (ties by name) keep a bin of their own (bin_index = rank),
-- the rest share `__other__` (bin_index {{ top_k + 1 }}). Bin 0, `__unseen__`, is for values the
-- reference never saw (int_reference_bins).
with reference_values as (

    select * from {{ ref('int_reference_values_unpivoted') }}
    where feature_type = 'categorical'

),

counted as (

    select
        model,
        reference_version,
        feature,
        feature_role,
        value_cat as category,
        count(*) as reference_count
    from reference_values
    group by model, reference_version, feature, feature_role, value_cat

),

ranked as (

    select
        *,
        row_number() over (
            partition by model, reference_version, feature
            order by reference_count desc, category asc
        ) as category_rank
    from counted

),

binned as (

    select
        ---------- ids
        model,
        reference_version,
        feature,
        feature_role,
        category,
        ---------- bin
        category_rank,
        least(category_rank, {{ top_k + 1 }}) as bin_index,
        case when category_rank <= {{ top_k }} then category else '__other__' end as bin_label,
        ---------- numerics
        reference_count
    from ranked

)

select * from binned
