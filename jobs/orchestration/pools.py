"""The Airflow pools of conf/airflow.yaml, as JSON for `airflow pools import` (`make airflow-init`):

python -m jobs.orchestration.pools > pools.json && airflow pools import pools.json
"""

from __future__ import annotations

import json

from jobs.orchestration.settings import AirflowSettings

if __name__ == "__main__":
    print(json.dumps(AirflowSettings.load().airflow_pools(), indent=2))
