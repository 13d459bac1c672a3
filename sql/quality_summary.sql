-- Quality gates of the run date :ds per suite: expectations evaluated, failed by severity,
-- skipped, the failing expectations named (column expectation: observed; in no set order), and
-- the Delta version of the table the suite read (null for a raw extract): `version as of` it
-- reads what the gate saw. Grain: one row per quality suite.
with results as (
    select * from quality_results where run_ds = :ds
),

final as (
    select
        suite,
        table_name,
        count(*) as expectations,
        sum(case when status = 'failed' and severity = 'critical' then 1 else 0 end) as failed_critical,
        sum(case when status = 'failed' and severity = 'warning' then 1 else 0 end) as failed_warning,
        sum(case when status = 'skipped' then 1 else 0 end) as skipped,
        max(table_version) as table_version,
        string_agg(
            case when status = 'failed' then concat(coalesce(results.column, '-'), ' ', expectation, ': ', observed) end,
            '; '
        ) as failures
    from results
    group by suite, table_name
)

select * from final order by failed_critical desc, failed_warning desc, suite
