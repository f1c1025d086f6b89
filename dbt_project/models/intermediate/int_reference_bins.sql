{{ config(materialized='table') }}

{#- 0 or not a number (as under sqlfluff's templater) means the default -#}
{%- set ks_bins = (var('drift_ks_bins', 100) | int) or 100 -%}

-- The bins production is counted in, fixed by each reference (model × reference version ×
-- feature), with the reference's own count and share in each.
-- Numeric, kind `psi`: edges at the deciles; kind `ks`: edges at the quantiles 0, 1/n, .., 1
-- (n = var drift_ks_bins, default 100). Quantiles interpolate linearly (numpy's default
-- method, bit for bit); repeated edges merge.
-- Bins are right-closed, (lower, upper]; the first is open below and the last open above, so
-- values outside the reference range land in them.
-- Categorical, kind `category`: from int_reference_categories_binned, plus bin 0 `__unseen__`.
with reference_values as (

    select * from {{ ref('int_reference_values_unpivoted') }}

),

categories as (

    select * from {{ ref('int_reference_categories_binned') }}

),

numeric_values as (

    select * from reference_values
    where feature_type = 'numeric'

),

ranked_values as (

    select
        model,
        reference_version,
        feature,
        feature_role,
        value_num,
        -- the next order statistic (the last one's is itself)
        coalesce(lead(value_num) over value_order, value_num) as next_value_num,
        row_number() over value_order - 1 as value_rank,
        count(*) over (partition by model, reference_version, feature) as value_count
    from numeric_values
    window value_order as (partition by model, reference_version, feature order by value_num)

),

quantile_levels as (

    select
        'psi' as bin_kind,
        levels.level / 10 as quantile_level
    from {{ integer_range(1, 10) }} as levels (level)
    union all
    select
        'ks' as bin_kind,
        levels.level / {{ ks_bins }} as quantile_level
    from {{ integer_range(0, ks_bins + 1) }} as levels (level)

),

positions as (

    select
        features.*,
        quantile_levels.bin_kind,
        (features.value_count - 1) * quantile_levels.quantile_level as position
    from (
        select distinct
            model,
            reference_version,
            feature,
            feature_role,
            value_count
        from ranked_values
    ) as features
    cross join quantile_levels

),

quantiles as (

    -- linear interpolation between the order statistics around (n - 1) * level, computed as
    -- numpy.quantile does it (from the nearer neighbour), so that a quantile between two equal
    -- values is exactly that value; DuckDB's quantile_cont can miss it by a bit, which moves
    -- the values at that edge into the next bin
    select
        positions.model,
        positions.reference_version,
        positions.feature,
        positions.feature_role,
        positions.bin_kind,
        positions.position - floor(positions.position) as fraction,
        ranked_values.value_num as lower_value,
        ranked_values.next_value_num as upper_value
    from positions
    inner join ranked_values
        on positions.model = ranked_values.model
            and positions.reference_version = ranked_values.reference_version
            and positions.feature = ranked_values.feature
            and cast(floor(positions.position) as bigint) = ranked_values.value_rank

),

edges as (

    select distinct
        model,
        reference_version,
        feature,
        feature_role,
        bin_kind,
        case
            when fraction >= 0.5 then upper_value - (upper_value - lower_value) * (1 - fraction)
            else lower_value + (upper_value - lower_value) * fraction
        end as edge
    from quantiles

),

numeric_bins as (

    -- n distinct edges make n + 1 bins: (-inf, edge 1], (edge 1, edge 2], .., (edge n, +inf)
    select
        model,
        reference_version,
        feature,
        feature_role,
        bin_kind,
        row_number() over edge_order as bin_index,
        lag(edge) over edge_order as bin_lower,
        edge as bin_upper
    from edges
    window edge_order as (partition by model, reference_version, feature, bin_kind order by edge)
    union all
    select
        model,
        reference_version,
        feature,
        feature_role,
        bin_kind,
        count(*) + 1 as bin_index,
        max(edge) as bin_lower,
        cast(null as double) as bin_upper
    from edges
    group by model, reference_version, feature, feature_role, bin_kind

),

numeric_counts as (

    select
        numeric_bins.model,
        numeric_bins.reference_version,
        numeric_bins.feature,
        numeric_bins.bin_kind,
        numeric_bins.bin_index,
        count(*) as reference_count
    from numeric_values
    cross join (values ('psi'), ('ks')) as kinds (bin_kind)
    {{ join_bin_of_value('numeric_bins', 'numeric_values.value_num', [
        ('numeric_values.model', 'numeric_bins.model'),
        ('numeric_values.reference_version', 'numeric_bins.reference_version'),
        ('numeric_values.feature', 'numeric_bins.feature'),
        ('kinds.bin_kind', 'numeric_bins.bin_kind'),
    ]) }}
    group by all

),

numeric_binned as (

    select
        numeric_bins.model,
        numeric_bins.reference_version,
        numeric_bins.feature,
        'numeric' as feature_type,
        numeric_bins.feature_role,
        numeric_bins.bin_kind,
        numeric_bins.bin_index,
        '(' || coalesce(cast(numeric_bins.bin_lower as string), '-inf') || ', '
        || coalesce(cast(numeric_bins.bin_upper as string), 'inf') || ']' as bin_label,
        numeric_bins.bin_lower,
        numeric_bins.bin_upper,
        coalesce(numeric_counts.reference_count, 0) as reference_count
    from numeric_bins
    left join numeric_counts
        on numeric_bins.model = numeric_counts.model
            and numeric_bins.reference_version = numeric_counts.reference_version
            and numeric_bins.feature = numeric_counts.feature
            and numeric_bins.bin_kind = numeric_counts.bin_kind
            and numeric_bins.bin_index = numeric_counts.bin_index

),

category_bins as (

    select
        model,
        reference_version,
        feature,
        'categorical' as feature_type,
        feature_role,
        'category' as bin_kind,
        bin_index,
        bin_label,
        cast(null as double) as bin_lower,
        cast(null as double) as bin_upper,
        sum(reference_count) as reference_count
    from categories
    group by model, reference_version, feature, feature_role, bin_index, bin_label
    union all
    select distinct
        model,
        reference_version,
        feature,
        'categorical' as feature_type,
        feature_role,
        'category' as bin_kind,
        0 as bin_index,
        '__unseen__' as bin_label,
        cast(null as double) as bin_lower,
        cast(null as double) as bin_upper,
        0 as reference_count
    from categories

),

all_bins as (

    select * from numeric_binned
    union all
    select * from category_bins

),

shared as (

    select
        *,
        sum(reference_count) over (
            partition by model, reference_version, feature, bin_kind
        ) as reference_total
    from all_bins

),

fingerprints as (

    -- identity of a whole reference: when it changes, the days built against it are re-binned
    select
        model,
        reference_version,
        md5(reference_version || ':' || {{ ordered_string_agg(
            "concat_ws('|', feature, bin_kind, bin_index, bin_label, bin_lower, bin_upper, reference_count)",
            ';',
            ['feature', 'bin_kind', 'bin_index'],
        ) }}) as reference_fingerprint
    from all_bins
    group by model, reference_version

),

final as (

    select
        ---------- ids
        shared.model,
        shared.reference_version,
        shared.feature,
        shared.feature_type,
        shared.feature_role,
        ---------- bin
        shared.bin_kind,
        shared.bin_index,
        shared.bin_label,
        shared.bin_lower,
        shared.bin_upper,
        ---------- reference counts
        shared.reference_count,
        shared.reference_total,
        shared.reference_count / shared.reference_total as reference_share,
        ---------- identity of the reference version's bins
        fingerprints.reference_fingerprint
    from shared
    inner join fingerprints
        on shared.model = fingerprints.model
            and shared.reference_version = fingerprints.reference_version

)

select * from final
