-- Score distribution per segment on one day.
-- Grain: one row per segment.
with scores as (
    select subscriber_id, engagement, revenue, loyalty, risk, digital
    from behavior_scores
    where score_date = :ds
),

segments as (
    select subscriber_id, segment
    from subscriber_segments
    where segment_date = :ds
),

final as (
    select
        segments.segment,
        count(*) as subscribers,
        round(percentile_approx(engagement, 0.5), 1) as median_engagement,
        round(percentile_approx(revenue, 0.5), 1) as median_revenue,
        round(percentile_approx(loyalty, 0.5), 1) as median_loyalty,
        round(percentile_approx(risk, 0.5), 1) as median_risk,
        round(percentile_approx(digital, 0.5), 1) as median_digital
    from scores
    inner join segments using (subscriber_id)
    group by segments.segment
)

select * from final
order by subscribers desc
