"""
### gamification_maintenance

The weekly Airflow DAG that maintains the gamification lakehouse (`gamify maintain`): compaction of small files
(Z-ordered by subscriber where configured), VACUUM of files unreferenced for longer than the
configured retention, and Delta log checkpoints. Schedule and retention:
`lakehouse.maintenance` in conf/base.yaml.
"""

from jobs.orchestration.dag_factory import build_maintenance_dag

dag = build_maintenance_dag(doc_md=__doc__)
