-- Mission funnel as of :ds for the treated group (holdout excluded): of the missions assigned up
-- to :ds, how many started (became active), were completed, expired, or are still running,
-- from each assignment's latest mission_progress row.
-- Grain: one row per template x category x segment x difficulty level.
with assignments as (
    select assignment_id, template_id, category, segment, level
    from mission_assignments
    where assigned_ds <= :ds and not holdout
),

progress as (
    select
        assignment_id,
        status,
        row_number() over (partition by assignment_id order by progress_ds desc) as recency_rank
    from mission_progress
    where progress_ds <= :ds and not holdout
),

latest_status as (
    select
        a.template_id,
        a.category,
        a.segment,
        a.level,
        coalesce(p.status, 'assigned') as status
    from assignments as a
    left join progress as p on p.assignment_id = a.assignment_id and p.recency_rank = 1
),

final as (
    select
        template_id,
        category,
        segment,
        level,
        count(*) as assigned,
        sum(case when status <> 'assigned' then 1 else 0 end) as started,
        sum(case when status = 'active' then 1 else 0 end) as active,
        sum(case when status = 'completed' then 1 else 0 end) as completed,
        sum(case when status = 'expired' then 1 else 0 end) as expired,
        round(100.0 * sum(case when status = 'completed' then 1 else 0 end) / count(*), 2) as completion_rate_pct
    from latest_status
    group by template_id, category, segment, level
)

select * from final
order by category, template_id, segment, level
