"""Airflow DAG: weekly upkeep of the tables the nightly DAG writes (`backfill maintain`).

Compacts the state, events and quarantine tables (the events table laid out by key), removes
files no version inside the retention window needs (`tables.retain_days` in the config, at
least 7 days), and writes a checkpoint. It changes no row, so the nightly runs fold nothing
because of it. A maintain and a nightly run may overlap: whichever commits second retries,
and both land. Weekly keeps a night's file count near its first night's (docs/upkeep.md).

Settings are the nightly DAG's Airflow Variables (backfill_home, backfill_master,
backfill_config, backfill_table).
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
    " -- maintain --table {{ var.value.backfill_table }} --json"
)

with DAG(
    dag_id="backfill_maintain",
    description="Compact, vacuum and checkpoint the backfill's Delta tables",
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": timedelta(minutes=30),
        "execution_timeout": timedelta(hours=6),
    },
    tags=["backfill", "delta", "upkeep"],
) as dag:
    BashOperator(task_id="maintain", bash_command=SUBMIT)
