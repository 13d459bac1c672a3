-- Rejected rows by source and reason per ingest day up to :ds, with their share of the rows
-- read from the source that day (pipeline_runs).
-- Grain: one row per ingest day x source x reject reason (duplicates included as 'duplicate').
with rejects as (
    select ingest_date, source, reject_reason, count(*) as rejected_rows
    from events_rejected
    where ingest_date <= :ds
    group by ingest_date, source, reject_reason
),

runs as (
    select run_ds, source, rows_read
    from pipeline_runs
    where run_ds <= :ds and stage = 'ingest'
),

final as (
    select
        r.ingest_date,
        r.source,
        r.reject_reason,
        r.rejected_rows,
        runs.rows_read,
        round(100.0 * r.rejected_rows / nullif(runs.rows_read, 0), 3) as pct_of_read
    from rejects as r
    left join runs on runs.run_ds = r.ingest_date and runs.source = r.source
)

select * from final
order by ingest_date, source, rejected_rows desc
