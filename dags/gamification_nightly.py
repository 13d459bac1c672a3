"""
### gamification_nightly

The nightly Airflow DAG of the gamification pipeline: for the run date `{{ ds }}` (the day that
ended when the run starts), wait for each due source's extract, ingest it, then run every stage
(activity, scores, segments, missions, ...) as a Spark job, recompute later days after a rerun
of a past day, and report what was recorded.

Trigger parameters: `stages`, `sources`, `full_refresh`. Reruns, backfills and the Spark
connection: see `dags/README.md`.
"""

from jobs.orchestration.dag_factory import build_nightly_dag

dag = build_nightly_dag(doc_md=__doc__)
