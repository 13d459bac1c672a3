-- Badge awards per day and level up to :ds (holdout excluded): levels earned and the points
-- they were worth.
-- Grain: one row per award day x level (bronze, silver, gold, platinum).
with awards as (
    select awarded_ds, level, level_rank, points
    from badge_awards
    where awarded_ds <= :ds and not holdout
),

final as (
    select
        awarded_ds,
        level,
        level_rank,
        count(*) as awards,
        sum(points) as points
    from awards
    group by awarded_ds, level, level_rank
)

select * from final
order by awarded_ds, level_rank
