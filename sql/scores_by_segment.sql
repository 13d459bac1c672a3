-- Median scores per segment on the run date :ds.
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
        round(percentile_cont(0.5) within group (order by engagement), 1) as median_engagement,
        round(percentile_cont(0.5) within group (order by revenue), 1) as median_revenue,
        round(percentile_cont(0.5) within group (order by loyalty), 1) as median_loyalty,
        round(percentile_cont(0.5) within group (order by risk), 1) as median_risk,
        round(percentile_cont(0.5) within group (order by digital), 1) as median_digital
    from scores
    inner join segments using (subscriber_id)
    group by segments.segment
)

select * from final
order by subscribers desc
