-- Ingest quality per source for the run date :ds: rows accepted and quarantined per reason,
-- as counts and shares of the rows read.
-- Grain: one row per source per reject reason (reason 'accepted' for the accepted rows).
with runs as (
    select source, status, rows_read, rows_accepted, rows_rejected, rows_duplicate
    from pipeline_runs
    where run_ds = :ds and stage = 'ingest'
),

rejects as (
    select source, reject_reason, count(*) as rows
    from events_rejected
    where ingest_date = :ds
    group by source, reject_reason
),

final as (
    select
        runs.source,
        runs.status,
        runs.rows_read,
        coalesce(rejects.reject_reason, 'accepted') as reason,
        coalesce(rejects.rows, runs.rows_accepted) as rows,
        round(100.0 * coalesce(rejects.rows, runs.rows_accepted) / nullif(runs.rows_read, 0), 2) as pct_of_read
    from runs
    left join rejects on rejects.source = runs.source
    union all
    select source, status, rows_read, 'accepted', rows_accepted, round(100.0 * rows_accepted / nullif(rows_read, 0), 2)
    from runs
    where rows_rejected + rows_duplicate > 0
)

select * from final
order by source, rows desc
