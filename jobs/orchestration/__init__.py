"""Airflow orchestration of the nightly pipeline.

`dag_factory.build_nightly_dag` turns `conf/airflow.yaml`, the configured sources and
`jobs.pipeline.STAGES` into the `gamification_nightly` DAG (`operators`, `params`, `settings`).
`selection` (which tasks a run's params select, what a rerun recomputes for later days) and
`state` (the latest processed date and a day's report, read from `pipeline_runs` without Spark)
do not import Airflow: the command line uses `state` on the Spark driver.
"""
