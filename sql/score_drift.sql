-- Score distribution and drift by segment over time: for every scoring day up to :ds, segment
-- and score, the quartiles and mean, and the change of the mean against the same segment seven
-- days earlier (null when that day was not scored).
-- Grain: one row per scoring day x segment x score.
with scores as (
    select s.score_date, g.segment, s.engagement, s.revenue, s.loyalty, s.risk, s.digital
    from behavior_scores as s
    inner join subscriber_segments as g
        on g.subscriber_id = s.subscriber_id and g.segment_date = s.score_date
    where s.score_date <= :ds
),

long_scores as (
    select score_date, segment, 'engagement' as score, engagement as value from scores
    union all select score_date, segment, 'revenue', revenue from scores
    union all select score_date, segment, 'loyalty', loyalty from scores
    union all select score_date, segment, 'risk', risk from scores
    union all select score_date, segment, 'digital', digital from scores
),

distribution as (
    select
        score_date,
        segment,
        score,
        count(*) as subscribers,
        round(avg(value), 2) as mean,
        percentile_cont(0.25) within group (order by value) as p25,
        percentile_cont(0.5) within group (order by value) as median,
        percentile_cont(0.75) within group (order by value) as p75,
        min(value) as min_value,
        max(value) as max_value
    from long_scores
    group by score_date, segment, score
),

final as (
    select
        d.score_date,
        d.segment,
        d.score,
        d.subscribers,
        d.mean,
        round(d.p25, 2) as p25,
        round(d.median, 2) as median,
        round(d.p75, 2) as p75,
        d.min_value,
        d.max_value,
        w.mean as mean_week_before,
        round(d.mean - w.mean, 2) as drift_vs_week_before
    from distribution as d
    left join distribution as w
        on w.segment = d.segment
        and w.score = d.score
        and w.score_date = cast(d.score_date - interval 7 day as date)
)

select * from final
order by score_date, segment, score
