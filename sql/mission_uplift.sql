-- Treated versus holdout uplift per mission category and segment, as of :ds.
-- Every assignment whose period has started is an observation, over its mission period so far
-- (period_start .. least(period_end, :ds)); the holdout's would-be missions are the control.
-- Outcomes: change of the engagement, revenue and risk scores (period end or :ds minus the
-- assignment day), recharge amount in EUR over the period, and the churn signal (1 when the
-- line had a CRM churn or suspension event in the period, else 0; its mean is a rate).
-- uplift = mean(treated) - mean(holdout); 95% confidence interval by the normal approximation
-- with unpooled (Welch) variances: uplift +- 1.96 * sqrt(var_t / n_t + var_h / n_h). Null when a
-- group has fewer than two observations. A subscriber with several missions of a category
-- counts once per mission.
-- Grain: one row per category x segment x outcome; segment 'all' is every segment together.
with assignments as (
    select
        assignment_id, subscriber_id, category, segment, holdout, assigned_ds, period_start,
        least(period_end, :ds) as observed_to
    from mission_assignments
    where assigned_ds <= :ds and period_start <= :ds
),

scores as (
    select subscriber_id, score_date, engagement, revenue, risk
    from behavior_scores
    where score_date <= :ds
),

score_changes as (
    select
        a.assignment_id,
        e.engagement - b.engagement as engagement_change,
        e.revenue - b.revenue as revenue_change,
        e.risk - b.risk as risk_change
    from assignments as a
    inner join scores as b on b.subscriber_id = a.subscriber_id and b.score_date = a.assigned_ds
    inner join scores as e on e.subscriber_id = a.subscriber_id and e.score_date = a.observed_to
),

recharges as (
    select a.assignment_id, coalesce(sum(d.recharge_amount), 0) as recharge_amount
    from assignments as a
    left join daily_activity as d
        on d.subscriber_id = a.subscriber_id and d.activity_date between a.period_start and a.observed_to
    group by a.assignment_id
),

churn_events as (
    select subscriber_id, event_date
    from events
    where event_type = 'crm' and event_subtype in ('churned', 'suspended') and event_date <= :ds
),

churn as (
    select a.assignment_id, max(case when c.subscriber_id is null then 0 else 1 end) as churn_signal
    from assignments as a
    left join churn_events as c
        on c.subscriber_id = a.subscriber_id and c.event_date between a.period_start and a.observed_to
    group by a.assignment_id
),

outcomes as (
    select
        a.category,
        a.segment,
        a.holdout,
        s.engagement_change,
        s.revenue_change,
        s.risk_change,
        cast(r.recharge_amount as double) as recharge_amount,
        cast(c.churn_signal as double) as churn_signal
    from assignments as a
    left join score_changes as s on s.assignment_id = a.assignment_id
    left join recharges as r on r.assignment_id = a.assignment_id
    left join churn as c on c.assignment_id = a.assignment_id
),

long_outcomes as (
    select category, segment, holdout, 'engagement_change' as outcome, engagement_change as value from outcomes
    union all select category, segment, holdout, 'revenue_change', revenue_change from outcomes
    union all select category, segment, holdout, 'risk_change', risk_change from outcomes
    union all select category, segment, holdout, 'recharge_amount', recharge_amount from outcomes
    union all select category, segment, holdout, 'churn_signal', churn_signal from outcomes
),

groups as (
    select
        category,
        coalesce(segment, 'all') as segment,
        outcome,
        count(case when not holdout then value end) as n_treated,
        count(case when holdout then value end) as n_holdout,
        avg(case when not holdout then value end) as mean_treated,
        avg(case when holdout then value end) as mean_holdout,
        var_samp(case when not holdout then value end) as var_treated,
        var_samp(case when holdout then value end) as var_holdout
    from long_outcomes
    group by grouping sets ((category, segment, outcome), (category, outcome))
),

estimates as (
    select
        *,
        mean_treated - mean_holdout as uplift,
        sqrt(var_treated / n_treated + var_holdout / n_holdout) as std_error
    from groups
),

final as (
    select
        category,
        segment,
        outcome,
        n_treated,
        n_holdout,
        round(mean_treated, 4) as mean_treated,
        round(mean_holdout, 4) as mean_holdout,
        round(uplift, 4) as uplift,
        round(std_error, 4) as std_error,
        round(uplift - 1.959964 * std_error, 4) as ci95_low,
        round(uplift + 1.959964 * std_error, 4) as ci95_high,
        case
            when uplift - 1.959964 * std_error > 0 or uplift + 1.959964 * std_error < 0 then true
            else false
        end as significant
    from estimates
)

select * from final
order by category, segment, outcome
