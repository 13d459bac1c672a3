-- What the programme gave out on the run date :ds: missions completed, badges awarded, points
-- credited and expired, tier changes and campaign triggers by type, with counts and points.
-- Grain: one row per reward kind.
with completions as (
    select 'missions_completed' as kind, count(*) as n, sum(reward_points) as points
    from mission_progress
    where progress_ds = :ds and newly_completed and not holdout
),

awards as (
    select concat('badges_', level) as kind, count(*) as n, sum(points) as points
    from badge_awards
    where awarded_ds = :ds and not holdout
    group by level
),

ledger as (
    select concat('ledger_', entry_type) as kind, count(*) as n, sum(points) as points
    from loyalty_ledger
    where entry_ds = :ds
    group by entry_type
),

tiers as (
    select concat('tier_', tier_change, '_to_', tier) as kind, count(*) as n, cast(null as bigint) as points
    from loyalty_tiers
    where tier_ds = :ds and tier_change is not null
    group by tier_change, tier
),

triggers as (
    select concat('trigger_', trigger_type) as kind, count(*) as n, cast(null as bigint) as points
    from campaign_triggers
    where trigger_ds = :ds
    group by trigger_type
),

final as (
    select * from completions
    union all select * from awards
    union all select * from ledger
    union all select * from tiers
    union all select * from triggers
)

select * from final order by kind
