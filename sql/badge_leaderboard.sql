-- Badge holders by type and level as of :ds (holdout excluded): subscribers holding each level,
-- their share of the subscribers scored that day, and the day the level was first earned.
-- Grain: one row per badge level (badge type x level).
with held as (
    select badge_id, badge_type, level, level_rank, count(*) as holders, min(awarded_ds) as first_awarded
    from badge_awards
    where awarded_ds <= :ds and not holdout
    group by badge_id, badge_type, level, level_rank
),

population as (
    select count(*) as subscribers  -- scored on :ds (a carried row has no qualified tier)
    from loyalty_tiers
    where tier_ds = :ds and not holdout and qualified_tier is not null
),

final as (
    select
        c.badge_type,
        c.level,
        c.level_rank,
        coalesce(h.holders, 0) as holders,
        round(100.0 * coalesce(h.holders, 0) / nullif(p.subscribers, 0), 2) as pct_of_subscribers,
        h.first_awarded
    from badge_catalog as c
    cross join population as p
    left join held as h on c.badge_id = h.badge_id
    where c.catalog_date = :ds
)

select * from final order by badge_type, level_rank
