-- Drift of each model version's features (and outputs) per day against its training reference,
-- from the bins of mart_feature_distribution_daily: PSI over the decile or category bins with
-- shares floored at 1e-4 (no renormalisation, natural log); KS from the cumulative shares at the
-- percentile edges; Jensen–Shannon distance (base 2) over the category bins. Thresholds per
-- model from the drift_thresholds seed. Rebuilt whole from the compact distribution mart, so a
-- threshold change applies to every day.
with distribution as (

    select * from {{ ref('mart_feature_distribution_daily') }}

),

thresholds as (

    select * from {{ ref('drift_thresholds') }}

),

psi_bins as (

    select
        *,
        greatest(production_share, 1e-4) as production_share_floored,
        greatest(reference_share, 1e-4) as reference_share_floored
    from distribution
    where bin_kind in ('psi', 'category')

),

psi as (

    select
        model,
        model_version,
        feature,
        day,
        any_value(feature_type) as feature_type,
        any_value(feature_role) as feature_role,
        any_value(reference_version) as reference_version,
        any_value(production_total) as production_count,
        any_value(reference_total) as reference_count,
        count(*) as psi_bins,
        -- summed in bin order, so that a rebuild gives the same bits whatever the row order
        {{ ordered_sum(
            '(production_share_floored - reference_share_floored)'
            ~ ' * ln(production_share_floored / reference_share_floored)',
            ['bin_kind', 'bin_index'],
        ) }} as psi
    from psi_bins
    group by model, model_version, feature, day

),

ks_cumulative as (

    select
        model,
        model_version,
        feature,
        day,
        reference_share,
        sum(production_count) over cumulative / production_total as production_cdf,
        sum(reference_count) over cumulative / reference_total as reference_cdf
    from distribution
    where bin_kind = 'ks'
    window cumulative as (
        partition by model, model_version, feature, day
        order by bin_index
        rows between unbounded preceding and current row
    )

),

ks as (

    select
        model,
        model_version,
        feature,
        day,
        max(abs(production_cdf - reference_cdf)) as ks,
        -- the exact statistic lies in [ks, ks + the largest reference share of one bin]
        max(reference_share) as ks_resolution
    from ks_cumulative
    group by model, model_version, feature, day

),

js_bins as (

    select
        *,
        (production_share + reference_share) / 2 as mixture_share
    from distribution
    where bin_kind = 'category'

),

js as (

    select
        model,
        model_version,
        feature,
        day,
        sqrt(greatest(
            0.5 * {{ ordered_sum(
                'case when production_share > 0'
                ~ ' then production_share * log2(production_share / mixture_share) else 0 end',
                ['bin_index'],
            ) }}
            + 0.5 * {{ ordered_sum(
                'case when reference_share > 0'
                ~ ' then reference_share * log2(reference_share / mixture_share) else 0 end',
                ['bin_index'],
            ) }},
            0
        )) as js_distance
    from js_bins
    group by model, model_version, feature, day

),

model_thresholds as (

    select
        models.model,
        coalesce(specific.psi_warning, defaults.psi_warning) as psi_warning_threshold,
        coalesce(specific.psi_drift, defaults.psi_drift) as psi_drift_threshold,
        coalesce(specific.ks_warning, defaults.ks_warning) as ks_warning_threshold,
        coalesce(specific.js_warning, defaults.js_warning) as js_warning_threshold
    from (select distinct model from psi) as models
    left join thresholds as specific on models.model = specific.model
    left join thresholds as defaults on defaults.model = '*'

),

final as (

    select
        ---------- grain
        psi.model,
        psi.model_version,
        psi.feature,
        psi.day,
        psi.feature_type,
        psi.feature_role,
        ---------- the reference compared with
        psi.reference_version,
        psi.reference_version != psi.model_version as uses_fallback_reference,
        ---------- sample sizes
        psi.production_count,
        psi.reference_count,
        psi.psi_bins,
        ---------- statistics
        psi.psi,
        ks.ks,
        ks.ks_resolution,
        js.js_distance,
        ---------- verdicts
        case
            when psi.psi > model_thresholds.psi_drift_threshold then 'drift'
            when psi.psi >= model_thresholds.psi_warning_threshold then 'warning'
            else 'stable'
        end as status,
        coalesce(ks.ks >= model_thresholds.ks_warning_threshold, false) as ks_warning,
        coalesce(js.js_distance >= model_thresholds.js_warning_threshold, false) as js_warning,
        ---------- thresholds applied
        model_thresholds.psi_warning_threshold,
        model_thresholds.psi_drift_threshold,
        model_thresholds.ks_warning_threshold,
        model_thresholds.js_warning_threshold
    from psi
    inner join model_thresholds on psi.model = model_thresholds.model
    left join ks
        on psi.model = ks.model
            and psi.model_version = ks.model_version
            and psi.feature = ks.feature
            and psi.day = ks.day
    left join js
        on psi.model = js.model
            and psi.model_version = js.model_version
            and psi.feature = js.feature
            and psi.day = js.day

)

select * from final
