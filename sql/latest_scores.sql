-- Latest scores per subscriber: each subscriber's most recent scoring day up to :ds, with the
-- segment of that day and how many days old the scores are.
-- Grain: one row per subscriber ever scored up to :ds.
with scored as (
    select
        subscriber_id, score_date, engagement, revenue, loyalty, risk, digital,
        row_number() over (partition by subscriber_id order by score_date desc) as recency_rank
    from behavior_scores
    where score_date <= :ds
),

latest as (
    select * from scored where recency_rank = 1
),

segments as (
    select subscriber_id, segment_date, segment from subscriber_segments where segment_date <= :ds
),

final as (
    select
        latest.subscriber_id,
        latest.score_date,
        segments.segment,
        latest.engagement,
        latest.revenue,
        latest.loyalty,
        latest.risk,
        latest.digital
    from latest
    left join segments
        on segments.subscriber_id = latest.subscriber_id and segments.segment_date = latest.score_date
)

select * from final
order by subscriber_id
