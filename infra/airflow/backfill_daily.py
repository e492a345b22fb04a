"""Airflow DAG: the daily backfill, submitted to Spark, retried safely.

Each day it recomputes the state from the raw event log (late events included) and MERGEs
what changed. Retries and re-runs of one logical date are idempotent: the run passes
`--txn-app-id backfill_daily --txn-version <YYYYMMDD>`, so Delta skips a commit for a date
already applied. `max_active_runs=1` keeps runs from overlapping (one writer per table).

Settings come from Airflow Variables, with these defaults:
  backfill_home    where this repository is deployed      (/opt/backfill)
  backfill_master  the Spark master URL                   (local[2])
  backfill_config  the pipeline config                    (<home>/conf/local.yaml)
  backfill_source  the raw events                         (required)
  backfill_table   the state Delta table                  (required)
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator

HOME = "{{ var.value.get('backfill_home', '/opt/backfill') }}"
SUBMIT = (
    f"{HOME}/infra/spark-submit.sh"
    " --master {{ var.value.get('backfill_master', 'local[2]') }}"
    " --config {{ var.value.get('backfill_config',"
    " var.value.get('backfill_home', '/opt/backfill') ~ '/conf/local.yaml') }}"
    " -- run"
    " --source {{ var.value.backfill_source }}"
    " --table {{ var.value.backfill_table }}"
    " --run-id {{ dag.dag_id }}-{{ ds_nodash }}-try{{ ti.try_number }}"
    " --txn-app-id {{ dag.dag_id }} --txn-version {{ ds_nodash }}"
    " --report {{ var.value.backfill_table }}_reports/{{ ds }}.json"
)

with DAG(
    dag_id="backfill_daily",
    description="Recompute per-key state from the raw event log and MERGE it into Delta",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(hours=6),
    },
    tags=["backfill", "delta"],
) as dag:
    BashOperator(task_id="backfill", bash_command=SUBMIT)
