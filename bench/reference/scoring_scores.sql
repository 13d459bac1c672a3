-- The five 0-100 behavior scores for one day, after conf/scoring.yaml and jobs/scoring/.
-- Grain: one row per subscriber of `features` (scoring_features.sql), with every component's
-- value (normalised, direction applied, missing filled) as <score>__<component> and the scores.
-- Percentile components rank a value among 99 cut points: the values at ranks ceil(q * n),
-- q = 0.01 .. 0.99, of the subscribers' non-null transformed values.
-- A score is 100 x the weighted sum of its components, weights rescaled over the counted
-- components (a missing `exclude` component is not counted), clamped to [0, 100], 2 decimals.
with percentile_inputs as (
    select 'engagement__volume' as component, ln(1 + greatest(usage_events_30, 0)) as v from features where usage_events_30 is not null
    union all
    select 'revenue__spend_level', ln(1 + greatest(spend_30, 0)) from features where spend_30 is not null
    union all
    select 'revenue__arpu', ln(1 + greatest(dwh_arpu, 0)) from features where dwh_arpu is not null
    union all
    select 'digital__self_service', ln(1 + greatest(self_service_30, 0)) from features where self_service_30 is not null
),

ranked as (
    select
        component,
        v,
        row_number() over (partition by component order by v) as position,
        count(*) over (partition by component) as n
    from percentile_inputs
),

quantiles as (
    select i, i::double / 100::double as q from range(1, 100) t(i)
),

cut_rows as (
    select r.component, list(r.v order by quantiles.i) as cuts
    from ranked r
    join quantiles on r.position = ceil(quantiles.q * r.n::double)
    group by r.component
),

cuts as (  -- one row: each percentile component's cut points (null when it has no value)
    select
        (select cuts from cut_rows where component = 'engagement__volume') as engagement__volume,
        (select cuts from cut_rows where component = 'revenue__spend_level') as revenue__spend_level,
        (select cuts from cut_rows where component = 'revenue__arpu') as revenue__arpu,
        (select cuts from cut_rows where component = 'digital__self_service') as digital__self_service
),

components as (
    select
        f.subscriber_id,
        f.dwh_arpu,
        f.churn_probability,
        component(f.active_days_30, minmax(f.active_days_30, 0, 30), 0.0) as engagement__active_days,
        component(f.days_since_active, 1 - minmax(f.days_since_active, 0, 30), 0.0) as engagement__recency,
        component(f.services_30, minmax(f.services_30, 0, 4), 0.0) as engagement__breadth,
        component(f.usage_events_30, percentile_rank(ln(1 + greatest(f.usage_events_30, 0)), c.engagement__volume), 0.0) as engagement__volume,
        component(f.spend_30, percentile_rank(ln(1 + greatest(f.spend_30, 0)), c.revenue__spend_level), 0.0) as revenue__spend_level,
        component(f.dwh_arpu, percentile_rank(ln(1 + greatest(f.dwh_arpu, 0)), c.revenue__arpu), 0.0) as revenue__arpu,
        component(f.spend_trend, minmax(f.spend_trend, 0.5, 1.5), 0.5) as revenue__spend_trend,
        component(f.tenure_days, minmax(f.tenure_days, 0, 3650), 0.0) as loyalty__tenure,
        component(f.activity_consistency, minmax(f.activity_consistency, 0, 1), 0.0) as loyalty__consistency,
        component(f.plan_changed_90d, 1 - minmax(f.plan_changed_90d, 0, 1), 0.0) as loyalty__plan_stability,
        component(f.recharge_weeks_8, minmax(f.recharge_weeks_8, 0, 8), 0.0) as loyalty__payment_cadence,
        component(f.on_time_ratio_90, minmax(f.on_time_ratio_90, 0, 1), 0.5) as loyalty__on_time_payments,
        component(f.usage_trend, 1 - minmax(f.usage_trend, 0.3, 1.0), 0.5) as risk__usage_decline,
        component(f.days_since_active, minmax(f.days_since_active, 0, 21), 0.0) as risk__inactivity,
        component(f.prepaid_recharge_gap, minmax(f.prepaid_recharge_gap, 7, 35), 0.0) as risk__recharge_gap,
        component(f.failed_payments_90, minmax(f.failed_payments_90, 0, 2), 0.0) as risk__payment_problems,
        component(f.late_payments_90, minmax(f.late_payments_90, 0, 2), 0.0) as risk__late_payments,
        component(f.complaints_30, minmax(f.complaints_30, 0, 2), 0.0) as risk__complaints,
        component(f.dropped_call_rate_30, minmax(f.dropped_call_rate_30, 0.02, 0.08), 0.5) as risk__dropped_calls,
        component(f.avg_throughput_30, 1 - minmax(f.avg_throughput_30, 3000, 12000), 0.5) as risk__low_throughput,
        component(f.churn_probability, minmax(f.churn_probability, 0, 1), 0.0) as risk__ml_churn,
        component(f.digital_share_30, minmax(f.digital_share_30, 0, 1), 0.0) as digital__digital_share,
        component(f.app_logins_30, minmax(ln(1 + greatest(f.app_logins_30, 0)), 0, 3.4), 0.0) as digital__app_logins,
        component(f.self_service_30, percentile_rank(ln(1 + greatest(f.self_service_30, 0)), c.digital__self_service), 0.0) as digital__self_service,
        component(f.digital_payment_share_90, minmax(f.digital_payment_share_90, 0, 1), 0.0) as digital__digital_payments
    from features f
    cross join cuts c
),

final as (
    select
        subscriber_id,
        round(least(greatest(100 * (0.35 * engagement__active_days + 0.25 * engagement__recency
                                    + 0.2 * engagement__breadth + 0.2 * engagement__volume) / 1.0, 0), 100), 2) as engagement,
        -- arpu is excluded (not counted) when the subscriber has no DWH ARPU
        round(least(greatest(100 * (0.35 * revenue__spend_level + 0.5 * revenue__arpu + 0.15 * revenue__spend_trend)
                             / (0.35 + 0.15 + case when dwh_arpu is not null then 0.5 else 0 end), 0), 100), 2) as revenue,
        round(least(greatest(100 * (0.35 * loyalty__tenure + 0.3 * loyalty__consistency + 0.1 * loyalty__plan_stability
                                    + 0.15 * loyalty__payment_cadence + 0.1 * loyalty__on_time_payments) / 1.0, 0), 100), 2) as loyalty,
        -- ml_churn is excluded when the subscriber has no churn prediction
        round(least(greatest(100 * (0.25 * risk__usage_decline + 0.1 * risk__inactivity + 0.1 * risk__recharge_gap
                                    + 0.1 * risk__payment_problems + 0.05 * risk__late_payments + 0.1 * risk__complaints
                                    + 0.2 * risk__dropped_calls + 0.1 * risk__low_throughput + 0.3 * risk__ml_churn)
                             / (1.0 + case when churn_probability is not null then 0.3 else 0 end), 0), 100), 2) as risk,
        round(least(greatest(100 * (0.3 * digital__digital_share + 0.25 * digital__app_logins + 0.2 * digital__self_service
                                    + 0.25 * digital__digital_payments) / 1.0, 0), 100), 2) as digital,
        columns('__')
    from components
)

select * from final
