-- Every model version seen in production, and whether the two files a team adds for it are in
-- the lake (docs/onboarding.md): its own training reference and its registry entry. Without
-- them its traffic, latency and error figures are complete, but its drift is missing (or
-- measured against an earlier version's reference) and its lineage is empty: `warning` says
-- which, on the Data quality dashboard, instead of leaving those charts silently blank.
with versions as (

    select * from {{ ref('int_model_versions_matched_to_references') }}

),

registry as (

    select
        model,
        model_version
    from {{ ref('stg_lake__registry') }}

),

flagged as (

    select
        versions.model,
        versions.model_version,
        versions.first_day,
        versions.last_day,
        coalesce(not versions.uses_fallback_reference, false) as has_reference,
        versions.reference_version,
        registry.model is not null as has_registry_entry
    from versions
    left join registry
        on versions.model = registry.model
            and versions.model_version = registry.model_version

),

final as (

    select
        ---------- ids
        model,
        model_version,
        ---------- days the version served
        first_day,
        last_day,
        ---------- coverage
        has_reference,
        reference_version,
        has_registry_entry,
        case when has_reference and has_registry_entry then 'ok' else 'warning' end as status,
        nullif(concat_ws(
            '; ',
            case
                when reference_version is null
                    then 'no training reference: no feature distributions or drift (add reference/'
                        || model || '/' || model_version || '/ with `inferwatch model reference`)'
            end,
            case
                when not has_reference and reference_version is not null
                    then 'no reference of its own: drift is measured against '
                        || reference_version || '''s training reference'
            end,
            case
                when not has_registry_entry
                    then 'no registry entry: no commit, training data, deploy time or training '
                        || 'metrics on Models and lineage (add it with `inferwatch model register`)'
            end
        ), '') as warning
    from flagged

)

select * from final
