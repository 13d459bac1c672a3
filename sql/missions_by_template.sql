-- Missions assigned on the run date :ds per template and level, treated versus holdout: how
-- many, how many personalised, the average target and the points at stake.
-- Grain: one row per template, level and holdout flag.
with assigned as (
    select template_id, category, level, holdout, reward_points, target_value, is_dynamic
    from mission_assignments
    where assigned_ds = :ds
),

final as (
    select
        template_id,
        category,
        level,
        holdout,
        count(*) as assignments,
        sum(case when is_dynamic then 1 else 0 end) as personalised,
        round(avg(target_value), 1) as avg_target,
        sum(reward_points) as points_at_stake
    from assigned
    group by template_id, category, level, holdout
)

select * from final
order by category, template_id, level, holdout
