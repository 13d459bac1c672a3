-- Stage durations and volumes per run date up to :ds, from pipeline_runs: seconds per stage
-- (ingest: every source together) and, for ingest, the rows read, accepted, rejected and the
-- events written.
-- Grain: one row per run date x stage.
with runs as (
    select run_ds, stage, status, duration_s, rows_read, rows_accepted, rows_rejected, rows_duplicate, events_written
    from pipeline_runs
    where run_ds <= :ds
),

final as (
    select
        run_ds,
        stage,
        count(*) as tasks,
        sum(case when status = 'failed' then 1 else 0 end) as failed,
        round(sum(duration_s), 2) as duration_s,
        sum(rows_read) as rows_read,
        sum(rows_accepted) as rows_accepted,
        sum(rows_rejected) as rows_rejected,
        sum(rows_duplicate) as rows_duplicate,
        sum(events_written) as events_written
    from runs
    group by run_ds, stage
)

select * from final
order by run_ds, duration_s desc
