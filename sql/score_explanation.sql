-- Why a risk score is what it is: the components behind it, for the riskiest subscribers.
-- Grain: one row per subscriber (top 20 by risk) per risk component.
-- Spark SQL only: explodes a map (in DuckDB: unnest(map_entries(risk_breakdown))).
with riskiest as (
    select subscriber_id, risk, risk_breakdown, config_version
    from behavior_scores
    where score_date = :ds
    order by risk desc, subscriber_id
    limit 20
),

components as (
    select subscriber_id, risk, config_version, explode(risk_breakdown) as (component, detail)
    from riskiest
),

final as (
    select
        subscriber_id,
        risk,
        component,
        detail.raw as raw_value,
        detail.normalized,
        detail.weight,
        detail.contribution,
        detail.missing,
        detail.degraded,
        config_version
    from components
)

select * from final
order by risk desc, subscriber_id, contribution desc
