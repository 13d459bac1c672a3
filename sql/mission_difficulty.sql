-- Completion rate against difficulty as of :ds (holdout excluded): per category and level, the
-- missions assigned, completed and ended, the completion rate over ended missions (completed or
-- expired, so missions still running do not dilute it), and how far missions got on average.
-- Grain: one row per category x difficulty level (easy, medium, hard).
with assignments as (
    select assignment_id, category, level, target_value, is_dynamic
    from mission_assignments
    where assigned_ds <= :ds and not holdout
),

progress as (
    select
        assignment_id,
        status,
        progress_pct,
        row_number() over (partition by assignment_id order by progress_ds desc) as recency_rank
    from mission_progress
    where progress_ds <= :ds and not holdout
),

latest as (
    select a.category, a.level, a.target_value, a.is_dynamic, p.status, p.progress_pct
    from assignments as a
    left join progress as p on p.assignment_id = a.assignment_id and p.recency_rank = 1
),

final as (
    select
        category,
        level,
        case level when 'easy' then 1 when 'medium' then 2 when 'hard' then 3 end as level_rank,
        count(*) as assigned,
        sum(case when is_dynamic then 1 else 0 end) as personalised,
        sum(case when status = 'completed' then 1 else 0 end) as completed,
        sum(case when status in ('completed', 'expired') then 1 else 0 end) as ended,
        round(
            100.0 * sum(case when status = 'completed' then 1 else 0 end)
            / nullif(sum(case when status in ('completed', 'expired') then 1 else 0 end), 0),
            2
        ) as completion_rate_pct,
        round(avg(progress_pct), 1) as avg_progress_pct
    from latest
    group by category, level
)

select * from final
order by category, level_rank
