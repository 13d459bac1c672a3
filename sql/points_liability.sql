-- Loyalty points issued, expired and outstanding per day up to :ds. Outstanding points (the
-- liability the operator carries) are the running sum of every ledger entry up to the day.
-- Grain: one row per ledger day with any movement.
with entries as (
    select entry_ds, entry_type, points
    from loyalty_ledger
    where entry_ds <= :ds
),

daily as (
    select
        entry_ds,
        sum(case when points > 0 then points else 0 end) as points_issued,
        sum(case when entry_type = 'mission_completion' then points else 0 end) as points_missions,
        sum(case when entry_type = 'badge_award' then points else 0 end) as points_badges,
        -sum(case when points < 0 then points else 0 end) as points_expired,
        sum(points) as points_net,
        count(*) as entries
    from entries
    group by entry_ds
),

final as (
    select
        entry_ds,
        points_issued,
        points_missions,
        points_badges,
        points_expired,
        points_net,
        sum(points_net) over (order by entry_ds rows between unbounded preceding and current row) as points_outstanding,
        entries
    from daily
)

select * from final
order by entry_ds
